// The budgets' pacing and local meters: the AIMD that auto-tunes an upstream's rate
// from its throttles, and the per-process meters used without Redis (localMeters).

package upstream

import (
	"math"
	"sync/atomic"
	"time"
)

// aimd is the effective rate of one upstream: the configured rate (or, with none,
// unlimited) until the provider throttles, then multiplicative decrease (at most once
// per cutEvery) and additive increase back up (TCP's congestion avoidance, as proxyd's
// and eRPC's adaptive limiters). Calls are paced at the effective rate only while it is
// below the configured one (the meters keep the configured rate themselves). All state
// is atomic: take is a few loads and one compare-and-swap.
//
// With no configured rate the reference is learned: the first throttle cuts from the
// peak rate sent over the last several seconds (peakDecay; never from one quiet second,
// which once cut an idle upstream to 1 req/s for hours), the rate then grows by 5 % of
// that peak per second, and once it is back above the peak the upstream is unlimited
// again. So a throttle the provider does not repeat costs at most 20 s of reduced rate,
// while one it keeps repeating holds the rate under the peak.
type aimd struct {
	configured float64       // 0: learn from zero configuration
	base       atomic.Uint64 // float64 bits: the rate at baseAt; 0: unlimited
	baseAt     atomic.Int64
	from       atomic.Uint64 // float64 bits: no configured rate: the peak the first cut was from
	lastCut    atomic.Int64
	tat        atomic.Int64 // GCRA theoretical arrival time of the pacing
	// Requests in the current second and the decaying peak per second (float64 bits) of
	// the seconds before, to know where to cut from with no configured rate.
	sec, cur atomic.Int64
	peak     atomic.Uint64
}

const (
	aimdDecrease = 0.75 // the multiplicative decrease
	// aimdIncrease is the additive increase per second: a share of the configured rate
	// (or of the peak the learned one was cut from), at least one unit per second: the
	// reference is regained within 1/aimdIncrease = 20 s once the throttles stop.
	aimdIncrease = 0.05
	// peakDecay is what a second's count still weighs each second later: the peak
	// remembers about the last 10 s (0.9^10 ≈ 1/3).
	peakDecay = 0.9
	cutEvery  = int64(200 * time.Millisecond) // about a round trip: the 429s of calls already sent say nothing new
	paceBurst = 0.1                           // seconds of the effective rate that may go at once
)

func (a *aimd) init(configured float64) {
	a.configured = configured
	a.base.Store(math.Float64bits(configured))
}

// rate is the effective rate at now (0: unlimited).
func (a *aimd) rate(now int64) float64 {
	base := math.Float64frombits(a.base.Load())
	if base == 0 {
		return 0
	}
	ref := a.configured
	if ref == 0 {
		ref = math.Float64frombits(a.from.Load())
	}
	r := base + max(1, aimdIncrease*ref)*float64(max(now-a.baseAt.Load(), 0))/1e9
	if a.configured == 0 && r > ref {
		return 0 // back above the rate it was cut from: unlimited again
	}
	return min(r, ref)
}

// take paces n units at the effective rate while it is below the configured one.
func (a *aimd) take(now, n int64) (time.Duration, bool) {
	if a.configured == 0 {
		a.count(now, n)
	}
	r := a.rate(now)
	if r == 0 || r >= a.configured && a.configured > 0 {
		return 0, true
	}
	interval := int64(1e9 / r)
	tau := max(interval, int64(paceBurst*1e9))
	inc := n * interval
	for {
		tat := a.tat.Load()
		next := max(tat, now) + inc
		if over := next - now - tau; over > 0 && tat > now { // full (tat <= now): see localBucket
			return time.Duration(min(over, tat-now)), false
		}
		if a.tat.CompareAndSwap(tat, next) {
			return 0, true
		}
	}
}

// count adds n to the current second; the first count of a new second folds the one
// before into the decaying peak (seconds with no calls count 0).
func (a *aimd) count(now, n int64) {
	s := now / 1e9
	if old := a.sec.Load(); old != s && a.sec.CompareAndSwap(old, s) {
		c := float64(a.cur.Swap(0))
		p := max(math.Float64frombits(a.peak.Load())*peakDecay, c)
		if gap := s - old - 1; gap > 0 {
			p *= math.Pow(peakDecay, float64(min(gap, 1000)))
		}
		a.peak.Store(math.Float64bits(p))
	}
	a.cur.Add(n)
}

// cut is a throttle at now: the effective rate goes down by aimdDecrease, at most once
// per cutEvery. With no rate yet (unlimited), the cut is from the recent peak.
func (a *aimd) cut(now int64) {
	last := a.lastCut.Load()
	if last != 0 && now-last < cutEvery || !a.lastCut.CompareAndSwap(last, now) {
		return
	}
	r := a.rate(now)
	if r == 0 {
		a.count(now, 0)
		r = max(math.Float64frombits(a.peak.Load()), float64(a.cur.Load()), 1)
		a.from.Store(math.Float64bits(r))
	}
	// baseAt first: a reader between the two stores sees the old rate without its
	// growth, never the old rate grown from a later time.
	a.baseAt.Store(now)
	a.base.Store(math.Float64bits(max(r*aimdDecrease, 1)))
}

// localMeters is the meter factory without a gateway: token buckets and a daily count
// per process, on the router clock (day: the UTC day of a time of it, and how long
// until that day ends).
func localMeters(clock func() int64, day func(int64) (int64, time.Duration)) MeterFactory {
	return func(_ string, kind MeterKind, limit float64) (Meter, error) {
		if kind == MeterDaily {
			return &localQuota{clock: clock, day: day, limit: int64(limit)}, nil
		}
		interval := int64(1e9 / limit)
		return &localBucket{clock: clock, interval: interval, tau: max(interval, int64(1e9))}, nil
	}
}

// localBucket is GCRA: one compare-and-swap on the theoretical arrival time; a burst
// of one second of the rate. A take larger than the burst (a batch) is admitted when
// the bucket is full and charged in full: the bucket goes into debt that later takes
// wait for, so the long-run rate holds (else such a batch would never be served).
type localBucket struct {
	clock         func() int64
	interval, tau int64
	tat           atomic.Int64
}

func (b *localBucket) Take(n int64) (bool, time.Duration) {
	now := b.clock()
	for {
		tat := b.tat.Load()
		next := max(tat, now) + n*b.interval
		if over := next - now - b.tau; over > 0 && tat > now {
			return false, time.Duration(min(over, tat-now))
		}
		if b.tat.CompareAndSwap(tat, next) {
			return true, 0
		}
	}
}

func (b *localBucket) Close() {}

// localQuota counts units per day of the clock.
type localQuota struct {
	clock func() int64
	day   func(int64) (int64, time.Duration)
	limit int64
	state atomic.Int64 // day<<40 | used
}

func (q *localQuota) Take(n int64) (bool, time.Duration) {
	day, left := q.day(q.clock())
	for {
		v := q.state.Load()
		used := v & (1<<40 - 1)
		if v>>40 != day {
			used = 0
		}
		if used+n > q.limit {
			return false, left // spent until the day ends
		}
		if q.state.CompareAndSwap(v, day<<40|(used+n)) {
			return true, 0
		}
	}
}

func (q *localQuota) Close() {}
