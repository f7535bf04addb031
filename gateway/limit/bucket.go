package limit

import (
	"fmt"
	"math"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/redisconn"
)

// Bucket is a token bucket: rate units per second with a burst, for one (key, limit).
// Create it once per configuration load with Limiter.NewBucket and keep it; Take is safe
// for concurrent use, allocates nothing and never waits.
type Bucket struct{ s *bucketState }

type bucketState struct {
	handle
	rate     float64
	burst    int64
	interval int64 // ns per unit
	tau      int64 // burst × interval
	lease    int64 // L: the smallest lease, and the cold-start credit
	maxLease int64 // the largest lease (maxLeaseSize)

	avail  atomic.Int64 // leased allowance (Redis mode); below 0 while borrowing
	low    atomic.Int64 // prefetch when the allowance falls under this; twice it: the borrow bound
	missed atomic.Int64 // units refused since the shard last looked: demand not served
	tat    atomic.Int64 // GCRA theoretical arrival time (local mode, fallback)
	need   atomic.Int64 // largest n a refused Take wanted

	// shard-owned
	debt    int64 // units admitted on credit, not yet charged to Redis
	sent    int64 // debt in the call under way
	want    int64 // want in the call under way
	backoff int64 // no lease before this (the global bucket is empty)

	size     int64   // the lease now: sized on the observed take rate and renewal latency
	mark     int64   // avail as the shard last saw it: takes since then are mark - avail
	used     int64   // units taken or refused in the current rate window
	winStart int64   // start of the current rate window
	rateObs  float64 // units per second over the last full rate window
	renewal  int64   // how late renewals land (wake to answer), ns: peak, decaying
	sentAt   int64   // when the need the call under way answers was seen
}

// MaxRefill bounds the time a bucket's burst takes to refill (burst ÷ rate): its
// arithmetic is in int64 nanoseconds, which hold 292 years.
const MaxRefill = 100 * 365 * 24 * time.Hour

// NewBucket returns a token bucket of rate units per second and burst units, named name
// (the caller's label, e.g. "key:42:rps"; keys in Redis are derived from it, so two
// handles with one name share one bucket). A Take of more than burst units is always
// refused (ReasonTooLarge).
func (l *Limiter) NewBucket(name string, rate float64, burst int64) (*Bucket, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if !(rate > 0) || rate > 1e9 || math.IsInf(rate, 0) {
		return nil, fmt.Errorf("limit: bucket %s: rate must be in (0, 1e9], got %v", name, rate)
	}
	if burst < 1 || burst > 1<<40 {
		return nil, fmt.Errorf("limit: bucket %s: burst must be in [1, 2^40], got %d", name, burst)
	}
	if float64(burst)/rate > MaxRefill.Seconds() {
		// burst × interval, in nanoseconds, would pass int64: the GCRA below overflowed
		// (burst 2^40 at 1/s admitted one take, a rate under 1e-9/s every take).
		return nil, fmt.Errorf("limit: bucket %s: a burst of %d at %v per second takes more than %v to refill", name, burst, rate, MaxRefill)
	}
	s := &bucketState{rate: rate, burst: burst}
	s.handle = handle{lim: l, sh: l.pickShard(), name: name, key: l.cfg.Prefix + "b:" + name, kind: KindRate, idx: -1}
	s.self = s
	s.interval = max(int64(float64(time.Second)/rate), 1)
	s.tau = burst * s.interval
	s.lease = leaseSize(rate, burst, l.cfg.LeaseWindow)
	s.maxLease = maxLeaseSize(rate, burst, l.cfg.LeaseWindow)
	s.size = s.lease
	s.low.Store(ceilDiv(s.lease, 2))
	// Cold start: a credit of one lease, charged to Redis with the first lease.
	s.avail.Store(s.lease)
	s.mark = s.lease
	s.debt = s.lease
	s.sh.register(s)
	b := &Bucket{s: s}
	runtime.AddCleanup(b, func(s *bucketState) { s.close() }, s)
	return b, nil
}

// Name is the name the handle was created with.
func (b *Bucket) Name() string { return b.s.name }

// Close drops the handle: its shard forgets it. Take keeps working (per process).
func (b *Bucket) Close() { b.s.close() }

// Take spends n units (n requests, or the cost units of a call or a whole batch) if the
// bucket has them. It never waits and never allocates.
func (b *Bucket) Take(n int64) Decision {
	s := b.s
	l := s.lim
	if n <= 0 {
		return Decision{OK: true}
	}
	if n > s.burst {
		return l.refuse(KindRate, ReasonTooLarge, 0, s.name)
	}
	if l.conn != nil {
		if s.usable() {
			return s.takeLeased(n, true)
		}
		if s.sh.leasing.Load() {
			s.wake() // degraded: let the shard try again
		}
		if l.cfg.FailClosed {
			return l.refuse(KindRate, ReasonRedisDown, time.Second, s.name)
		}
		l.fallback[KindRate].Inc()
	}
	return s.takeLocal(n)
}

// takeLeased spends n of the leased allowance; with borrow, a renewal running late
// may be borrowed against (below).
func (s *bucketState) takeLeased(n int64, borrow bool) Decision {
	for {
		a := s.avail.Load()
		// A take larger than the burst (TakeLeased's) goes once a full burst is leased
		// (the bucket in Redis was full), charged in full: the allowance goes below 0 and
		// the next leases pay that back before this replica takes again.
		if a < n && (n <= s.burst || a < s.burst) {
			break
		}
		if s.avail.CompareAndSwap(a, a-n) {
			if a-n < s.low.Load() {
				s.wake()
			}
			return Decision{OK: true}
		}
	}
	// The allowance is spent and its renewal is due or under way. Unless Redis said its
	// bucket is empty until retryAt, borrow up to one lease (twice the prefetch point),
	// or the call's own cost when that is more, against the next lease, which pays it
	// back first: a renewal that a starved shard or a slow answer made late refuses
	// nobody while the global bucket has tokens, nor does a call costing more than a
	// lease (a batch, an expensive method on a slow plan).
	now := s.lim.nanotime()
	if borrow && now >= s.retryAt.Load() {
		low := s.low.Load()
		bound := max(2*low, n)
		for {
			a := s.avail.Load()
			if a-n < -bound {
				break
			}
			if s.avail.CompareAndSwap(a, a-n) {
				if a-n < low {
					s.wake()
				}
				return Decision{OK: true}
			}
		}
	}
	s.missed.Add(n)
	for {
		w := s.need.Load()
		if w >= n || s.need.CompareAndSwap(w, n) {
			break
		}
	}
	s.wake()
	retry := time.Duration(min(n, s.burst) * s.interval)
	if wait := time.Duration(s.retryAt.Load() - now); wait > retry {
		retry = wait
	}
	return s.lim.refuse(KindRate, ReasonExceeded, retry, s.name)
}

// takeLocal is GCRA: one compare-and-swap on the theoretical arrival time. A take
// larger than the burst (only TakeLeased's; Take refuses it) is admitted when the
// bucket is full (tat <= now) and charged in full: the bucket goes into debt.
func (s *bucketState) takeLocal(n int64) Decision {
	now := s.lim.nanotime()
	inc := n * s.interval
	for {
		tat := s.tat.Load()
		next := max(tat, now) + inc
		if over := next - now - s.tau; over > 0 && tat > now {
			return s.lim.refuse(KindRate, ReasonExceeded, time.Duration(min(over, tat-now)), s.name)
		}
		if s.tat.CompareAndSwap(tat, next) {
			return Decision{OK: true}
		}
	}
}

func (s *bucketState) plan(now int64) (redisconn.Exec, bool, int64) {
	a := s.avail.Load()
	s.observe(a, now)
	want := int64(0)
	if n := s.need.Swap(0); a < s.low.Load() || n > a {
		// A borrow (a < 0) is paid back out of this lease first.
		want = min(max(s.size, n)-a, s.burst)
	}
	// Only a need for tokens calls Redis; debt (credit spent) rides along with a lease, so
	// an idle handle costs nothing.
	if want <= 0 {
		return redisconn.Exec{}, false, 0
	}
	if now < s.backoff {
		return redisconn.Exec{}, false, s.backoff
	}
	s.sent, s.want = s.debt, want
	// The renewal's lateness runs from when a check saw the need, or from the end of a
	// back-off (the wait for Redis's tokens is not lateness), or from now.
	s.sentAt = max(s.wokeAt.Swap(0), s.backoff)
	if s.sentAt <= 0 || s.sentAt > now {
		s.sentAt = now
	}
	return redisconn.Exec{
		Keys: []string{s.key},
		Args: []string{"b", s.lim.offsetArg(), ftoa(s.rate), itoa(s.burst), itoa(want), itoa(s.debt)},
	}, true, 0
}

func (s *bucketState) apply(res []int64, now int64) int64 {
	if len(res) < 2 {
		return s.fail(now)
	}
	grant, waitMs := res[0], res[1]
	s.debt -= s.sent
	s.answered()
	s.noteRenewal(now)
	s.add(grant)
	if grant < s.want {
		s.backoff = now + waitMs*int64(time.Millisecond)
		s.retryAt.Store(s.backoff)
		return s.backoff
	}
	s.backoff = 0
	s.retryAt.Store(now)
	if s.avail.Load() < s.low.Load() {
		return now // spent while the call was under way: lease again
	}
	return 0
}

func (s *bucketState) fail(now int64) int64 {
	s.failed()
	s.noteRenewal(now) // no answer at all is the latest a renewal can be
	s.backoff = now + int64(failBackoff)
	return s.backoff
}

func (s *bucketState) recover(now int64) int64 {
	s.answered()
	s.backoff = 0
	if a := s.avail.Load(); a < s.lease {
		s.add(s.lease - a)
		s.debt += s.lease - a
	}
	return 0
}

// rateWindow is how many lease windows the observed take rate is measured over.
const rateWindow = 10

// add puts n units into the allowance, keeping the count of takes exact.
func (s *bucketState) add(n int64) {
	v := s.avail.Add(n)
	s.used += s.mark + n - v
	s.mark = v
}

// observe counts the units taken (and refused) since the shard last looked, and sizes
// the lease on them: enough for the observed rate over max(LeaseWindow, 3 renewal
// latencies), between L and maxLease, with the prefetch point at half of it. So a busy key renews well before its allowance runs out however late
// renewals land, and a quiet one keeps small leases (little stranded on a replica).
func (s *bucketState) observe(a, now int64) {
	s.used += s.mark - a + s.missed.Swap(0)
	s.mark = a
	win := int64(s.lim.cfg.LeaseWindow)
	el := now - s.winStart
	if el >= rateWindow*win {
		s.rateObs = float64(s.used) * float64(time.Second) / float64(el)
		s.used, s.winStart, el = 0, now, 0
	}
	r := s.rateObs
	if el >= win { // the current window, once long enough to mean something, may say more
		r = max(r, float64(s.used)*float64(time.Second)/float64(el))
	}
	horizon := float64(max(win, 3*s.renewal)) / float64(time.Second)
	s.size = clamp(int64(math.Ceil(r*horizon)), s.lease, s.maxLease)
	s.low.Store(ceilDiv(s.size, 2))
}

// noteRenewal measures how late the lease call under way landed: the peak, decaying by
// an eighth per renewal, so one slow answer is remembered for a while.
func (s *bucketState) noteRenewal(now int64) {
	if s.sentAt > 0 {
		s.renewal = max(now-s.sentAt, s.renewal-s.renewal/8)
		s.sentAt = 0
	}
	s.wokeAt.Store(0) // wakes while the call was under way asked for this answer
}

func (s *bucketState) release() (redisconn.Exec, bool) { return redisconn.Exec{}, false }
