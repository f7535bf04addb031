// Budgets: what an upstream (a paid provider) may be sent. Each upstream may have a
// requests-per-second, a units-per-second and a daily-units budget, units counted by a
// cost table (budget_costs.go). The budgets themselves are Meters the gateway builds
// (shared by every replica through Redis leases); on top of them each upstream paces
// itself at an effective rate that auto-tunes (AIMD) on the provider's throttles.
// Selection skips an upstream whose budget is spent (budgetRoom, one atomic load), the
// call takes from the one picked (budgetTake), and a call no upstream has room for
// waits briefly (bounded) and is then refused with errBudget.

package upstream

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/infura-gateway/infura-gateway/proto"
)

// BudgetSpec is an upstream's budget (0: that budget is not limited).
type BudgetSpec struct {
	RequestsPerSecond float64
	UnitsPerSecond    float64
	DailyUnits        int64
	// MethodCosts overrides the preset's cost of single methods (units per call).
	MethodCosts map[string]int64
	// Costs names the cost preset: generic (1 per call; the default), alchemy, infura.
	Costs string
}

// configured reports whether any budget is set.
func (b BudgetSpec) configured() bool {
	return b.RequestsPerSecond > 0 || b.UnitsPerSecond > 0 || b.DailyUnits > 0
}

// key identifies the budget for reloads: a changed budget is swapped in place, the
// upstream's connections kept.
func (b BudgetSpec) key() string {
	return fmt.Sprintf("%v|%v|%d|%v|%q", b.RequestsPerSecond, b.UnitsPerSecond, b.DailyUnits, b.MethodCosts, b.Costs)
}

// MeterKind is which budget a Meter keeps.
type MeterKind uint8

const (
	MeterRequests MeterKind = iota // requests per second
	MeterUnits                     // cost units per second
	MeterDaily                     // cost units per UTC day
	numMeters
)

// String is the kind as the metrics' budget label names it.
func (k MeterKind) String() string {
	switch k {
	case MeterUnits:
		return "units_per_second"
	case MeterDaily:
		return "daily_units"
	}
	return "requests_per_second"
}

// Meter is one budget of one upstream. Take spends n units if the budget has them, or
// says how long until it may (0: unknown). It never blocks and allocates nothing.
type Meter interface {
	Take(n int64) (ok bool, retryAfter time.Duration)
	Close()
}

// MeterFactory builds the meter of one budget of one upstream (limit: per second for
// MeterRequests and MeterUnits, per day for MeterDaily). The gateway's is shared by
// every replica through Redis; without one (nil) each process meters on its own.
type MeterFactory func(upstream string, kind MeterKind, limit float64) (Meter, error)

// budget is an upstream's budget as configured now; a reload that changes it swaps a
// new one in (Upstream.budget).
type budget struct {
	spec   BudgetSpec
	key    string
	meters [numMeters]Meter // nil: not limited
	costs  costTable
	// units: the auto-tuned rate paces cost units (only units_per_second is set);
	// otherwise requests.
	units bool
	tune  aimd
}

// budgetState is what an upstream keeps across budget reloads: its budget, the time
// before which it has no room, and its metrics.
type budgetState struct {
	cur atomic.Pointer[budget]
	// spentUntil: a take was refused; until this (router clock, ns) selection skips the
	// upstream. 0: no refusal outstanding.
	spentUntil atomic.Int64
	// paced: that refusal was the auto-tuned rate's (learned from the provider's
	// throttles), not a configured budget's; for the refusal's message.
	paced atomic.Bool
	// daily units spent by this replica today (UTC day of the router clock), for the gauge.
	day, daySpent                atomic.Int64
	spent, requests, skipped     *metrics.Counter
	refusedUnits, refusedRequest *metrics.Counter
}

func (r *Router) newBudget(name string, sp BudgetSpec) (*budget, error) {
	b := &budget{spec: sp, key: sp.key(), units: sp.RequestsPerSecond == 0 && sp.UnitsPerSecond > 0}
	var err error
	if b.costs, err = newCostTable(sp.Costs, sp.MethodCosts); err != nil {
		return nil, err
	}
	limits := [numMeters]float64{sp.RequestsPerSecond, sp.UnitsPerSecond, float64(sp.DailyUnits)}
	for k, lim := range limits {
		if lim <= 0 {
			continue
		}
		f := r.cfg.Meters
		if f == nil {
			f = localMeters(r.clock, r.day)
		}
		if b.meters[k], err = f(name, MeterKind(k), lim); err != nil {
			b.close()
			return nil, fmt.Errorf("budget %s: %w", MeterKind(k), err)
		}
	}
	conf := sp.RequestsPerSecond
	if b.units {
		conf = sp.UnitsPerSecond
	}
	b.tune.init(conf)
	return b, nil
}

func (b *budget) close() {
	for _, m := range b.meters {
		if m != nil {
			m.Close()
		}
	}
}

// setBudget installs sp as u's budget when it changed (a reload), keeping u.
func (r *Router) setBudget(u *Upstream, sp BudgetSpec) error {
	if old := u.budget.cur.Load(); old != nil && old.key == sp.key() {
		return nil
	}
	b, err := r.newBudget(u.spec.Name, sp)
	if err != nil {
		return fmt.Errorf("upstream %q: %w", u.spec.Name, err)
	}
	if old := u.budget.cur.Swap(b); old != nil {
		old.close()
	}
	u.budget.spentUntil.Store(0)
	return nil
}

// clock is the router's monotonic clock in nanoseconds (RouterConfig.Clock in tests).
func (r *Router) clock() int64 {
	if r.cfg.Clock != nil {
		return int64(r.cfg.Clock())
	}
	return int64(time.Since(r.epoch))
}

// budgetRoom reports whether u may be picked as far as its budget goes: no take was
// refused recently. One atomic load; the clock is read only after a refusal.
func (r *Router) budgetRoom(u *Upstream) bool {
	until := u.budget.spentUntil.Load()
	if until == 0 {
		return true
	}
	if r.clock() < until {
		return false
	}
	u.budget.spentUntil.CompareAndSwap(until, 0)
	return true
}

// budgetTake spends the budget of n requests costing units on u, the upstream picked.
// When any budget refuses, u is skipped by selection until it has room again.
func (r *Router) budgetTake(u *Upstream, n, units int64) bool {
	b := u.budget.cur.Load()
	if b == nil {
		return true
	}
	now := r.clock()
	paced := n
	if b.units {
		paced = units
	}
	if wait, ok := b.tune.take(now, paced); !ok {
		return r.budgetRefused(u, now, wait, true)
	}
	for k, m := range b.meters {
		if m == nil {
			continue
		}
		amount := units
		if MeterKind(k) == MeterRequests {
			amount = n
		}
		if ok, wait := m.Take(amount); !ok {
			return r.budgetRefused(u, now, wait, false)
		}
	}
	u.budget.spent.Add(int(units))
	u.budget.requests.Add(int(n))
	if b.meters[MeterDaily] != nil {
		day, _ := r.day(now)
		u.budget.addDaily(day, units)
	}
	return true
}

// day is the UTC day of the wall clock (daily budgets reset at UTC midnight), or of
// the router clock in tests, and how long until it ends.
func (r *Router) day(now int64) (int64, time.Duration) {
	const length = int64(24 * time.Hour)
	if r.cfg.Clock == nil {
		now = time.Now().UnixNano()
	}
	return now / length, time.Duration(length - now%length)
}

func (s *budgetState) addDaily(day, units int64) {
	if s.day.Load() != day {
		s.day.Store(day)
		s.daySpent.Store(0)
	}
	s.daySpent.Add(units)
}

// minBudgetWait is how long a refused upstream is skipped when its meter does not say.
const minBudgetWait = int64(10 * time.Millisecond)

func (r *Router) budgetRefused(u *Upstream, now int64, wait time.Duration, paced bool) bool {
	u.budget.skipped.Inc()
	if u.budget.paced.Load() != paced {
		u.budget.paced.Store(paced)
	}
	u.budget.spentUntil.Store(now + max(int64(wait), minBudgetWait))
	return false
}

// costOf is what req costs on u (1 without a budget).
func (u *Upstream) costOf(req *proto.Request) int64 {
	if b := u.budget.cur.Load(); b != nil {
		return b.costs.of(req)
	}
	return 1
}

// throttled is the hook of the provider's throttle signal (today HTTP 429,
// proto.ErrRateLimited): the upstream's effective rate goes down.
func (r *Router) throttled(u *Upstream) {
	if b := u.budget.cur.Load(); b != nil {
		b.tune.cut(r.clock())
	}
}

// Budget waiting: a call no upstream has room for waits for one, bounded per router
// in bytes (of the requests waiting) and in time (BudgetWait or the call's deadline).

// budgetBlocked returns the earliest time (router clock) an upstream skipped for its
// budget has room again; 0 when none is skipped for it.
func (r *Router) budgetBlocked() int64 {
	var first int64
	for _, u := range r.set.Load().all {
		if t := u.budget.spentUntil.Load(); t != 0 && (first == 0 || t < first) {
			first = t
		}
	}
	return first
}

// waitBudget waits, in the caller's goroutine, until an upstream skipped for its budget
// has room, at most until end (router clock) and the call's deadline. It reports
// whether to pick again; false: the wait is over, or the queue is full.
func (r *Router) waitBudget(size int64, end int64, deadline time.Time) bool {
	next := r.budgetBlocked()
	now := r.clock()
	// No room before the wait ends (a daily budget spent until midnight): refuse at
	// once, Retry-After saying when (errBudget), rather than hold the call for nothing.
	if next == 0 || now >= end || next > end || time.Until(deadline) < time.Duration(next-now) {
		return false
	}
	if r.budgetQueued.Add(size) > r.cfg.BudgetQueueBytes {
		r.budgetQueued.Add(-size)
		return false
	}
	defer r.budgetQueued.Add(-size)
	d := time.Duration(min(next, end) - now)
	if left := time.Until(deadline); left < d {
		d = left
	}
	if d <= 0 {
		return false
	}
	time.Sleep(max(d, time.Millisecond))
	return true
}

// budgetEnd is when a call that found no room stops waiting (router clock).
func (r *Router) budgetEnd() int64 { return r.clock() + int64(r.cfg.BudgetWait) }

// errBudget is the gateway's own refusal when every upstream that can serve a method
// is at its budget: -32005, 429 with Retry-After on HTTP routes, the seconds until the
// first of them has room (a spent daily budget: until the day's reset). The message
// says which budgets: configured ones, or rates learned from the providers' throttles.
func (r *Router) errBudget(req *proto.Request) *proto.Error {
	r.budgetRefusedN.Inc()
	m := proto.MethodOther
	if req != nil {
		m = req.Method
	}
	var configured, learned bool
	var first int64
	for _, u := range r.set.Load().all {
		if t := u.budget.spentUntil.Load(); t != 0 {
			p := u.budget.paced.Load()
			learned, configured = learned || p, configured || !p
			if first == 0 || t < first {
				first = t
			}
		}
	}
	kind := budgetConfigured
	if learned {
		kind = budgetLearned
		if configured {
			kind = budgetBoth
		}
	}
	e := r.budgetErrs[kind][m]
	if secs := (first - r.clock() + 1e9 - 1) / 1e9; secs > 1 {
		long := *e // rare (a day's budget spent): the cached errors say 1 s
		long.RetryAfter = int(secs)
		return &long
	}
	return e
}

// The budgets a refusal names: configured, learned from throttles, or both.
const (
	budgetConfigured = iota
	budgetLearned
	budgetBoth
)

func newBudgetErrors() (t [3][proto.NumMethods]*proto.Error) {
	at := [3]string{"is at its configured budget", "is at the rate learned from its provider's throttles",
		"is at its configured budget or at the rate learned from its provider's throttles"}
	for k := range t {
		for m := range t[k] {
			what := proto.Method(m).String()
			if proto.Method(m) == proto.MethodOther || proto.Method(m) == proto.MethodBatch {
				what = "this call"
			}
			e := proto.NewError(proto.CodeLimitExceeded, 429,
				"upstream budgets spent: every upstream that can serve "+what+" "+at[k])
			e.RetryAfter = 1
			t[k][m] = e
		}
	}
	return t
}

func (r *Router) initBudgets() {
	r.budgetErrs = newBudgetErrors()
	r.budgetRefusedN = r.cfg.Registry.Counter("gateway_budget_refused_total",
		"Client calls the gateway refused itself (-32005, HTTP 429) because every upstream that could serve them was at its budget.")
}

// budgetSeries are the per-upstream budget series, for removal.
func budgetSeries(u *Upstream) []string {
	l := `{upstream="` + u.spec.Name + `"}`
	s := []string{"gateway_upstream_budget_spent_units_total" + l, "gateway_upstream_budget_requests_total" + l,
		"gateway_upstream_budget_daily_spent_units" + l, "gateway_upstream_budget_skipped_total" + l}
	for k := range numMeters {
		bl := `{upstream="` + u.spec.Name + `",budget="` + k.String() + `"}`
		s = append(s, "gateway_upstream_budget_effective"+bl, "gateway_upstream_budget_configured"+bl)
	}
	return s
}

func (r *Router) registerBudget(u *Upstream) {
	reg, s := r.cfg.Registry, budgetSeries(u)
	u.budget.spent = reg.Counter(s[0], "Cost units sent to the upstream (its budget's cost table; 1 per call without one).")
	u.budget.requests = reg.Counter(s[1], "Requests sent to the upstream under its budget (a batch counts its calls).")
	reg.Gauge(s[2], "Cost units this replica sent to the upstream today (UTC); 0 without a daily budget.",
		func() float64 { return float64(u.budget.daySpent.Load()) })
	u.budget.skipped = reg.Counter(s[3], "Picks that passed over the upstream because a budget of it was spent (or its auto-tuned rate reached).")
	for k := range numMeters {
		reg.Gauge(s[4+2*int(k)], "The upstream's effective budget: the configured one, or lower while auto-tuned after throttles (requests_per_second or units_per_second; 0: not limited).",
			func() float64 { return u.budgetEffective(r.clock(), k) })
		reg.Gauge(s[5+2*int(k)], "The upstream's configured budget (0: none).",
			func() float64 { return u.budgetConfigured(k) })
	}
}

func (r *Router) unregisterBudget(u *Upstream) {
	for _, s := range budgetSeries(u) {
		r.cfg.Registry.Unregister(s)
	}
}

func (u *Upstream) budgetConfigured(k MeterKind) float64 {
	b := u.budget.cur.Load()
	if b == nil {
		return 0
	}
	return [numMeters]float64{b.spec.RequestsPerSecond, b.spec.UnitsPerSecond, float64(b.spec.DailyUnits)}[k]
}

// budgetEffective is the budget in force: the auto-tuned rate for the paced kind
// (requests, or units when only units_per_second is set), the configured value else.
func (u *Upstream) budgetEffective(now int64, k MeterKind) float64 {
	b := u.budget.cur.Load()
	if b == nil {
		return 0
	}
	if k == MeterRequests && !b.units || k == MeterUnits && b.units {
		return b.tune.rate(now)
	}
	return u.budgetConfigured(k)
}

// BudgetStatus is an upstream's budget on /status: configured and effective by budget
// (requests_per_second, units_per_second, daily_units; absent or 0: not limited), and
// what this replica spent.
type BudgetStatus struct {
	Costs      string             `json:"costs"`
	Configured map[string]float64 `json:"configured,omitempty"`
	Effective  map[string]float64 `json:"effective,omitempty"`
	SpentUnits uint64             `json:"spent_units"`
	Requests   uint64             `json:"requests"`
	DailySpent int64              `json:"daily_spent_units"`
	Skipped    uint64             `json:"skipped"`
	// SpentForMS: a budget refused a take; selection passes it over this much longer.
	SpentForMS int64 `json:"spent_for_ms,omitempty"`
}

func (r *Router) budgetStatus(u *Upstream) *BudgetStatus {
	b := u.budget.cur.Load()
	if b == nil {
		return nil
	}
	now := r.clock()
	st := &BudgetStatus{Costs: b.spec.Costs, SpentUnits: u.budget.spent.Get(), Requests: u.budget.requests.Get(),
		DailySpent: u.budget.daySpent.Load(), Skipped: u.budget.skipped.Get()}
	if st.Costs == "" {
		st.Costs = "generic"
	}
	for k := range numMeters {
		if c := u.budgetConfigured(k); c > 0 {
			if st.Configured == nil {
				st.Configured = map[string]float64{}
			}
			st.Configured[k.String()] = c
		}
		if e := u.budgetEffective(now, k); e > 0 {
			if st.Effective == nil {
				st.Effective = map[string]float64{}
			}
			st.Effective[k.String()] = e
		}
	}
	if until := u.budget.spentUntil.Load(); until > now {
		st.SpentForMS = (until - now) / 1e6
	}
	return st
}
