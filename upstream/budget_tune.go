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
// per cutEvery) and additive increase back up to the configured rate. Calls are paced
// at the effective rate only while it is below the configured one (the meters keep
// the configured rate themselves). All state is atomic: take is a few loads and one
// compare-and-swap.
type aimd struct {
	configured float64       // 0: learn from zero configuration
	base       atomic.Uint64 // float64 bits: the rate at baseAt; 0: unlimited
	baseAt     atomic.Int64
	lastCut    atomic.Int64
	tat        atomic.Int64 // GCRA theoretical arrival time of the pacing
	// Requests in the current and the previous second, to know where to cut from when
	// the first throttle comes with no configured rate.
	sec, cur, prev atomic.Int64
}

const (
	aimdDecrease = 0.75 // the multiplicative decrease
	// aimdIncrease is the additive increase per second: a share of the configured rate
	// (or of the learned one), at least one unit per second.
	aimdIncrease = 0.05
	cutEvery     = int64(200 * time.Millisecond) // about a round trip: the 429s of calls already sent say nothing new
	paceBurst    = 0.1                           // seconds of the effective rate that may go at once
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
		ref = base
	}
	step := max(1, aimdIncrease*ref)
	r := base + step*float64(max(now-a.baseAt.Load(), 0))/1e9
	if a.configured > 0 {
		r = min(r, a.configured)
	}
	return r
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
		if over := next - now - tau; over > 0 {
			return time.Duration(over), false
		}
		if a.tat.CompareAndSwap(tat, next) {
			return 0, true
		}
	}
}

func (a *aimd) count(now, n int64) {
	s := now / 1e9
	if old := a.sec.Load(); old != s && a.sec.CompareAndSwap(old, s) {
		c := a.cur.Swap(0)
		if old != s-1 {
			c = 0
		}
		a.prev.Store(c)
	}
	a.cur.Add(n)
}

// cut is a throttle at now: the effective rate goes down by aimdDecrease, at most once
// per cutEvery. With no rate yet (unlimited), the cut is from the rate sent in the
// last second.
func (a *aimd) cut(now int64) {
	last := a.lastCut.Load()
	if last != 0 && now-last < cutEvery || !a.lastCut.CompareAndSwap(last, now) {
		return
	}
	r := a.rate(now)
	if r == 0 {
		r = float64(max(a.prev.Load(), a.cur.Load(), 1))
	}
	// baseAt first: a reader between the two stores sees the old rate without its
	// growth, never the old rate grown from a later time.
	a.baseAt.Store(now)
	a.base.Store(math.Float64bits(max(r*aimdDecrease, 1)))
}

// localMeters is the meter factory without a gateway: token buckets and a daily count
// per process, on the router clock.
func localMeters(clock func() int64, day func(int64) int64) MeterFactory {
	return func(_ string, kind MeterKind, limit float64) (Meter, error) {
		if kind == MeterDaily {
			return &localQuota{clock: clock, day: day, limit: int64(limit)}, nil
		}
		interval := int64(1e9 / limit)
		return &localBucket{clock: clock, interval: interval, tau: max(interval, int64(1e9))}, nil
	}
}

// localBucket is GCRA: one compare-and-swap on the theoretical arrival time; a burst
// of one second of the rate.
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
		if over := next - now - b.tau; over > 0 {
			return false, time.Duration(over)
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
	day   func(int64) int64
	limit int64
	state atomic.Int64 // day<<40 | used
}

func (q *localQuota) Take(n int64) (bool, time.Duration) {
	day := q.day(q.clock())
	for {
		v := q.state.Load()
		used := v & (1<<40 - 1)
		if v>>40 != day {
			used = 0
		}
		if used+n > q.limit {
			return false, time.Minute // the day's end is far: look again now and then
		}
		if q.state.CompareAndSwap(v, day<<40|(used+n)) {
			return true, 0
		}
	}
}

func (q *localQuota) Close() {}
