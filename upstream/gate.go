// States, not bans: the gate of an upstream keeps it out while the provider throttles it
// (the back-off it stated, or exponential with jitter) or while its quota is spent
// (until the period resets). Neither counts against health: the upstream is not broken.
// eligible reads the gate lock-free; a gate never closed costs two atomic loads.

package upstream

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/infura-gateway/infura-gateway/proto"
	"github.com/infura-gateway/infura-gateway/tracing"
)

// Back-off of a throttle the provider did not state: doubling from throttleMin to
// throttleMax, drawn over its upper half so replicas do not come back in step; a
// clean answer starts it over.
const (
	throttleMin = 250 * time.Millisecond
	throttleMax = 30 * time.Second
	// throttleStatedMax bounds a back-off the provider states for its rate: rate
	// windows are seconds, and a wrong or hostile Retry-After (999999999) must not take
	// an upstream, and with one upstream the gateway, out for the hour a stated quota
	// may last.
	throttleStatedMax = time.Minute
)

// QuotaReset is when an upstream's quota period begins again, in UTC: every day at
// Minute minutes past midnight (Day 0), or on day Day of every month at that time (the
// last day of shorter months).
type QuotaReset struct {
	Day    int
	Minute int
}

// ParseQuotaReset reads quota_reset: "" (daily at 00:00, as Infura resets), "HH:MM"
// (daily, UTC) or "monthly:D" (day D of the month, 1-31, at 00:00 UTC).
func ParseQuotaReset(s string) (QuotaReset, error) {
	switch {
	case s == "":
		return QuotaReset{}, nil
	case strings.HasPrefix(s, "monthly:"):
		d, err := strconv.Atoi(strings.TrimPrefix(s, "monthly:"))
		if err != nil || d < 1 || d > 31 {
			return QuotaReset{}, fmt.Errorf("quota_reset %q: want monthly:D with D from 1 to 31", s)
		}
		return QuotaReset{Day: d}, nil
	}
	t, err := time.Parse("15:04", s)
	if err != nil {
		return QuotaReset{}, fmt.Errorf("quota_reset %q: want a UTC time of day HH:MM (e.g. 00:00) or monthly:D", s)
	}
	return QuotaReset{Minute: t.Hour()*60 + t.Minute()}, nil
}

func (q QuotaReset) String() string {
	if q.Day > 0 {
		return "monthly:" + strconv.Itoa(q.Day)
	}
	return fmt.Sprintf("%02d:%02d", q.Minute/60, q.Minute%60)
}

// Next is the first reset after now.
func (q QuotaReset) Next(now time.Time) time.Time {
	now = now.UTC()
	h, m := q.Minute/60, q.Minute%60
	if q.Day == 0 {
		t := time.Date(now.Year(), now.Month(), now.Day(), h, m, 0, 0, time.UTC)
		if !t.After(now) {
			t = t.AddDate(0, 0, 1)
		}
		return t
	}
	at := func(y int, mo time.Month) time.Time {
		last := time.Date(y, mo+1, 0, 0, 0, 0, 0, time.UTC).Day()
		return time.Date(y, mo, min(q.Day, last), h, m, 0, 0, time.UTC)
	}
	t := at(now.Year(), now.Month())
	if !t.After(now) {
		t = at(now.Year(), now.Month()+1)
	}
	return t
}

// gate is an upstream's throttle and quota state. The deadlines are unix nanoseconds,
// 0 when open: eligible pays for a clock read only while one is set.
type gate struct {
	throttledUntil atomic.Int64
	exhaustedUntil atomic.Int64
	polledAt       atomic.Int64 // the last head poll or probe let through while exhausted
	streak         atomic.Int32 // unstated throttles in a row
	reset          QuotaReset
	edge           bool // a provider kind: refusals happen before the call runs
	answers        [numAnswerClasses]*metrics.Counter
}

// open reports whether the gate lets calls through now; it clears deadlines past.
func (g *gate) open() bool {
	t, e := g.throttledUntil.Load(), g.exhaustedUntil.Load()
	if t == 0 && e == 0 {
		return true
	}
	now := time.Now().UnixNano()
	if t != 0 && now >= t {
		g.throttledUntil.CompareAndSwap(t, 0)
		t = 0
	}
	if e != 0 && now >= e {
		g.exhaustedUntil.CompareAndSwap(e, 0)
		e = 0
	}
	return t == 0 && e == 0
}

// exhaustedPoll is how often an upstream out of its quota is still asked for its head
// or probed: one answer a minute says when it takes calls again (a provider that resets
// early, a reset misconfigured), where a poll a second was tens of thousands of refused
// calls a day and replica.
const exhaustedPoll = time.Minute

// mayPoll reports whether a head poll or probe may go to the upstream at now (unix
// nanoseconds): always unless it is out of its quota, then once per exhaustedPoll.
func (g *gate) mayPoll(now int64) bool {
	if e := g.exhaustedUntil.Load(); e == 0 || now >= e {
		return true
	}
	last := g.polledAt.Load()
	return now-last >= int64(exhaustedPoll) && g.polledAt.CompareAndSwap(last, now)
}

// polled ends the exhaustion a head poll or probe went out in (exhausted: exhaustedUntil
// then) once it is answered cleanly: the provider takes calls again (it reset early, or
// quota_reset is wrong). A call sent before the gate closed says nothing of the kind,
// and a later exhaustion stands.
func (g *gate) polled(exhausted int64) {
	if exhausted != 0 {
		g.exhaustedUntil.CompareAndSwap(exhausted, 0)
	}
}

// closedFor is how long the gate stays closed from now (0: open).
func (g *gate) closedFor(now int64) time.Duration {
	until := max(g.throttledUntil.Load(), g.exhaustedUntil.Load())
	if until <= now {
		return 0
	}
	return time.Duration(until - now)
}

// extend moves a deadline to until unless it is already later.
func extend(a *atomic.Int64, until int64) bool {
	for {
		old := a.Load()
		if old >= until {
			return false
		}
		if a.CompareAndSwap(old, until) {
			return old == 0
		}
	}
}

// throttle closes the gate for the stated back-off, or the next exponential one. An
// unstated throttle met while the gate is closed answers a call sent before it closed
// (nothing is sent through a closed gate): it says nothing new, and the back-off
// doubles once per time the gate opens, not once per call that was in flight.
func (g *gate) throttle(stated time.Duration, now time.Time) {
	d := min(stated, throttleStatedMax)
	if d <= 0 {
		if g.throttledUntil.Load() > now.UnixNano() {
			return
		}
		n := min(g.streak.Add(1)-1, 16)
		d = min(throttleMin<<n, throttleMax)
		d = d/2 + rand.N(d/2+1)
	}
	extend(&g.throttledUntil, now.Add(d).UnixNano())
}

// exhaust closes the gate until the quota period resets (or for the stated time); it
// reports whether the gate was open before.
func (g *gate) exhaust(stated time.Duration, now time.Time) (time.Time, bool) {
	until := g.reset.Next(now)
	if stated > 0 {
		until = now.Add(stated)
	}
	return until, extend(&g.exhaustedUntil, until.UnixNano())
}

// noteAnswer is where every classified attempt ends up: the answer counts by class,
// and the gate moves. Throttled and exhausted close the gate (not health: the
// upstream is not broken); a clean answer starts the throttle back-off over. What
// counts against health (unauthorized, broken) the pool and Mux already told it.
func (r *Router) noteAnswer(u *Upstream, c AnswerClass, backoff time.Duration) {
	g := &u.gate
	if ctr := g.answers[c]; ctr != nil {
		ctr.Inc()
	}
	switch c {
	case AnswerOK, AnswerClientError:
		if g.streak.Load() != 0 {
			g.streak.Store(0)
		}
	case AnswerThrottled:
		g.throttle(backoff, time.Now())
		r.throttled(u) // the budget's auto-tune: a throttle below the budget lowers it
	case AnswerExhausted:
		if until, first := g.exhaust(backoff, time.Now()); first {
			r.log.Warn("upstream quota exhausted: it takes no calls until its period resets",
				"upstream", u.spec.Name, "until", until.Format(time.RFC3339))
		}
	}
}

// gateSeries are the gate's per-upstream series, for removal.
func gateSeries(u *Upstream) []string {
	l := `{upstream="` + u.spec.Name + `"}`
	s := []string{"gateway_upstream_throttled" + l, "gateway_upstream_exhausted" + l,
		"gateway_upstream_exhausted_reset_seconds" + l}
	for c := range numAnswerClasses {
		s = append(s, `gateway_upstream_answers_total{upstream="`+u.spec.Name+`",class="`+c.String()+`"}`)
	}
	return s
}

// registerGate declares the gate's series of u in reg.
func registerGate(reg *Registry, u *Upstream) {
	s := gateSeries(u)
	g := &u.gate
	reg.Gauge(s[0], "1 while the provider throttles the upstream: it takes no calls until its back-off ends.",
		func() float64 { return b2f(g.throttledUntil.Load() > time.Now().UnixNano()) })
	reg.Gauge(s[1], "1 while the upstream's quota is spent: it takes no calls until its period resets.",
		func() float64 { return b2f(g.exhaustedUntil.Load() > time.Now().UnixNano()) })
	reg.Gauge(s[2], "Seconds until an exhausted upstream's quota period resets (0 when not exhausted).",
		func() float64 {
			if e := g.exhaustedUntil.Load() - time.Now().UnixNano(); e > 0 {
				return float64(e) / 1e9
			}
			return 0
		})
	for c := range numAnswerClasses {
		g.answers[c] = reg.Counter(s[3+int(c)],
			"Upstream answers by class: answer, throttled, exhausted, unauthorized, missing_data, client_error, broken, method_refused.")
	}
}

func unregisterGate(reg *Registry, u *Upstream) {
	for _, s := range gateSeries(u) {
		reg.Unregister(s)
	}
}

// GateStatus is an upstream's answers and gate on /status.
type GateStatus struct {
	// Answers counts its answers by class since it was configured.
	Answers map[string]uint64 `json:"answers"`
	// ThrottledFor is how long its throttle back-off lasts from now, in seconds.
	ThrottledFor float64 `json:"throttled_for_s,omitempty"`
	// ExhaustedUntil is when its quota period resets while it is exhausted (RFC 3339).
	ExhaustedUntil string `json:"exhausted_until,omitempty"`
}

func (g *gate) status(now time.Time) GateStatus {
	st := GateStatus{Answers: make(map[string]uint64, numAnswerClasses)}
	for c, ctr := range g.answers {
		if ctr != nil {
			st.Answers[AnswerClass(c).String()] = ctr.Get()
		}
	}
	if t := g.throttledUntil.Load() - now.UnixNano(); t > 0 {
		st.ThrottledFor = math.Round(float64(t)/1e6) / 1e3
	}
	if e := g.exhaustedUntil.Load(); e > now.UnixNano() {
		st.ExhaustedUntil = time.Unix(0, e).UTC().Format(time.RFC3339)
	}
	return st
}

// errThrottled and errExhausted stand for a provider's refusal in the attempt that met
// it: the provider's own text never reaches the client.
var (
	errThrottled = proto.NewError(proto.CodeLimitExceeded, 429, "upstream throttled the call")
	errExhausted = proto.NewError(proto.CodeLimitExceeded, 429, "upstream quota exhausted")
)

// refusedUnrun reports whether e says a provider refused the call before running it
// (its rate, its quota, the gateway's key): such a call may go to another upstream
// even when it is a write. Infura, Alchemy and QuickNode check the key, the rate and
// the quota at their edge, before any node sees the call (their docs: a refused call
// is to be sent again after the back-off), so sending it elsewhere cannot run it
// twice. A generic node gives no such promise (a 429 may come from anything in
// front of it): there a write is still sent once.
func (g *gate) refusedUnrun(e *proto.Error) bool {
	return g.edge && (e == errThrottled || e == errExhausted || e == errUpstreamAuth || e == errMethodRefused)
}

// refusal is the gateway's own answer when the upstreams that could take a call are
// all throttled or exhausted: -32005, 429 with Retry-After the shortest back-off. nil
// when no upstream's gate is closed (the call failed otherwise).
func (r *Router) refusal(via Transport) *proto.Error {
	now := time.Now().UnixNano()
	var shortest time.Duration
	for _, u := range r.set.Load().all {
		if !u.servesChain(via) {
			continue
		}
		if d := u.gate.closedFor(now); d > 0 && (shortest == 0 || d < shortest) {
			shortest = d
		}
	}
	if shortest == 0 {
		return nil
	}
	return refusalAfter(max(1, int(math.Ceil(shortest.Seconds()))))
}

// refusals caches the refusal per Retry-After second up to len, so a refused call
// allocates nothing; longer waits (quotas) share the last one built.
var (
	refusals    [301]atomic.Pointer[proto.Error]
	refusalLong atomic.Pointer[proto.Error]
)

func refusalAfter(secs int) *proto.Error {
	p := &refusalLong
	if secs < len(refusals) {
		p = &refusals[secs]
	}
	if e := p.Load(); e != nil && e.RetryAfter == secs {
		return e
	}
	e := proto.NewError(proto.CodeLimitExceeded, 429, fmt.Sprintf(
		"upstream rate limit reached: every upstream that can take this call is throttled or out of quota; retry after %d s", secs))
	e.RetryAfter = secs
	p.Store(e)
	return e
}

// finalError is what a call that failed everywhere answers: the refusal when gates
// were closed (a throttle met, or no upstream open to pick), else err as it is.
func (r *Router) finalError(err error, via Transport) error {
	if err == errNoUpstream || err == errThrottled || err == errExhausted {
		if e := r.refusal(via); e != nil {
			return e
		}
	}
	return err
}

// refusalClass is the class of an attempt that ended with e, as far as the error
// tells (a batch: answered, refused, or broken).
func refusalClass(e *proto.Error) AnswerClass {
	switch e {
	case nil:
		return AnswerOK
	case errThrottled:
		return AnswerThrottled
	case errExhausted:
		return AnswerExhausted
	case errUpstreamAuth:
		return AnswerUnauthorized
	case errMethodRefused:
		return AnswerMethodRefused
	}
	return AnswerBroken
}

// poolCall is a call the router makes itself over u's HTTP pool (head polls, probes,
// chain checks): classified and noted like a client's. Answered cleanly while u is out
// of its quota (the gate lets these through once a minute), it opens the gate (polled).
func (r *Router) poolCall(u *Upstream, req *proto.Request, deadline time.Time) ([]byte, error) {
	var tp [tracing.HeaderLen]byte
	exhausted := u.gate.exhaustedUntil.Load()
	ans, n, err := u.pool.call(nil, req, gatewayID1, deadline, req.Trace.Header(&tp))
	if err != proto.ErrAnswerBudget {
		r.noteAnswer(u, n.class, n.backoff)
	}
	if err == nil {
		u.gate.polled(exhausted)
	}
	return ans, err
}
