//go:build !race

package gateway

import (
	"testing"

	"github.com/VictoriaMetrics/metrics"

	"github.com/infura-gateway/infura-gateway/gateway/limit"
	"github.com/infura-gateway/infura-gateway/upstream"
)

// An upstream budget's take allocates nothing: with Redis (the leased allowance) and
// without (the replica's share).
func TestBudgetMeterAllocatesNothing(t *testing.T) {
	_, conn, shared := redisLimiter(t)
	local, err := limit.New(limit.Config{}, nil, metrics.NewSet())
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "Redis usable", conn.Up)
	for _, tc := range []struct {
		name string
		srv  *Server
	}{
		{"redis", &Server{redis: conn, limiter: shared, reg: upstream.NewRegistry()}},
		{"local", &Server{limiter: local, reg: upstream.NewRegistry()}},
	} {
		for _, kind := range []upstream.MeterKind{upstream.MeterRequests, upstream.MeterUnits, upstream.MeterDaily} {
			t.Run(tc.name+"/"+kind.String(), func(t *testing.T) {
				m, err := tc.srv.budgetMeters("net", 3)("p", kind, 1e9)
				if err != nil {
					t.Fatal(err)
				}
				defer m.Close()
				if n := testing.AllocsPerRun(1000, func() { m.Take(1) }); n != 0 {
					t.Fatalf("%.2f allocations per take", n)
				}
			})
		}
	}
}
