package upstream

import (
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"
)

// Websocket upstream metrics (helm/README.md, Metrics, "Upstream side"). Gauges read package
// atomics so every Mux (the shared one, and per-client ones under -ws-per-client) adds
// to the same series, and every family exists from start.
var (
	wsConnections   atomic.Int64
	pendingRequests atomic.Int64
	queueDepth      atomic.Int64
	upstreamSubs    atomic.Int64
	memberships     atomic.Int64 // subscriptions held by sinks (clients), across all Muxes

	reconnects      = metrics.NewCounter("gateway_upstream_ws_reconnects_total")
	resubscribes    = metrics.NewCounter("gateway_upstream_ws_resubscribes_total")
	wsMessagesIn    = metrics.NewCounter(`gateway_upstream_ws_messages_total{direction="in"}`)
	wsMessagesOut   = metrics.NewCounter(`gateway_upstream_ws_messages_total{direction="out"}`)
	wsWrites        = metrics.NewCounter("gateway_upstream_ws_writes_total")
	wsFramesWritten = metrics.NewCounter("gateway_upstream_ws_frames_written_total")
	wsReads         = metrics.NewCounter("gateway_upstream_ws_reads_total")

	// reconnectGap is how long subscribers received nothing: from losing the socket to
	// the upstream confirming the resubscription. 10 ms to ~80 s.
	reconnectGap = metrics.NewPrometheusHistogramExt("gateway_upstream_ws_reconnect_gap_seconds",
		metrics.ExponentialBuckets(0.01, 2, 14))
)

func init() {
	gauge := func(name string, v *atomic.Int64) {
		metrics.NewGauge(name, func() float64 { return float64(v.Load()) })
	}
	gauge("gateway_upstream_ws_connections", &wsConnections)
	gauge("gateway_upstream_ws_pending_requests", &pendingRequests)
	gauge("gateway_upstream_ws_queue_depth", &queueDepth)
	gauge("gateway_upstream_ws_subscriptions", &upstreamSubs)
}

// connUp records a socket coming up.
func connUp(m *Mux) {
	wsConnections.Add(1)
	SetUp(TransportWS, true)
	m.once.Do(func() { close(m.ready) })
}

// connDown records a socket going down; the transport is down when none is left.
func connDown() {
	if wsConnections.Add(-1) == 0 {
		SetUp(TransportWS, false)
	}
}

// Memberships returns how many subscriptions sinks (clients, in-process subscribers)
// hold across every Mux; several share one upstream subscription when their params match.
func Memberships() int64 { return memberships.Load() }
