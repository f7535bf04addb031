package upstream

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
)

// State is what the router may do with an upstream.
type State uint8

const (
	// StateHealthy upstreams take any call.
	StateHealthy State = iota
	// StateLagging upstreams are more than MaxLag blocks behind the best head: they
	// take only calls for blocks they have, and lose their subscriptions.
	StateLagging
	// StateBanned upstreams take no traffic until a probe readmits them.
	StateBanned
)

var stateNames = [...]string{"healthy", "lagging", "banned"}

func (s State) String() string { return stateNames[s] }

// HealthConfig holds the thresholds that ban and readmit upstreams. Every field is
// required (the defaults live in the gateway's Config).
type HealthConfig struct {
	// Window is how far back error rates and latency quantiles look.
	Window time.Duration
	// MinRequests in the window before the error rate can ban.
	MinRequests int
	// MaxErrorRate bans an upstream whose share of failed calls in the window is above
	// it (see verdictOf for what fails: transport failures, 5xx without a JSON-RPC
	// body, refused credentials, malformed answers; never what the client asked for,
	// nor a provider's throttle or spent quota).
	MaxErrorRate float64
	// MaxFailures bans an upstream after that many consecutive failed calls.
	MaxFailures int
	// MaxLag marks an upstream lagging when its head is more than that many blocks
	// behind the best head.
	MaxLag uint64
	// SlowFactor and SlowMin ban an upstream whose latency quantile in a judged class
	// (proto.Class.Judged) is both above SlowMin and SlowFactor times the best healthy
	// upstream's in the same class.
	SlowFactor float64
	SlowMin    time.Duration
	// BanMin is the first ban; each ban in a row doubles it, up to BanMax.
	BanMin, BanMax time.Duration
	// Readmit is how many successful probes in a row end a ban.
	Readmit int
}

// latencyBounds are the upper bounds of the health histogram's buckets: 1 ms to ~65 s,
// doubling; enough to tell a 50 ms upstream from a 2 s one.
var latencyBounds = func() [18]time.Duration {
	var b [18]time.Duration
	d := time.Millisecond
	for i := range b {
		b[i] = d
		d *= 2
	}
	return b
}()

// healthSlots divide the window: counts older than the window fall out a slot at a time.
const healthSlots = 10

// banSlow is the reason of a ban for latency: an answer does not end it early (observe).
const banSlow = "slow"

type healthSlot struct {
	start    int64 // unix nanoseconds the slot's period began
	ok, fail int64
	// buckets hold answered calls' latencies per method class: each class is judged
	// against its own baseline, so slow eth_calls cannot make eth_blockNumber look slow.
	buckets [proto.NumClasses][len(latencyBounds) + 1]int64
}

// verdict is what one call says about the upstream.
type verdict uint8

const (
	// verdictAnswered: the upstream answered (a JSON-RPC error is an answer); its
	// latency counts in the call's class.
	verdictAnswered verdict = iota
	// verdictNeutral: the call says nothing about the upstream. The client's ask ended
	// it (an answer over the byte budget, an expensive call past its deadline) or the
	// gateway's own limits did (a full queue or pool).
	verdictNeutral
	// verdictFailed: the upstream is broken: refused, reset, TLS, 5xx without a
	// JSON-RPC body, 429, a malformed answer or one for another id, a cheap call timed out.
	verdictFailed
)

// verdictOf judges a call by its outcome, its error and its class.
func verdictOf(o Outcome, perr *proto.Error, cls proto.Class) verdict {
	switch {
	case o == OutcomeOK || o == OutcomeRPCError:
		return verdictAnswered
	case o == OutcomeOverloaded:
		return verdictNeutral
	case perr == errThrottled || perr == errExhausted || perr == errMethodRefused:
		// The provider refused for its rate or quota: the gate keeps the upstream out
		// for the back-off, and it is not broken. Or it refused the method (its plan):
		// the upstream is kept from that method only (methodrefusal.go).
		return verdictNeutral
	case perr == proto.ErrResponseTooLarge || perr == proto.ErrBodyTooLarge:
		// The answer (or the request) is over the gateway's byte budget: what the
		// client asked for, not a fault of the node.
		return verdictNeutral
	case o == OutcomeTimeout && !cls.Judged():
		// An eth_call or eth_getLogs takes as long as the client makes it.
		return verdictNeutral
	}
	return verdictFailed
}

// Health tracks one upstream: what its calls show (failures, latency) and where its
// head is. The router reads it to route; it never waits on the upstream.
type Health struct {
	cfg *HealthConfig

	mu          sync.Mutex
	slots       [healthSlots]healthSlot
	ewma        [proto.NumClasses]float64 // seconds, per method class
	consecutive int
	state       State
	reason      string
	bannedUntil time.Time
	bans        int // bans in a row, for the backoff
	probesOK    int
	lastErr     string

	head      atomic.Uint64
	headKnown atomic.Bool
	headAt    atomic.Int64 // unix nanoseconds of the last head change
	stateFast atomic.Uint32
	ewmaBits  [proto.NumClasses]atomic.Uint64
	banCount  atomic.Int64
}

func newHealth(cfg *HealthConfig) *Health {
	return &Health{cfg: cfg}
}

// State returns the upstream's state; lock-free.
func (h *Health) State() State { return State(h.stateFast.Load()) }

// Head returns the upstream's latest known block (0 when unknown).
func (h *Health) Head() uint64 { return h.head.Load() }

// Latency returns the exponentially weighted mean latency of answered cheap calls
// (proto.ClassCheap), the upstream's baseline.
func (h *Health) Latency() time.Duration { return h.LatencyOf(proto.ClassCheap) }

// LatencyOf returns the exponentially weighted mean latency of answered calls of cls
// (0 when there was none).
func (h *Health) LatencyOf(cls proto.Class) time.Duration {
	return time.Duration(math.Float64frombits(h.ewmaBits[cls].Load()) * float64(time.Second))
}

func (h *Health) slot(now time.Time) *healthSlot {
	width := int64(h.cfg.Window) / healthSlots
	n := now.UnixNano()
	i := (n / width) % healthSlots
	s := &h.slots[i]
	if start := n - n%width; s.start != start {
		*s = healthSlot{start: start}
	}
	return s
}

// observe records one call of class cls: v says what it shows (verdictOf), d how
// long it took. It bans on the thresholds.
func (h *Health) observe(cls proto.Class, v verdict, d time.Duration, errText string, now time.Time) {
	if v == verdictNeutral {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.slot(now)
	if v == verdictFailed {
		s.fail++
		h.consecutive++
		h.lastErr = errText
		if h.state != StateBanned && h.consecutive >= h.cfg.MaxFailures {
			h.banLocked(now, "consecutive failures")
		} else if h.state != StateBanned {
			if okN, failN := h.countsLocked(now); okN+failN >= int64(h.cfg.MinRequests) &&
				float64(failN) > h.cfg.MaxErrorRate*float64(okN+failN) {
				h.banLocked(now, "error rate")
			}
		}
		return
	}
	s.ok++
	h.consecutive = 0
	if h.state == StateBanned && h.reason != banSlow && now.Before(h.bannedUntil) {
		// A banned upstream answered (the last resort: nothing else could take the
		// call): it is back. Probed now, not when a ban that doubled through an
		// outage ends (up to BanMax after the node came back).
		h.bannedUntil = now
	}
	i := 0
	for i < len(latencyBounds) && d > latencyBounds[i] {
		i++
	}
	s.buckets[cls][i]++
	const alpha = 0.1
	sec := d.Seconds()
	if h.ewma[cls] == 0 {
		h.ewma[cls] = sec
	} else {
		h.ewma[cls] = alpha*sec + (1-alpha)*h.ewma[cls]
	}
	h.ewmaBits[cls].Store(math.Float64bits(h.ewma[cls]))
}

// countsLocked sums the slots still inside the window.
func (h *Health) countsLocked(now time.Time) (ok, fail int64) {
	oldest := now.UnixNano() - int64(h.cfg.Window)
	for i := range h.slots {
		if s := &h.slots[i]; s.start > oldest {
			ok += s.ok
			fail += s.fail
		}
	}
	return ok, fail
}

// Quantile returns the q-quantile of the latency of answered calls of cls over the
// window (the upper bound of its bucket), or 0 when there were none.
func (h *Health) Quantile(cls proto.Class, q float64, now time.Time) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.quantileLocked(cls, q, now)
}

// judgedQuantile is Quantile when the window holds at least MinRequests answers of
// the class, else 0: a few samples (a fallback that serves only probes, one slow call)
// neither set the latency others are judged against nor get an upstream banned as slow.
func (h *Health) judgedQuantile(cls proto.Class, q float64, now time.Time) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.judgedQuantileLocked(cls, q, now)
}

func (h *Health) judgedQuantileLocked(cls proto.Class, q float64, now time.Time) time.Duration {
	if d, n := h.quantileNLocked(cls, q, now); n >= int64(max(h.cfg.MinRequests, 1)) {
		return d
	}
	return 0
}

func (h *Health) quantileLocked(cls proto.Class, q float64, now time.Time) time.Duration {
	d, _ := h.quantileNLocked(cls, q, now)
	return d
}

// quantileNLocked is quantileLocked and the number of answers it is of.
func (h *Health) quantileNLocked(cls proto.Class, q float64, now time.Time) (time.Duration, int64) {
	var buckets [len(latencyBounds) + 1]int64
	var total int64
	oldest := now.UnixNano() - int64(h.cfg.Window)
	for i := range h.slots {
		if s := &h.slots[i]; s.start > oldest {
			for j, n := range s.buckets[cls] {
				buckets[j] += n
				total += n
			}
		}
	}
	if total == 0 {
		return 0, 0
	}
	rank := int64(math.Ceil(q * float64(total)))
	var seen int64
	for j, n := range buckets {
		if seen += n; seen >= rank {
			if j == len(latencyBounds) {
				return 2 * latencyBounds[len(latencyBounds)-1], total
			}
			return latencyBounds[j], total
		}
	}
	return 0, total
}

// banLocked takes the upstream out of rotation for a backoff that doubles with each
// ban in a row.
func (h *Health) banLocked(now time.Time, reason string) {
	d := h.cfg.BanMin << min(h.bans, 20)
	if d > h.cfg.BanMax || d <= 0 {
		d = h.cfg.BanMax
	}
	h.bans++
	h.state, h.reason, h.bannedUntil, h.probesOK = StateBanned, reason, now.Add(d), 0
	h.stateFast.Store(uint32(StateBanned))
	h.banCount.Add(1)
}

// Ban takes the upstream out of rotation now (the router saw it fail in a way calls do
// not count: its socket gone, its head stalled).
func (h *Health) Ban(reason string, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.state != StateBanned {
		h.banLocked(now, reason)
	}
}

// probeDue reports whether a banned upstream's ban is over and it should be probed.
func (h *Health) probeDue(now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.state == StateBanned && !now.Before(h.bannedUntil)
}

// probed records a probe's result (ok, and how long it took): Readmit successes in a
// row readmit the upstream; a failure bans it again, for longer.
func (h *Health) probed(ok bool, took time.Duration, errText string, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.state != StateBanned {
		return
	}
	if !ok {
		h.lastErr = errText
		h.banLocked(now, h.reason)
		return
	}
	if h.probesOK++; h.probesOK >= h.cfg.Readmit {
		h.state, h.reason, h.consecutive = StateHealthy, "", 0
		h.stateFast.Store(uint32(StateHealthy))
		// A fresh window: the failures that banned it do not ban it again at once.
		h.slots = [healthSlots]healthSlot{}
		// A fresh latency too, the probe's: routing picks by it, and a latency from
		// before the ban (seconds, for an upstream banned as slow) would keep a
		// recovered upstream from being picked until its mean came down again.
		h.ewma = [proto.NumClasses]float64{proto.ClassCheap: took.Seconds()}
		for c := range h.ewmaBits {
			h.ewmaBits[c].Store(math.Float64bits(h.ewma[c]))
		}
	}
}

// HeadKnown reports whether the upstream reported a head yet.
func (h *Health) HeadKnown() bool { return h.headKnown.Load() }

// setHead records the upstream's head.
func (h *Health) setHead(n uint64, now time.Time) {
	if old := h.head.Swap(n); old != n || !h.headKnown.Load() {
		h.headAt.Store(now.UnixNano())
	}
	h.headKnown.Store(true)
}

// review applies the head-relative and latency-relative rules against the best head
// and, per judged class, the best latency quantile of that class (bestQ); it returns
// the state.
func (h *Health) review(best uint64, bestQ *[proto.NumClasses]time.Duration, q float64, now time.Time) State {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.state == StateBanned {
		return h.state
	}
	for c := range proto.NumClasses {
		if !c.Judged() {
			continue // a slow eth_call or eth_getLogs is the client's doing
		}
		if mine := h.judgedQuantileLocked(c, q, now); mine > h.cfg.SlowMin && bestQ[c] > 0 &&
			float64(mine) > h.cfg.SlowFactor*float64(bestQ[c]) {
			h.banLocked(now, banSlow)
			return h.state
		}
	}
	head := h.head.Load()
	st := StateHealthy
	// An upstream whose head is not known yet is not judged: routing still prefers the
	// ones at the served head.
	if h.headKnown.Load() && best > head+h.cfg.MaxLag {
		st = StateLagging
	}
	if st != h.state {
		h.state = st
		h.stateFast.Store(uint32(st))
		if st == StateLagging {
			h.reason = "lagging"
		} else {
			h.reason = ""
		}
	}
	if h.state == StateHealthy {
		h.bans = 0 // a healthy review resets the backoff
	}
	return h.state
}

// HealthStatus is a snapshot for /status and metrics.
type HealthStatus struct {
	State      string  `json:"state"`
	Reason     string  `json:"reason,omitempty"`
	Head       uint64  `json:"head"`
	Lag        uint64  `json:"lag"`
	LatencyMS  float64 `json:"latency_ewma_ms"`
	LatencyP90 float64 `json:"latency_p90_ms"`
	// ClassP90 is the p90 latency per method class with answers in the window
	// (LatencyMS and LatencyP90 are the cheap class's).
	ClassP90    map[string]float64 `json:"latency_p90_ms_by_class,omitempty"`
	ErrorRate   float64            `json:"error_rate"`
	Requests    int64              `json:"requests_in_window"`
	Consecutive int                `json:"consecutive_failures"`
	Bans        int64              `json:"bans"`
	BannedFor   float64            `json:"banned_for_s,omitempty"`
	LastError   string             `json:"last_error,omitempty"`
}

func (h *Health) status(best uint64, now time.Time) HealthStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	ok, fail := h.countsLocked(now)
	st := HealthStatus{
		State: h.state.String(), Reason: h.reason, Head: h.head.Load(),
		LatencyMS:   h.ewma[proto.ClassCheap] * 1000,
		LatencyP90:  float64(h.quantileLocked(proto.ClassCheap, 0.9, now)) / float64(time.Millisecond),
		Requests:    ok + fail,
		Consecutive: h.consecutive,
		Bans:        h.banCount.Load(),
		LastError:   h.lastErr,
	}
	for c := range proto.NumClasses {
		if p := h.quantileLocked(c, 0.9, now); p > 0 {
			if st.ClassP90 == nil {
				st.ClassP90 = make(map[string]float64, proto.NumClasses)
			}
			st.ClassP90[c.String()] = float64(p) / float64(time.Millisecond)
		}
	}
	if best > st.Head {
		st.Lag = best - st.Head
	}
	if ok+fail > 0 {
		st.ErrorRate = float64(fail) / float64(ok+fail)
	}
	if h.state == StateBanned && now.Before(h.bannedUntil) {
		st.BannedFor = h.bannedUntil.Sub(now).Seconds()
	}
	return st
}
