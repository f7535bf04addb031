//go:build !race

package upstream

import (
	"testing"
)

// The budget adds no allocation to a call: the check in selection, the take, the
// cost lookup (a method outside the gateway's table too), the pacing and the metrics.
// (Measured on the router's own work, as BenchmarkRouterDecisions: an in-process
// server's allocations would count too.)
func TestBudgetTakeAllocatesNothing(t *testing.T) {
	r := testRouter(t, Spec{Name: "a", HTTPURL: "http://127.0.0.1:1",
		Budget: BudgetSpec{RequestsPerSecond: 1e9, UnitsPerSecond: 1e9, DailyUnits: 1 << 38, Costs: "alchemy"}},
		Spec{Name: "b", HTTPURL: "http://127.0.0.1:1", Budget: BudgetSpec{RequestsPerSecond: 1e9}})
	for _, u := range r.Upstreams() {
		r.observeHead(u, header(0x10))
		u.budget.cur.Load().tune.cut(r.clock()) // paced: the auto-tuned rate below the configured one
	}
	for _, name := range []string{"eth_call", "trace_call"} {
		req := request(name, `[]`)
		do := func() {
			n := r.needOf(req)
			if u, _ := r.pickBudgeted(req, n, TransportHTTP, nil); u == nil {
				t.Fatal("no upstream picked")
			}
		}
		for range 100 {
			do()
		}
		if allocs := testing.AllocsPerRun(1000, do); allocs > 0 {
			t.Fatalf("%s with a budget: %.2f allocations per pick and take, want 0", name, allocs)
		}
	}
}
