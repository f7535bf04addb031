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
	lease    int64 // L
	low      int64 // prefetch when the allowance falls under this

	avail atomic.Int64 // leased allowance (Redis mode)
	tat   atomic.Int64 // GCRA theoretical arrival time (local mode, fallback)
	need  atomic.Int64 // largest n a refused Take wanted

	// shard-owned
	debt    int64 // units admitted on credit, not yet charged to Redis
	sent    int64 // debt in the call under way
	want    int64 // want in the call under way
	backoff int64 // no lease before this (the global bucket is empty)
}

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
	s := &bucketState{rate: rate, burst: burst}
	s.handle = handle{lim: l, sh: l.pickShard(), name: name, key: l.cfg.Prefix + "b:" + name, kind: KindRate, idx: -1}
	s.self = s
	s.interval = max(int64(float64(time.Second)/rate), 1)
	s.tau = burst * s.interval
	s.lease = leaseSize(rate, burst, l.cfg.LeaseWindow)
	s.low = ceilDiv(s.lease, 2)
	// Cold start: a credit of one lease, charged to Redis with the first lease.
	s.avail.Store(s.lease)
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
			return s.takeLeased(n)
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

func (s *bucketState) takeLeased(n int64) Decision {
	for {
		a := s.avail.Load()
		if a < n {
			break
		}
		if s.avail.CompareAndSwap(a, a-n) {
			if a-n < s.low {
				s.wake()
			}
			return Decision{OK: true}
		}
	}
	for {
		w := s.need.Load()
		if w >= n || s.need.CompareAndSwap(w, n) {
			break
		}
	}
	s.wake()
	retry := time.Duration(n * s.interval)
	if wait := time.Duration(s.retryAt.Load() - s.lim.nanotime()); wait > retry {
		retry = wait
	}
	return s.lim.refuse(KindRate, ReasonExceeded, retry, s.name)
}

// takeLocal is GCRA: one compare-and-swap on the theoretical arrival time.
func (s *bucketState) takeLocal(n int64) Decision {
	now := s.lim.nanotime()
	inc := n * s.interval
	for {
		tat := s.tat.Load()
		next := max(tat, now) + inc
		if over := next - now - s.tau; over > 0 {
			return s.lim.refuse(KindRate, ReasonExceeded, time.Duration(over), s.name)
		}
		if s.tat.CompareAndSwap(tat, next) {
			return Decision{OK: true}
		}
	}
}

func (s *bucketState) plan(now int64) (redisconn.Exec, bool, int64) {
	a := s.avail.Load()
	want := int64(0)
	if n := s.need.Swap(0); a < s.low || n > a {
		want = min(max(s.lease, n)-a, s.burst)
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
	s.degraded.Store(false)
	if grant > 0 {
		s.avail.Add(grant)
	}
	if grant < s.want {
		s.backoff = now + waitMs*int64(time.Millisecond)
		s.retryAt.Store(s.backoff)
		return s.backoff
	}
	s.backoff = 0
	s.retryAt.Store(now)
	if s.avail.Load() < s.low {
		return now // spent while the call was under way: lease again
	}
	return 0
}

func (s *bucketState) fail(now int64) int64 {
	s.degraded.Store(true)
	s.backoff = now + int64(failBackoff)
	return s.backoff
}

func (s *bucketState) recover(now int64) int64 {
	s.degraded.Store(false)
	s.backoff = 0
	if a := s.avail.Load(); a < s.lease {
		s.avail.Add(s.lease - a)
		s.debt += s.lease - a
	}
	return 0
}

func (s *bucketState) release() (redisconn.Exec, bool) { return redisconn.Exec{}, false }
