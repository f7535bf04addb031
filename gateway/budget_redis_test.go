package gateway

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/infura-gateway/infura-gateway/gateway/internal/redistest"
	"github.com/infura-gateway/infura-gateway/gateway/limit"
	"github.com/infura-gateway/infura-gateway/gateway/redisconn"
	"github.com/infura-gateway/infura-gateway/upstream"
)

// budgetConfig is a file with one upstream, the fake, with budget.
func budgetConfig(up *fakeUpstream, budget string) string {
	return fmt.Sprintf(`anonymous: {plan: open}
plans:
  open: {}
shared_budget_replicas: 3
upstreams:
  - name: provider
    http: %s
    budget: %s
`, up.HTTPURL, budget)
}

// TestBudgetAcrossReplicas: three replicas share one Redis and one upstream with a
// budget of 50 requests/s; clients offer 150 requests/s over the three for a fixed
// number of calls. The provider sees at most what the budget's leases allow (the
// slack upstream/README.md documents: burst + rate×T + replicas×lease over T; per
// second, rate + burst + replicas×lease), and every call the budget had no room for
// is the gateway's own 429 / -32005.
func TestBudgetAcrossReplicas(t *testing.T) {
	rs := redistest.Start(t)
	var mu sync.Mutex
	var seen []time.Time // eth_getBalance calls at the provider
	up := startFakeUpstream(t, fakeRespond(func(r fakeRequest) fakeAnswer {
		if r.Method == "eth_getBalance" {
			mu.Lock()
			seen = append(seen, time.Now())
			mu.Unlock()
		}
		return fakeAnswer{}
	}))
	gws := startReplicas(t, 3, up, rs.Addr, budgetConfig(up, "{requests_per_second: 50}"), "-cache=false")

	const (
		rate    = 50
		offered = 150 // per second, all replicas together
		seconds = 10
		calls   = offered * seconds
		workers = 48
		// The documented slack: a burst of 0.2 s of the rate, and a lease of 0.1 s of it
		// outstanding on each replica.
		burst = rate / 5
		lease = rate / 10
		slack = burst + 3*lease
	)
	var ok, refused atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			url := gws[w%len(gws)].URL
			for i := w; i < calls; i += workers {
				if d := time.Until(start.Add(time.Duration(i) * time.Second / offered)); d > 0 {
					time.Sleep(d) // pacing an open-loop load, not synchronisation
				}
				body := fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["0x%040x","latest"]}`, i)
				code, b, err := tryPost(url, body)
				switch {
				case err == nil && code == 200 && strings.Contains(b, `"result"`):
					ok.Add(1)
				case err == nil && code == 429 && strings.Contains(b, `"code":-32005`) &&
					strings.Contains(b, "upstream budgets spent: every upstream that can serve eth_getBalance is at its configured budget"):
					refused.Add(1)
				default:
					t.Errorf("call %d: %d %s %v", i, code, b, err)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	mu.Lock()
	defer mu.Unlock()
	perSecond := map[int]int{}
	for _, at := range seen {
		perSecond[int(at.Sub(start)/time.Second)]++
	}
	t.Logf("%d calls over %v: %d served, %d refused by the budget; the provider saw %d; per second: %v",
		calls, elapsed.Round(time.Millisecond), ok.Load(), refused.Load(), len(seen), perSecond)
	if int(ok.Load()) != len(seen) {
		t.Errorf("%d calls answered, the provider saw %d", ok.Load(), len(seen))
	}
	// A replica that finds Redis unusable (its breaker open on a loaded machine) takes
	// from its own share meanwhile: those takes are counted, and the bound allows them;
	// the per-second bound holds when there were none.
	var fallback float64
	for _, gw := range gws {
		fallback += gw.metric(t, "gateway_budget_fallback_total")
	}
	t.Logf("takes on a replica's share (leases failed): %.0f", fallback)
	if max := burst + rate*elapsed.Seconds() + 3*lease + fallback; float64(len(seen)) > max {
		t.Errorf("the provider saw %d calls in %v, want at most %.0f (budget %d/s, the lease slack and %.0f takes on a share)",
			len(seen), elapsed, max, rate, fallback)
	}
	for s, n := range perSecond {
		if n > rate+slack && fallback == 0 {
			t.Errorf("second %d: the provider saw %d calls, want at most %d + %d", s, n, rate, slack)
		}
	}
	// The budget is used, not starved (the load offered three times it).
	if float64(len(seen)) < 0.7*rate*seconds {
		t.Errorf("the provider saw only %d calls in %v with a budget of %d/s", len(seen), elapsed, rate)
	}
	var gatewayRefused float64
	for _, gw := range gws {
		gatewayRefused += gw.metric(t, "gateway_budget_refused_total")
		if v := gw.metric(t, `gateway_upstream_budget_configured{upstream="provider",budget="requests_per_second"}`); v != rate {
			t.Errorf("configured budget metric %v, want %d", v, rate)
		}
	}
	if int64(gatewayRefused) != refused.Load() {
		t.Errorf("gateway_budget_refused_total %v over the replicas, clients saw %d refusals", gatewayRefused, refused.Load())
	}
}

// While Redis is down, each replica keeps budget ÷ replicas (not the limiter's own
// fallback, the full budget on every replica).
func TestBudgetMeterFallsBackToShare(t *testing.T) {
	rs, conn, lim := redisLimiter(t)
	s := &Server{redis: conn, limiter: lim}
	m, err := s.budgetMeters("net", 3)("p", upstream.MeterRequests, 100)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	_ = m.(*budgetMeter)
	burst := func() (n int) {
		for range 1000 {
			if ok, _ := m.Take(1); !ok {
				return n
			}
			n++
		}
		return n
	}
	waitFor(t, "Redis usable", conn.Up)
	// The fleet's budget: its lease of 0.1 s of 100/s at once (more comes with the
	// next lease, never waited for).
	if n := burst(); n < 10 {
		t.Fatalf("Redis up: %d takes passed at once, want a lease of the fleet's budget (10)", n)
	}
	rs.Kill()
	// A call of the test's own finds the dead connection (the limiter may have nothing
	// to lease now: its last lease can land before the kill), without taking from the
	// meter whose fallback burst is measured next.
	waitFor(t, "Redis seen down", func() bool {
		_ = conn.DoWithin(context.Background(), 100*time.Millisecond, conn.B().Ping().Build())
		return !conn.Up()
	})
	// This replica's share: 100/3 per second, a burst of 0.2 s of it (7); a slow loop
	// may see a token or two more come in.
	if n := burst(); n < 7 || n > 9 {
		t.Fatalf("Redis down: %d takes passed at once, want the replica's share's burst (7)", n)
	}
}

// A take larger than a budget's burst (a batch of 10 on 5 requests/s, burst 1; 38
// eth_call, 988 units, on 330 units/s, burst 330) is admitted once the budget is full
// and charged in full: the take after it is refused (in debt for about 2 s, far more
// than a loaded machine takes between the two), the rate holds. Before, it was
// refused for good (too large for the burst), on Redis's leases and on the share alike.
func TestBudgetMeterTakesLargerThanBurst(t *testing.T) {
	_, conn, shared := redisLimiter(t)
	waitFor(t, "Redis usable", conn.Up)
	for _, mode := range []struct {
		name string
		srv  *Server
	}{
		{"redis", &Server{redis: conn, limiter: shared}},
		{"local", &Server{}},
	} {
		for _, tc := range []struct {
			kind upstream.MeterKind
			rate float64
			take int64
		}{
			{upstream.MeterRequests, 5, 10},
			{upstream.MeterUnits, 330, 38 * 26},
		} {
			t.Run(mode.name+"/"+tc.kind.String(), func(t *testing.T) {
				m, err := mode.srv.budgetMeters("net", 1)("p", tc.kind, tc.rate)
				if err != nil {
					t.Fatal(err)
				}
				defer m.Close()
				// With Redis the take waits for a lease of the full burst (polled: the
				// shard's lease comes on its own goroutine).
				waitFor(t, "the large take admitted", func() bool { ok, _ := m.Take(tc.take); return ok })
				if ok, _ := m.Take(1); ok {
					t.Fatal("a take right after the large one admitted: it was not charged in full")
				}
			})
		}
	}
}

// redisLimiter starts a real Redis and a limiter leasing from it, as a replica has:
// closed when the test ends.
func redisLimiter(t *testing.T) (*redistest.Server, *redisconn.Conn, *limit.Limiter) {
	t.Helper()
	rs := redistest.Start(t)
	conn, err := redisconn.New(redisconn.Config{Addr: rs.Addr}, metrics.NewSet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	lim, err := limit.New(limit.Config{}, conn, metrics.NewSet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lim.Close)
	return rs, conn, lim
}
