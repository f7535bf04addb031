package gateway

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/internal/cpuhog"
	"github.com/infura-gateway/infura-gateway/gateway/internal/redistest"
)

// TestLimitAccuracyUnderCPUSaturation: three gateway replicas share one Redis; one key
// limited to 100 requests/s (burst 100); clients offer 200 requests/s spread over the
// replicas while a CPU hog saturates the process the replicas run in. Before the fix the
// limiter's lease calls, answered late, counted as Redis failures: fail closed, the cluster
// admitted half the plan (issue 22: 48 req/s). It must admit the plan within 10 % over a
// 10 s window after a 2 s warm-up that empties the burst (limit/saturation_test.go holds
// the limiter-level cases).
//
// Every request has its slot in a fixed schedule; a worker the hog delays sends its late
// slots at once, so the whole load is offered, and a request counts in the window it was
// sent in (the plan is per second of real time). The load must reach 1.5× the plan in the
// window, or the figure means nothing.
func TestLimitAccuracyUnderCPUSaturation(t *testing.T) {
	if testing.Short() {
		t.Skip("12 s of saturated CPU")
	}
	if raceDetector {
		// The detector's slowdown on top of the hog leaves 240 HTTP workers unable to
		// offer the load at all. `./task test` runs this test without -race
		// (test:saturation); limit's TestRedisAccuracyUnderCPUSaturation runs with it.
		t.Skip("run without -race (./task test:saturation)")
	}
	rs := redistest.Start(t)
	up := startFakeUpstream(t)
	gws := startReplicas(t, 3, up, rs.Addr, accessConfig("{requests_per_second: 100, burst: 100}"),
		"-cache=false", "-limits-fail-closed")
	const (
		offered = 200 // requests per second, all replicas together
		workers = 240 // each waits its answer: enough for the load while the hog slows them
		warm    = 2 * time.Second
		window  = 10 * time.Second
	)
	cpuhog.Start(t)
	var sent, accepted, refused, failed atomic.Int64
	var errOnce sync.Once
	start := time.Now()
	pacedLoad(start, workers, offered, warm+window, func(w int) {
		url := gws[w%len(gws)].URL + "/v3/" + keyAlice
		sentAt := time.Since(start)
		code, body, err := tryPost(url, blockNumberCall)
		if sentAt < warm || sentAt >= warm+window {
			return
		}
		sent.Add(1)
		switch {
		case err == nil && code == 200:
			accepted.Add(1)
		case err == nil && code == 429:
			refused.Add(1)
		default:
			failed.Add(1)
			errOnce.Do(func() { t.Errorf("request: %d %s %v", code, body, err) })
		}
	})
	var leaseErrs, opened, redisErrs, downs float64
	for _, gw := range gws {
		leaseErrs += gw.metric(t, "gateway_limit_lease_errors_total")
		opened += gw.metric(t, `gateway_redis_breaker_opened_total{client="redis"}`)
		redisErrs += gw.metric(t, `gateway_redis_errors_total{client="redis"}`)
		downs += gw.metric(t, `gateway_limit_refused_total{kind="rate",reason="redis_down"}`)
	}
	t.Logf("breaker opened %.0f, redis errors %.0f, refused as redis down %.0f", opened, redisErrs, downs)
	plan := 100 * window.Seconds()
	got := float64(accepted.Load())
	t.Logf("sent %d in %v (after the warm-up), accepted %.0f (plan %.0f: %.1f%%), refused %d, failed %d; lease errors %.0f; took %v",
		sent.Load(), window, got, plan, 100*got/plan, refused.Load(), failed.Load(), leaseErrs, time.Since(start))
	if float64(sent.Load()) < 1.5*plan {
		t.Fatalf("only %d sent in %v: the load did not reach 1.5× the plan", sent.Load(), window)
	}
	if got < 0.9*plan || got > 1.1*plan {
		t.Errorf("the cluster accepted %.0f in %v with the CPU saturated, want the plan %.0f ± 10%%", got, window, plan)
	}
}
