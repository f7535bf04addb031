package limit

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/redisconn"
)

// Quota is a daily quota: at most limit units per UTC day, for one (key, limit). Create
// it once per configuration load with Limiter.NewQuota and keep it; Take is safe for
// concurrent use, allocates nothing and never waits.
type Quota struct{ s *quotaState }

const (
	usedBits = 40
	usedMask = 1<<usedBits - 1
)

type quotaState struct {
	handle
	limit    int64
	lease    int64        // the smallest lease (and the cold-start credit)
	maxLease int64        // the largest: 1% of the quota
	low      atomic.Int64 // top up under this; also how far a take may borrow ahead

	avail     atomic.Int64  // leased allowance of Redis's current day (Redis mode)
	exhausted atomic.Bool   // Redis said today's quota is used up
	recheckAt atomic.Int64  // exhausted: lim.nanotime() from which a take asks Redis again
	local     atomic.Uint64 // day<<40 | used: local mode and fallback
	need      atomic.Int64

	// shard-owned
	debt, sent, want int64
	dyn              int64 // the lease size now: grows while leases come fast
	lastLease        int64 // lim.nanotime() of the last lease sent
	rollAt           int64 // lim.nanotime() when Redis's day ends (0: unknown)
	backoff          int64
	day              int64 // Redis's day of the allowance held (-1: unknown)
	ret              int64 // allowance given back by the call under way
	seenAvail        int64 // the allowance at the last look for idleness
	idleAt           int64 // when to look again; unchanged then: give it back (0: no look due)
}

// quotaRecheck is how often a replica told that the day's quota is used up asks Redis
// again while its clients keep calling: another replica may have given unspent
// allowance back.
const quotaRecheck = time.Second

// NewQuota returns a daily quota of limit units per UTC day, named name (see NewBucket).
func (l *Limiter) NewQuota(name string, limit int64) (*Quota, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if limit < 1 || limit > usedMask/2 {
		return nil, fmt.Errorf("limit: quota %s: limit must be in [1, 2^39], got %d", name, limit)
	}
	s := &quotaState{limit: limit}
	s.handle = handle{lim: l, sh: l.pickShard(), name: name, key: l.cfg.Prefix + "q:" + name, kind: KindQuota, idx: -1}
	s.self = s
	s.lease = clamp(limit/1000, 1, 1<<20)
	s.maxLease = max(s.lease, limit/100)
	s.dyn = s.lease
	s.low.Store(ceilDiv(s.lease, 2))
	s.avail.Store(s.lease) // cold-start credit, charged with the first lease
	s.debt = s.lease
	s.day = -1
	s.sh.register(s)
	q := &Quota{s: s}
	runtime.AddCleanup(q, func(s *quotaState) { s.close() }, s)
	return q, nil
}

// Name is the name the handle was created with.
func (q *Quota) Name() string { return q.s.name }

// Close drops the handle: its shard forgets it. Take keeps working (per process).
func (q *Quota) Close() { q.s.close() }

// Take spends n units of today's quota if they are left. Never waits, never allocates.
func (q *Quota) Take(n int64) Decision {
	s := q.s
	l := s.lim
	if n <= 0 {
		return Decision{OK: true}
	}
	if n > s.limit {
		return l.refuse(KindQuota, ReasonTooLarge, 0, s.name)
	}
	if l.conn != nil {
		if s.usable() {
			return s.takeLeased(n)
		}
		if s.sh.leasing.Load() {
			s.wake()
		}
		if l.cfg.FailClosed {
			return l.refuse(KindQuota, ReasonRedisDown, time.Second, s.name)
		}
		l.fallback[KindQuota].Inc()
	}
	return s.takeLocal(n)
}

// takeLeased spends the leased allowance. Until Redis says the day's quota is used up,
// a take may borrow up to low units, or its own cost when that is more, ahead of the
// allowance (the next lease pays them back): a key busier than the leases are quick, or
// a call costing more than a chunk, is never refused while under its quota.
func (s *quotaState) takeLeased(n int64) Decision {
	for {
		a := s.avail.Load()
		low := s.low.Load()
		// A call costing more than the borrow (low) may borrow its own cost: it would
		// otherwise be refused while the day's quota has room.
		if a-n < -max(low, n) || (a < n && s.exhausted.Load()) {
			break
		}
		if s.avail.CompareAndSwap(a, a-n) {
			if a-n < low && !s.exhausted.Load() {
				s.wake()
			}
			return Decision{OK: true}
		}
	}
	retry := 100 * time.Millisecond // a lease is on its way
	ask := true
	if s.exhausted.Load() {
		now := s.lim.nanotime()
		retry = time.Duration(s.retryAt.Load() - now)
		ask = now >= s.recheckAt.Load() // another replica may have given allowance back
	}
	if ask {
		for {
			w := s.need.Load()
			if w >= n || s.need.CompareAndSwap(w, n) {
				break
			}
		}
		s.wake()
	}
	return s.lim.refuse(KindQuota, ReasonExceeded, retry, s.name)
}

// takeLocal counts today's units in one word (day and used), by the configured clock.
func (s *quotaState) takeLocal(n int64) Decision {
	now := s.lim.cfg.Now()
	sec := now.Unix()
	day := uint64(sec / 86400)
	for {
		v := s.local.Load()
		used := int64(v & usedMask)
		if v>>usedBits != day {
			used = 0
		}
		if used+n > s.limit {
			retry := time.Duration((int64(day)+1)*86400-sec)*time.Second - time.Duration(now.Nanosecond())
			return s.lim.refuse(KindQuota, ReasonExceeded, retry, s.name)
		}
		if s.local.CompareAndSwap(v, day<<usedBits|uint64(used+n)) {
			return Decision{OK: true}
		}
	}
}

func (s *quotaState) plan(now int64) (redisconn.Exec, bool, int64) {
	if s.rollAt > 0 && now >= s.rollAt {
		// Redis's day ended: yesterday's allowance is gone, a fresh credit takes its place.
		s.avail.Store(s.lease)
		s.debt = s.lease
		s.exhausted.Store(false)
		s.rollAt, s.day, s.idleAt = 0, -1, 0
		s.recheckAt.Store(0)
		s.retryAt.Store(now)
	}
	a := s.avail.Load()
	want := int64(0)
	n := s.need.Swap(0)
	switch {
	case !s.exhausted.Load() && (a < s.low.Load() || n > a):
		// Leases that come quicker than one per lease window double the size (up to 1%
		// of the quota); slow ones halve it back.
		switch since := now - s.lastLease; {
		case s.lastLease > 0 && since < int64(s.lim.cfg.LeaseWindow):
			s.dyn = min(2*s.dyn, s.maxLease)
		case since > 10*int64(s.lim.cfg.LeaseWindow):
			s.dyn = max(s.dyn/2, s.lease)
		}
		s.low.Store(ceilDiv(s.dyn, 2))
		want = max(s.dyn, n) - a
	case s.exhausted.Load() && n > 0 && now >= s.recheckAt.Load():
		want = n - a // what the refused take needs, its borrow paid back
	}
	if want <= 0 && now < s.idleAt {
		return redisconn.Exec{}, false, nextDue(s.rollAt, s.idleAt)
	}
	ret := int64(0)
	if want <= 0 && s.idleAt > 0 {
		// A look for idleness: an allowance no take touched since the last look goes
		// back to Redis, for replicas whose clients go on; none to give back, or
		// touched, the handle is looked at again later or left alone.
		switch {
		case a != s.seenAvail:
			s.seenAvail, s.idleAt = a, now+int64(s.lim.cfg.QuotaIdleReturn)
		case a > 0 && s.day >= 0 && now >= s.backoff && s.avail.CompareAndSwap(a, 0):
			ret, s.idleAt = a, 0
		default:
			s.idleAt = 0
		}
	}
	if want <= 0 && ret == 0 { // debt rides along with the next lease; an idle handle costs nothing
		return redisconn.Exec{}, false, nextDue(s.rollAt, s.idleAt)
	}
	if now < s.backoff {
		return redisconn.Exec{}, false, s.backoff
	}
	s.sent, s.want, s.ret = s.debt, max(want, 0), ret
	if want > 0 {
		s.lastLease = now
	}
	return redisconn.Exec{
		Keys: []string{s.key},
		Args: []string{"q", s.lim.offsetArg(), itoa(s.limit), itoa(s.want), itoa(s.debt), itoa(ret), itoa(s.day)},
	}, true, 0
}

// nextDue is the earliest of two times a handle wants to be looked at (0: none).
func nextDue(a, b int64) int64 {
	if a == 0 || b > 0 && b < a {
		return b
	}
	return a
}

func (s *quotaState) apply(res []int64, now int64) int64 {
	if len(res) < 3 {
		return s.fail(now)
	}
	grant, leftMs := res[0], res[1]
	if len(res) >= 4 {
		s.day = res[3]
	}
	s.debt -= s.sent
	s.ret = 0
	s.answered()
	s.backoff = 0
	s.rollAt = now + max(leftMs, 1)*int64(time.Millisecond)
	if grant > 0 {
		s.avail.Add(grant)
	}
	// Unspent allowance goes back to Redis after QuotaIdleReturn without a take.
	s.seenAvail, s.idleAt = s.avail.Load(), now+int64(s.lim.cfg.QuotaIdleReturn)
	if s.want == 0 { // an idle handle gave its allowance back
		return nextDue(s.rollAt, s.idleAt)
	}
	if grant < s.want {
		s.exhausted.Store(true)
		s.retryAt.Store(s.rollAt)
		s.recheckAt.Store(now + int64(quotaRecheck))
		return nextDue(s.rollAt, s.idleAt)
	}
	s.exhausted.Store(false) // an exhausted handle's ask granted: allowance came back
	s.retryAt.Store(now)
	if s.avail.Load() < s.low.Load() {
		return now
	}
	return nextDue(s.rollAt, s.idleAt)
}

func (s *quotaState) fail(now int64) int64 {
	s.failed()
	s.backoff = now + int64(failBackoff)
	return s.backoff
}

func (s *quotaState) recover(now int64) int64 {
	s.answered()
	s.backoff = 0
	if a := s.avail.Load(); a < s.lease && !s.exhausted.Load() {
		s.avail.Add(s.lease - a)
		s.debt += s.lease - a
	}
	return s.rollAt
}

// release settles a closed handle (a reload replaced it, or the process stops): Redis is
// told what it spent, no more: unpaid credit it spent is charged, allowance it leased
// and did not spend goes back.
func (s *quotaState) release() (redisconn.Exec, bool) {
	net := s.debt - s.avail.Swap(0)
	s.debt = 0
	debt, ret := max(net, 0), max(-net, 0)
	if s.day < 0 {
		ret = 0 // never leased: nothing of Redis's to give back
	}
	if debt == 0 && ret == 0 {
		return redisconn.Exec{}, false
	}
	return redisconn.Exec{
		Keys: []string{s.key},
		Args: []string{"q", s.lim.offsetArg(), itoa(s.limit), "0", itoa(debt), itoa(ret), itoa(s.day)},
	}, true
}
