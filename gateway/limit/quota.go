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
	local     atomic.Uint64 // day<<40 | used: local mode and fallback
	need      atomic.Int64

	// shard-owned
	debt, sent, want int64
	dyn              int64 // the lease size now: grows while leases come fast
	lastLease        int64 // lim.nanotime() of the last lease sent
	rollAt           int64 // lim.nanotime() when Redis's day ends (0: unknown)
	backoff          int64
}

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
	if s.exhausted.Load() {
		retry = time.Duration(s.retryAt.Load() - s.lim.nanotime())
	} else {
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
		s.rollAt = 0
		s.retryAt.Store(now)
	}
	a := s.avail.Load()
	want := int64(0)
	if n := s.need.Swap(0); !s.exhausted.Load() && (a < s.low.Load() || n > a) {
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
	}
	if want <= 0 { // debt rides along with the next lease; an idle handle costs nothing
		return redisconn.Exec{}, false, s.rollAt
	}
	if now < s.backoff {
		return redisconn.Exec{}, false, s.backoff
	}
	s.sent, s.want, s.lastLease = s.debt, want, now
	return redisconn.Exec{
		Keys: []string{s.key},
		Args: []string{"q", s.lim.offsetArg(), itoa(s.limit), itoa(want), itoa(s.debt)},
	}, true, 0
}

func (s *quotaState) apply(res []int64, now int64) int64 {
	if len(res) < 3 {
		return s.fail(now)
	}
	grant, leftMs := res[0], res[1]
	s.debt -= s.sent
	s.answered()
	s.backoff = 0
	s.rollAt = now + max(leftMs, 1)*int64(time.Millisecond)
	if grant > 0 {
		s.avail.Add(grant)
	}
	if grant < s.want {
		s.exhausted.Store(true)
		s.retryAt.Store(s.rollAt)
		return s.rollAt
	}
	s.retryAt.Store(now)
	if s.avail.Load() < s.low.Load() {
		return now
	}
	return s.rollAt
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

func (s *quotaState) release() (redisconn.Exec, bool) { return redisconn.Exec{}, false }
