package upstream

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/internal/syncbuf"
	"github.com/infura-gateway/infura-gateway/proto"
)

// Router unit tests: routing decisions on upstreams whose health the test sets. The
// gateway's router_test.go drives the router through the gateway with fake upstreams;
// gateway/failover does it against real nodes behind fault-injecting proxies.

func testHealthConfig() HealthConfig {
	return HealthConfig{Window: 10 * time.Second, MinRequests: 10, MaxErrorRate: 0.5, MaxFailures: 3, MaxLag: 5,
		SlowFactor: 5, SlowMin: 300 * time.Millisecond, BanMin: time.Second, BanMax: 4 * time.Second, Readmit: 2}
}

// testRouter builds a router over specs without starting it: no head following, no
// reviews; the test moves heads and states itself.
func testRouter(t testing.TB, specs ...Spec) *Router {
	t.Helper()
	return testRouterWith(t, nil, specs...)
}

// testRouterWith is testRouter with its configuration changed by mod first.
func testRouterWith(t testing.TB, mod func(*RouterConfig), specs ...Spec) *Router {
	t.Helper()
	cfg := RouterConfig{
		Health: testHealthConfig(),
		Pool: PoolConfig{MaxConns: 8, MaxConnWaitTimeout: 5 * time.Second, DialTimeout: time.Second,
			MaxIdleConnDuration: time.Minute, MaxResponseBodySize: 1 << 20},
		Retries: 2, ProbeInterval: time.Second, HeadPoll: time.Second, ReviewInterval: 100 * time.Millisecond,
		Registry: NewRegistry(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if mod != nil {
		mod(&cfg)
	}
	r, err := NewRouter(cfg, specs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, u := range r.Upstreams() {
			u.pool.Close()
		}
	})
	return r
}

func byName(r *Router, name string) *Upstream {
	for _, u := range r.Upstreams() {
		if u.Name() == name {
			return u
		}
	}
	return nil
}

func header(n uint64) []byte {
	return []byte(`{"number":"0x` + strconv.FormatUint(n, 16) + `","hash":"0x` + strconv.FormatUint(n, 16) + `"}`)
}

// The served head moves with the heads of upstreams that may serve calls at it: a
// fallback's head counts only while no primary is healthy, a banned upstream's never.
// Otherwise a fallback (or a banned primary) whose notification of a block arrives a
// moment before the healthy primaries' would set a head only it has, and calls that
// must be at the served head would go to it.
func TestServedHeadFollowsUsableUpstreams(t *testing.T) {
	r := testRouter(t, Spec{Name: "a", HTTPURL: "http://127.0.0.1:1"}, Spec{Name: "b", HTTPURL: "http://127.0.0.1:1"},
		Spec{Name: "f", HTTPURL: "http://127.0.0.1:1", Tier: TierFallback})
	a, b, f := byName(r, "a"), byName(r, "b"), byName(r, "f")
	r.observeHead(a, header(10))
	r.observeHead(b, header(10))
	r.observeHead(f, header(11))
	if got := r.ServedHead(); got != 10 {
		t.Fatalf("a fallback's head moved the served head to %d while primaries are healthy", got)
	}
	if f.health.Head() != 11 {
		t.Fatalf("the fallback's own head is %d, want 11", f.health.Head())
	}
	getBalance := request("eth_getBalance", `["0x01","latest"]`)
	for range 50 {
		if u := r.pick(getBalance, r.needOf(getBalance), TransportHTTP, nil); u == f {
			t.Fatal("a call at the served head went to the fallback while the primaries have it")
		}
	}
	a.health.Ban("test", time.Now())
	r.observeHead(a, header(12))
	if got := r.ServedHead(); got != 10 {
		t.Fatalf("a banned upstream's head moved the served head to %d", got)
	}
	b.health.Ban("test", time.Now())
	r.observeHead(f, header(12))
	if got := r.ServedHead(); got != 12 {
		t.Fatalf("with every primary banned, the fallback's head should move the served head: %d", got)
	}
}

// A banned upstream with no other beside it is the only word on the chain: its heads
// move the served head, up and (the node restarted further back) down. Ignored, they
// left the served head, and the cache keyed on it, behind the heads its subscribers
// were already getting until the upstream was readmitted.
func TestServedHeadFollowsTheOnlyUpstreamWhileBanned(t *testing.T) {
	r := testRouter(t, Spec{Name: "a", HTTPURL: "http://127.0.0.1:1"})
	a := byName(r, "a")
	r.observeHead(a, header(10))
	a.health.Ban("test", time.Now())
	r.observeHead(a, header(11))
	if got := r.ServedHead(); got != 11 {
		t.Fatalf("the only upstream, banned, reported 11: served head %d", got)
	}
	r.observeHead(a, header(3))
	if got := r.ServedHead(); got != 3 {
		t.Fatalf("the only upstream, banned, went back to 3: served head %d", got)
	}
}

// A fallback takes a call only when no primary can: not even a healthy one a block
// behind the served head, as when the primary that reported the block fails the call
// and the other's notification of it is not in yet. A lagging primary cannot.
func TestFallbackOnlyWhenNoPrimaryCan(t *testing.T) {
	r := testRouter(t, Spec{Name: "a", HTTPURL: "http://127.0.0.1:1"}, Spec{Name: "b", HTTPURL: "http://127.0.0.1:1"},
		Spec{Name: "f", HTTPURL: "http://127.0.0.1:1", Tier: TierFallback})
	a, b, f := byName(r, "a"), byName(r, "b"), byName(r, "f")
	r.observeHead(b, header(9))
	r.observeHead(f, header(10))
	r.observeHead(a, header(10)) // a has block 10; b's notification of it is not in yet
	getBalance := request("eth_getBalance", `["0x01","latest"]`)
	block10 := request("eth_getBlockByNumber", `["0xa",false]`)
	for _, req := range []*proto.Request{getBalance, block10} {
		if u := r.pick(req, r.needOf(req), TransportHTTP, []*Upstream{a}); u != b {
			t.Fatalf("%s, retried after a failed: went to %s, not to the healthy primary b", req.Name, u.Name())
		}
	}
	r.cfg.Health.MaxLag = 0
	r.review(time.Now()) // b, a block behind the best, is lagging now
	if b.health.State() != StateLagging {
		t.Fatalf("b is %v", b.health.State())
	}
	if u := r.pick(getBalance, r.needOf(getBalance), TransportHTTP, []*Upstream{a}); u != f {
		t.Fatalf("with the only other primary lagging, the retry went to %s, not the fallback", u.Name())
	}
}

// The two upstreams compared are different ones: one holding calls that do not come
// back gets no more once it holds two more than the other; alike upstreams share the
// calls; one that looks slower still gets a few, so its latency stays current.
func TestPickAvoidsAnUpstreamThatHoldsItsCalls(t *testing.T) {
	r := testRouter(t, Spec{Name: "a", HTTPURL: "http://127.0.0.1:1"}, Spec{Name: "b", HTTPURL: "http://127.0.0.1:1"})
	a, b := byName(r, "a"), byName(r, "b")
	for _, u := range []*Upstream{a, b} {
		u.health.observe(proto.ClassCheap, verdictAnswered, 2*time.Millisecond, "", time.Now())
	}
	req := request("eth_chainId", "[]")
	n := r.needOf(req)
	picks := func() map[*Upstream]int {
		counts := map[*Upstream]int{}
		for range 10000 {
			counts[r.pick(req, n, TransportHTTP, nil)]++
		}
		return counts
	}
	if c := picks(); c[a] < 4000 || c[b] < 4000 {
		t.Fatalf("alike upstreams: a %d, b %d of 10000", c[a], c[b])
	}
	a.inFlight.Store(2) // two calls waiting on a blackhole
	if c := picks(); c[a] > 0 {
		t.Fatalf("picked the upstream holding two calls over an idle one %d times", c[a])
	}
	a.inFlight.Store(0)
	a.health.observe(proto.ClassCheap, verdictAnswered, time.Second, "", time.Now()) // a cold first answer: mean ~100ms
	if c := picks(); c[a] == 0 || c[a] > 500 {
		t.Fatalf("an upstream 50 times slower than the other got %d of 10000 calls: want a few", c[a])
	}
}

// Only state below the archive depth needs an archive upstream: an old block is served
// by any full node. Without an archive upstream, old state still goes to one (it answers
// that it lacks it) rather than the gateway refusing with "no upstream available".
func TestArchiveOnlyForOldState(t *testing.T) {
	r := testRouter(t, Spec{Name: "full", HTTPURL: "http://127.0.0.1:1"})
	r.cfg.ArchiveDepth = 128
	r.observeHead(byName(r, "full"), header(1000))
	oldBlock := request("eth_getBlockByNumber", `["0x1",false]`)
	oldState := request("eth_getBalance", `["0x01","0x1"]`)
	recentState := request("eth_getBalance", `["0x01","0x3e0"]`)
	if n := r.needOf(oldBlock); n.archive {
		t.Fatal("an old block needs an archive upstream")
	}
	if n := r.needOf(recentState); n.archive {
		t.Fatal("state 8 blocks below the head needs an archive upstream")
	}
	if n := r.needOf(oldState); !n.archive {
		t.Fatal("state 999 blocks below the head does not need an archive upstream")
	}
	for _, req := range []*proto.Request{oldBlock, oldState} {
		if u := r.pick(req, r.needOf(req), TransportHTTP, nil); u == nil {
			t.Fatalf("%s: no upstream picked", req.Name)
		}
	}
	r = testRouter(t, Spec{Name: "full", HTTPURL: "http://127.0.0.1:1"}, Spec{Name: "archive", HTTPURL: "http://127.0.0.1:1", Archive: true})
	r.cfg.ArchiveDepth = 128
	for _, u := range r.Upstreams() {
		r.observeHead(u, header(1000))
	}
	for range 50 {
		if u := r.pick(oldState, r.needOf(oldState), TransportHTTP, nil); u.Name() != "archive" {
			t.Fatalf("old state went to %s, not the archive upstream", u.Name())
		}
	}
}

// A read's attempt on an upstream that never answers ends early enough for a retry on
// another within the call's deadline; a write gets the whole deadline and is never
// sent to a second upstream.
func TestReadRetriedBeforeTheDeadline(t *testing.T) {
	hole := blackhole(t)
	var served atomic.Int64
	good := jsonRPCServer(t, func() { served.Add(1) })
	// The blackhole draws the first choice nearly always (weight), and its score is
	// no worse: nearly every call is tried there first. Nearly: the choice is by chance
	// (router_pick.go), and a read that went to the good upstream first (about 1 in 100
	// when its measured latency is low) left the blackhole one timeout short of its ban
	// after three reads (a CI flake). So reads go on until it is banned, 10 at most.
	r := testRouter(t, Spec{Name: "hole", HTTPURL: hole, Weight: 1000}, Spec{Name: "good", HTTPURL: good})
	reads := 0
	for i := 0; i < 10 && byName(r, "hole").health.State() != StateBanned; i++ {
		reads++
		start := time.Now()
		deadline := start.Add(time.Second)
		ans, err := r.call(nil, request("eth_getBalance", `["0x01","latest"]`), []byte("7"), deadline, TransportHTTP)
		if err != nil || string(ans) != `{"jsonrpc":"2.0","id":7,"result":"0x1"}` {
			t.Fatalf("read %d: %s %v after %v", i, ans, err, time.Since(start))
		}
		if took := time.Since(start); took >= time.Second {
			t.Fatalf("read %d answered after its deadline: %v", i, took)
		}
	}
	if served.Load() != int64(reads) {
		t.Fatalf("the good upstream served %d of %d reads", served.Load(), reads)
	}
	if st := byName(r, "hole").health.State(); st != StateBanned {
		t.Fatalf("%d reads tried there first (weight 1000 of 1001): the blackhole is %v, want banned", reads, st)
	}
	// The good upstream a fallback: the write goes to the blackhole first whatever the
	// heads say (a primary whose head is not known yet still beats a fallback), and must
	// not reach the good one after it timed out there.
	r = testRouter(t, Spec{Name: "hole", HTTPURL: hole, Weight: 1000}, Spec{Name: "good", HTTPURL: good, Tier: TierFallback})
	start := time.Now()
	_, err := r.call(nil, request("eth_sendRawTransaction", `["0x02"]`), []byte("8"), start.Add(time.Second), TransportHTTP)
	if err == nil || served.Load() != int64(reads) {
		t.Fatalf("a write through the blackhole: %v, good upstream saw %d calls", err, served.Load())
	}
	if took := time.Since(start); took < 900*time.Millisecond {
		t.Fatalf("the write was given up after %v, before its deadline", took)
	}
	// With one upstream there is nowhere to retry: the attempt keeps the whole deadline.
	single := testRouter(t, Spec{Name: "only", HTTPURL: hole})
	d := time.Now().Add(10 * time.Second)
	if got := single.attemptDeadline(d, true); !got.Equal(d) {
		t.Fatalf("single upstream: attempt deadline %v before the call's", d.Sub(got))
	}
}

// A readmitted upstream starts from the latency its probes showed, not from the one
// that got it banned (seconds, for an upstream banned as slow): routing picks by it.
func TestReadmissionResetsLatency(t *testing.T) {
	h := newHealth(&HealthConfig{Window: 10 * time.Second, MinRequests: 10, MaxErrorRate: 0.5, MaxFailures: 3,
		SlowFactor: 5, SlowMin: time.Second, BanMin: time.Millisecond, BanMax: time.Millisecond, Readmit: 2})
	now := time.Now()
	for range 20 {
		h.observe(proto.ClassCheap, verdictAnswered, 2*time.Second, "", now)
	}
	h.Ban("slow", now)
	h.probed(true, 3*time.Millisecond, "", now)
	h.probed(true, 2*time.Millisecond, "", now)
	if h.State() != StateHealthy {
		t.Fatalf("state %v after two good probes", h.State())
	}
	if got := h.Latency(); got != 2*time.Millisecond {
		t.Fatalf("latency after readmission %v, want the last probe's 2ms", got)
	}
}

// Hedges wait for the hedge quantile of the fastest upstream: an upstream slow all the
// time has a high quantile of its own, and its calls would never be hedged in time.
func TestHedgeWaitsForTheFastestQuantile(t *testing.T) {
	r := testRouter(t, Spec{Name: "slow", HTTPURL: "http://127.0.0.1:1"}, Spec{Name: "fast", HTTPURL: "http://127.0.0.1:1"})
	r.cfg.HedgeQuantile = 0.9
	r.cfg.Health.SlowFactor = 1e6 // not banned as slow: hedging is what is tested
	now := time.Now()
	for range 50 {
		byName(r, "slow").health.observe(proto.ClassCheap, verdictAnswered, 2*time.Second, "", now)
		byName(r, "fast").health.observe(proto.ClassCheap, verdictAnswered, 3*time.Millisecond, "", now)
	}
	r.review(now)
	if got := time.Duration(r.hedgeWait[proto.ClassCheap].Load()); got != 4*time.Millisecond {
		t.Fatalf("hedge wait %v, want the fast upstream's p90 bucket, 4ms", got)
	}
}

// blackhole accepts connections and never answers.
func blackhole(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
	})
	return "http://" + ln.Addr().String()
}

// jsonRPCServer answers every call with result "0x1" and calls seen for each.
func jsonRPCServer(t *testing.T, seen func()) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		seen()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":"0x1"}`)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// A lagging upstream gets no call that needs the served head, and takes its share again
// once it has caught up: readmission from lagging needs no probe and no restart.
func TestLaggingUpstreamReadmittedWhenItCatchesUp(t *testing.T) {
	r := testRouter(t, Spec{Name: "a", HTTPURL: "http://127.0.0.1:1"}, Spec{Name: "b", HTTPURL: "http://127.0.0.1:1"})
	r.cfg.Health.MaxLag = 2
	a, b := byName(r, "a"), byName(r, "b")
	getBalance := request("eth_getBalance", `["0x01","latest"]`)
	picks := func() map[*Upstream]int {
		n := map[*Upstream]int{}
		for range 200 {
			n[r.pick(getBalance, r.needOf(getBalance), TransportHTTP, nil)]++
		}
		return n
	}
	r.observeHead(a, header(20))
	r.observeHead(b, header(10))
	r.review(time.Now())
	if b.health.State() != StateLagging {
		t.Fatalf("b, 10 blocks behind with max lag 2, is %v", b.health.State())
	}
	if n := picks(); n[b] != 0 || n[a] != 200 {
		t.Fatalf("calls at the served head while b lags: a %d, b %d", n[a], n[b])
	}
	r.observeHead(b, header(19)) // within the lag bound
	r.review(time.Now())
	if b.health.State() != StateHealthy {
		t.Fatalf("b, one block behind, is %v", b.health.State())
	}
	r.observeHead(b, header(20))
	if n := picks(); n[b] == 0 || n[a] == 0 {
		t.Fatalf("after b caught up the calls went a %d, b %d: want both", n[a], n[b])
	}
}

// A ban by failed calls happens on the call's path, away from the review that reports
// state changes: the next review logs it and counts it in gateway_router_bans_total,
// once. Before, only the review's own transitions were reported: an upstream banned
// for refusing connections (a node killed) showed banned in /status and
// gateway_upstream_bans, while the log said nothing and the router's counter stayed 0.
func TestBanByFailedCallsReported(t *testing.T) {
	var logs syncbuf.Buffer
	r := testRouterWith(t, func(c *RouterConfig) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	}, Spec{Name: "down", HTTPURL: "http://127.0.0.1:1"})
	down := byName(r, "down")
	for i := 0; i < 10 && down.health.State() != StateBanned; i++ {
		if _, err := r.call(nil, request("eth_blockNumber", `[]`), []byte("1"), time.Now().Add(time.Second), TransportHTTP); err == nil {
			t.Fatal("a call to a closed port answered")
		}
	}
	if st := down.health.State(); st != StateBanned {
		t.Fatalf("state %v after failed calls, want banned", st)
	}
	for range 2 {
		r.review(time.Now())
	}
	if n := r.m.failovers.Get(); n != 1 {
		t.Fatalf("gateway_router_bans_total %d after one ban, want 1", n)
	}
	if got := strings.Count(logs.String(), "msg=\"upstream state changed\" upstream=down from=healthy to=banned"); got != 1 {
		t.Fatalf("the ban logged %d times, want once; log:\n%s", got, logs.String())
	}
}
