package upstream

import (
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/infura-gateway/infura-gateway/proto"
)

// Transport labels which path a call took to the upstream.
type Transport uint8

const (
	TransportHTTP Transport = iota
	TransportWS
	numTransports
)

func (t Transport) String() string {
	if t == TransportWS {
		return "ws"
	}
	return "http"
}

// Outcome classifies an upstream call for metrics.
type Outcome uint8

const (
	OutcomeOK          Outcome = iota // a result
	OutcomeRPCError                   // a JSON-RPC error answer from the node
	OutcomeTimeout                    // no answer before the deadline
	OutcomeUnavailable                // cannot connect, connection lost
	OutcomeOverloaded                 // local queue or connection pool full
	OutcomeError                      // anything else: bad answer, too large
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"ok", "rpc_error", "timeout", "unavailable", "overloaded", "error"}

func (o Outcome) String() string { return outcomeNames[o] }

func outcomeOf(e *proto.Error) Outcome {
	switch e {
	case nil:
		return OutcomeOK
	case proto.ErrTimeout:
		return OutcomeTimeout
	case proto.ErrUnavailable, proto.ErrUnreachable, proto.ErrShuttingDown:
		return OutcomeUnavailable
	case proto.ErrOverloaded, proto.ErrAnswerBudget:
		return OutcomeOverloaded
	}
	return OutcomeError
}

// callClock is the anchor of callNow, re-anchored each second.
var callClock atomic.Pointer[time.Time]

func init() {
	t := time.Now()
	callClock.Store(&t)
}

// callNow is time.Now for timing calls at about a third of its price here: one read of
// the monotonic clock (time.Since of a time carrying one) where time.Now reads the wall
// clock too, which costs ~100 ns a call on a VM's kvm-clock. Its wall time is the
// anchor's advanced by the monotonic clock: it can trail a step of the system clock
// (NTP) by at most the second until the next re-anchoring.
func callNow() time.Time {
	base := callClock.Load()
	d := time.Since(*base)
	if d >= time.Second {
		t := time.Now()
		callClock.CompareAndSwap(base, &t)
		return t
	}
	return base.Add(d)
}

// Latency buckets from 0.5 ms to ~33 s: loopback nodes answer in well under a
// millisecond, remote providers in tens of milliseconds, eth_getLogs can take seconds.
var latencyBuckets = metrics.ExponentialBuckets(0.0005, 2, 17)

// Metrics are one upstream's series, labelled upstream="<name>". Per-(transport,
// method, outcome) series are created on first use and kept in arrays, so a call costs
// atomic loads, never a map lookup or a string build.
type Metrics struct {
	reg   *Registry
	label string // `upstream="name"`

	calls     [numTransports][proto.NumMethods][numOutcomes]atomic.Pointer[ShardedCounter]
	durations [numTransports][proto.NumMethods]atomic.Pointer[Histogram]
	up        [numTransports]atomic.Bool
	lastOK    [numTransports]atomic.Int64 // unix nanoseconds of the last answer

	retries *metrics.Counter

	// health, when set, hears of every call: the router's view of this upstream.
	health *Health
	// onUp, when set, is called when a transport reaches the upstream again after a
	// call found it unreachable (down): the node behind it may have restarted. Not on
	// the first answer: the start reads what it needs itself.
	onUp func()
	down [numTransports]atomic.Bool

	// The websocket side (Mux).
	wsConns, pending, queueDepth, upstreamSubs atomic.Int64
	reconnects, resubscribes, silentSubs       *metrics.Counter
	stalled                                    *metrics.Counter
	msgsIn, msgsOut, writes, frames, reads     *metrics.Counter
	oversized, invalid                         *metrics.Counter
	reconnectGap                               *metrics.PrometheusHistogram
}

// NewMetrics registers the series of the upstream called name in reg.
func NewMetrics(reg *Registry, name string) *Metrics {
	m := &Metrics{reg: reg, label: `upstream="` + name + `"`}
	// The websocket series appear when the upstream has a socket (NewMux): an upstream
	// without one must not look down.
	m.registerTransport(TransportHTTP)
	m.retries = reg.Counter(`gateway_upstream_retries_total{`+m.label+`}`,
		"Reads sent again after a reset on a kept-alive upstream connection.")
	gauge := func(name, help string, v *atomic.Int64) {
		reg.Gauge(name+`{`+m.label+`}`, help, func() float64 { return float64(v.Load()) })
	}
	gauge("gateway_upstream_ws_connections", "Open shared upstream websocket connections.", &m.wsConns)
	gauge("gateway_upstream_ws_pending_requests", "Requests sent over upstream websockets awaiting an answer.", &m.pending)
	gauge("gateway_upstream_ws_queue_depth", "Frames queued for the upstream websocket writers.", &m.queueDepth)
	gauge("gateway_upstream_ws_subscriptions", "Subscriptions held on the upstream.", &m.upstreamSubs)
	m.reconnects = reg.Counter(`gateway_upstream_ws_reconnects_total{`+m.label+`}`,
		"Upstream websocket reconnections after a loss.")
	m.resubscribes = reg.Counter(`gateway_upstream_ws_resubscribes_total{`+m.label+`}`,
		"Upstream subscriptions re-established after a reconnect.")
	m.silentSubs = reg.Counter(`gateway_upstream_ws_silent_subscriptions_total{`+m.label+`}`,
		"Times an upstream socket's subscriptions were found silent with the socket open (its HTTP head moved on, no head was pushed) and subscribed again.")
	m.stalled = reg.Counter(`gateway_upstream_ws_stalled_total{`+m.label+`}`,
		"Upstream sockets declared dead because a call timed out and a ping then got neither its pong nor an answer back within -ws-probe-timeout; dialled again, their subscriptions moved.")
	m.msgsIn = reg.Counter(`gateway_upstream_ws_messages_total{`+m.label+`,direction="in"}`,
		"Websocket messages exchanged with the upstream, by direction.")
	m.msgsOut = reg.Counter(`gateway_upstream_ws_messages_total{`+m.label+`,direction="out"}`,
		"Websocket messages exchanged with the upstream, by direction.")
	m.writes = reg.Counter(`gateway_upstream_ws_writes_total{`+m.label+`}`,
		"Buffered writes (flushes) to upstream websockets.")
	m.frames = reg.Counter(`gateway_upstream_ws_frames_written_total{`+m.label+`}`,
		"Frames written to upstream websockets; divided by writes gives frames per write.")
	m.reads = reg.Counter(`gateway_upstream_ws_reads_total{`+m.label+`}`,
		"Read calls on upstream websocket connections.")
	m.oversized = reg.Counter(`gateway_upstream_ws_oversized_messages_total{`+m.label+`}`,
		"Upstream websocket messages over the size limit, skipped without buffering them (the call they answer fails with -32005).")
	m.invalid = reg.Counter(`gateway_upstream_ws_invalid_messages_total{`+m.label+`}`,
		"Upstream websocket messages dropped as invalid (not JSON, not UTF-8, not an object, or an id the gateway never sent); the call such an answer names fails with an error at once.")
	// 10 ms to ~80 s.
	m.reconnectGap = reg.Histogram(`gateway_upstream_ws_reconnect_gap_seconds{`+m.label+`}`,
		"Time between losing an upstream websocket and having its subscriptions back.",
		metrics.ExponentialBuckets(0.01, 2, 14))
	return m
}

// registerTransport declares the up gauge of transport t, and one series of each call
// family so dashboards and alerts find them from the start.
func (m *Metrics) registerTransport(t Transport) {
	m.reg.Gauge(`gateway_upstream_up{`+m.label+`,transport="`+t.String()+`"}`,
		"1 when the last call or probe over the transport was answered by the upstream; 0 after one that could not reach it or (a cheap read, a probe) timed out.",
		func() float64 {
			if m.up[t].Load() {
				return 1
			}
			return 0
		})
	m.counter(t, proto.MethodNamed("eth_blockNumber"), OutcomeOK)
	m.histogram(t, proto.MethodNamed("eth_blockNumber"))
}

func (m *Metrics) counter(t Transport, meth proto.Method, o Outcome) *ShardedCounter {
	p := &m.calls[t][meth][o]
	if c := p.Load(); c != nil {
		return c
	}
	c := m.reg.ShardedCounter(`gateway_upstream_requests_total{`+m.label+`,transport="`+t.String()+
		`",method="`+meth.String()+`",outcome="`+o.String()+`"}`,
		"Calls to the upstream by transport, JSON-RPC method and outcome.")
	p.Store(c)
	return c
}

func (m *Metrics) histogram(t Transport, meth proto.Method) *Histogram {
	p := &m.durations[t][meth]
	if h := p.Load(); h != nil {
		return h
	}
	h := m.reg.ShardedHistogram(`gateway_upstream_request_duration_seconds{`+m.label+`,transport="`+
		t.String()+`",method="`+meth.String()+`"}`, "Upstream call latency by transport and method.", latencyBuckets)
	p.Store(h)
	return h
}

// observe records one upstream call (hint: ptrHint of its pooled request, which
// picks the shards of its counter and duration histogram): its outcome and, for calls that reached the
// upstream, its duration; the transport is up when the call reached the upstream. The
// router's health hears of it as verdictOf judges it (perr: the call's error, cls: its
// method class).
func (m *Metrics) observe(hint uint64, t Transport, meth proto.Method, cls proto.Class, o Outcome, perr *proto.Error, start, end time.Time) {
	m.counter(t, meth, o).Inc(hint)
	switch o {
	case OutcomeOK, OutcomeRPCError:
		d := end.Sub(start)
		m.histogram(t, meth).Update(hint, d)
		// Written only when they change (lastOK: by 10 ms or more): every request
		// writing the same cache lines costs more than the calls it counts, across cores.
		if now := end.UnixNano(); now-m.lastOK[t].Load() >= int64(10*time.Millisecond) {
			m.lastOK[t].Store(now)
		}
		if !m.up[t].Load() && m.up[t].CompareAndSwap(false, true) && m.down[t].Swap(false) && m.onUp != nil {
			m.onUp()
		}
		if m.health != nil {
			m.health.observe(cls, verdictAnswered, d, "", end)
		}
	case OutcomeOverloaded:
		// The gateway's own queue or pool was full: nothing to hold against the upstream.
	default:
		v := verdictOf(o, perr, cls)
		switch {
		case o == OutcomeUnavailable:
			m.up[t].Store(false)
			m.down[t].Store(true)
		case o == OutcomeTimeout && v == verdictFailed:
			// A blackholed upstream takes every call and answers none: not up (the
			// gauge, and the UpstreamDown alert on it), though still reachable, so its
			// next answer is no "back up" (down stays: onUp is for a transport back).
			// A timeout of an eth_call or eth_getLogs is the client's and counts as nothing.
			m.up[t].Store(false)
		}
		if m.health != nil && v == verdictFailed {
			m.health.observe(cls, v, 0, t.String()+" "+o.String(), end)
		}
	}
}

// LastOK returns when the upstream last answered over t (zero if never).
func (m *Metrics) LastOK(t Transport) time.Time {
	if n := m.lastOK[t].Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// Up reports whether the last call over t reached the upstream.
func (m *Metrics) Up(t Transport) bool { return m.up[t].Load() }
