package gateway

import (
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"

	"github.com/infura-gateway/infura-gateway/upstream"
)

// /socket2socket client metrics (helm/README.md, Metrics: gateway_ws_*), predeclared so every
// family is in /metrics from start.
var (
	wsClients          atomic.Int64
	wsClientMsgsIn     = metrics.NewCounter(`gateway_ws_client_messages_total{direction="in"}`)
	wsClientMsgsOut    = metrics.NewCounter(`gateway_ws_client_messages_total{direction="out"}`)
	wsSlowClientsDrops = metrics.NewCounter("gateway_ws_slow_clients_dropped_total")
)

func init() {
	metrics.NewGauge("gateway_ws_client_connections", func() float64 { return float64(wsClients.Load()) })
	// Subscriptions clients hold; the Mux counts them as they join and leave.
	metrics.NewGauge("gateway_ws_subscriptions", func() float64 { return float64(upstream.Memberships()) })
}
