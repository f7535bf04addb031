package upstream

import (
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
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

// Per-(transport, method, outcome) series are created on first use and then kept in
// these arrays, so a call costs two atomic loads, never a map lookup or a string build.
var (
	callCounters   [numTransports][NumMethods][numOutcomes]atomic.Pointer[metrics.Counter]
	callHistograms [numTransports][NumMethods]atomic.Pointer[metrics.PrometheusHistogram]
	upState        [numTransports]atomic.Bool
)

// Latency buckets from 0.5 ms to ~33 s: loopback nodes answer in well under a
// millisecond, remote providers in tens of milliseconds, eth_getLogs can take seconds.
var latencyBuckets = metrics.ExponentialBuckets(0.0005, 2, 17)

func init() {
	for t := range numTransports {
		tt := t
		metrics.NewGauge(`gateway_upstream_up{transport="`+tt.String()+`"}`, func() float64 {
			if upState[tt].Load() {
				return 1
			}
			return 0
		})
		// One series per family at start, so dashboards and alerts find them.
		counter(tt, MethodNamed("eth_blockNumber"), OutcomeOK)
		histogram(tt, MethodNamed("eth_blockNumber"))
	}
}

func counter(t Transport, m Method, o Outcome) *metrics.Counter {
	p := &callCounters[t][m][o]
	if c := p.Load(); c != nil {
		return c
	}
	c := metrics.GetOrCreateCounter(`gateway_upstream_requests_total{transport="` + t.String() +
		`",method="` + m.String() + `",outcome="` + o.String() + `"}`)
	p.Store(c)
	return c
}

func histogram(t Transport, m Method) *metrics.PrometheusHistogram {
	p := &callHistograms[t][m]
	if h := p.Load(); h != nil {
		return h
	}
	h := metrics.GetOrCreatePrometheusHistogramExt(`gateway_upstream_request_duration_seconds{transport="`+
		t.String()+`",method="`+m.String()+`"}`, latencyBuckets)
	p.Store(h)
	return h
}

// ObserveCall records one upstream call: its outcome and, for calls that reached the
// upstream, its duration.
func ObserveCall(t Transport, m Method, o Outcome, start time.Time) {
	observe(t, m, o, time.Since(start))
}

func observe(t Transport, m Method, o Outcome, d time.Duration) {
	counter(t, m, o).Inc()
	if o == OutcomeOK || o == OutcomeRPCError {
		histogram(t, m).Update(d.Seconds())
	}
}

// SetUp records whether the last call or probe over transport t reached the upstream.
func SetUp(t Transport, up bool) { upState[t].Store(up) }

// IsUp reports the last state recorded by SetUp.
func IsUp(t Transport) bool { return upState[t].Load() }
