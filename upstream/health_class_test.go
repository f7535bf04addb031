package upstream

import (
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
)

// What counts against an upstream (issue 19, F1): only signals that it is broken.
func TestVerdictOf(t *testing.T) {
	cases := []struct {
		name string
		o    Outcome
		perr *proto.Error
		cls  proto.Class
		want verdict
	}{
		{"answer", OutcomeOK, nil, proto.ClassCheap, verdictAnswered},
		{"execution reverted", OutcomeRPCError, nil, proto.ClassCall, verdictAnswered},
		{"answer over the byte budget", OutcomeError, proto.ErrResponseTooLarge, proto.ClassLogs, verdictNeutral},
		{"request over the node's limit", OutcomeError, proto.ErrBodyTooLarge, proto.ClassCall, verdictNeutral},
		{"eth_call past the deadline", OutcomeTimeout, proto.ErrTimeout, proto.ClassCall, verdictNeutral},
		{"eth_getLogs past the deadline", OutcomeTimeout, proto.ErrTimeout, proto.ClassLogs, verdictNeutral},
		{"gateway queue full", OutcomeOverloaded, proto.ErrOverloaded, proto.ClassCheap, verdictNeutral},
		{"eth_blockNumber past the deadline", OutcomeTimeout, proto.ErrTimeout, proto.ClassCheap, verdictFailed},
		{"send past the deadline", OutcomeTimeout, proto.ErrTimeout, proto.ClassSend, verdictFailed},
		{"refused", OutcomeUnavailable, proto.ErrUnreachable, proto.ClassCall, verdictFailed},
		{"reset or 5xx", OutcomeUnavailable, proto.ErrUnavailable, proto.ClassLogs, verdictFailed},
		{"malformed or wrong id", OutcomeError, proto.ErrBadUpstream, proto.ClassCall, verdictFailed},
		{"rate limited", OutcomeError, proto.ErrRateLimited, proto.ClassCheap, verdictFailed},
	}
	for _, c := range cases {
		if got := verdictOf(c.o, c.perr, c.cls); got != c.want {
			t.Errorf("%s: verdict %d, want %d", c.name, got, c.want)
		}
	}
}

// Latency is judged per class against the same class on the best upstream: slow
// eth_calls on one upstream never ban it; slow cheap reads still do.
func TestSlowJudgedPerClass(t *testing.T) {
	r := testRouter(t, Spec{Name: "a", HTTPURL: "http://127.0.0.1:1"}, Spec{Name: "b", HTTPURL: "http://127.0.0.1:1"})
	a, b := byName(r, "a"), byName(r, "b")
	now := time.Now()
	for range 50 {
		a.health.observe(proto.ClassCheap, verdictAnswered, 2*time.Millisecond, "", now)
		b.health.observe(proto.ClassCheap, verdictAnswered, 2*time.Millisecond, "", now)
		b.health.observe(proto.ClassCall, verdictAnswered, 3*time.Millisecond, "", now)
		a.health.observe(proto.ClassCall, verdictAnswered, 15*time.Second, "", now)
		a.health.observe(proto.ClassLogs, verdictAnswered, 20*time.Second, "", now)
	}
	r.review(now)
	if a.health.State() != StateHealthy {
		t.Fatalf("slow eth_calls and eth_getLogs made a %v (%s)", a.health.State(), a.health.status(0, now).Reason)
	}
	if got := a.health.Latency(); got != 2*time.Millisecond {
		t.Fatalf("a's baseline latency %v: the slow classes leaked into it", got)
	}
	// Routing among the two by a cheap call's latency: a is as good as b.
	if sa, sb := score(a, proto.ClassCheap), score(b, proto.ClassCheap); sa != sb {
		t.Fatalf("cheap-call scores a %v, b %v: want equal", sa, sb)
	}
	for range 50 {
		a.health.observe(proto.ClassCheap, verdictAnswered, 2*time.Second, "", now)
	}
	r.review(now)
	if a.health.State() != StateBanned {
		t.Fatalf("a slow on cheap reads (p90 2s against 2ms) is %v", a.health.State())
	}
}

// Calls that say nothing about the upstream never ban it, however many.
func TestNeutralCallsNeverBan(t *testing.T) {
	h := newHealth(&HealthConfig{Window: 10 * time.Second, MinRequests: 4, MaxErrorRate: 0.1, MaxFailures: 2,
		SlowFactor: 5, SlowMin: time.Millisecond, BanMin: time.Second, BanMax: time.Second, Readmit: 1})
	now := time.Now()
	for range 100 {
		h.observe(proto.ClassLogs, verdictOf(OutcomeError, proto.ErrResponseTooLarge, proto.ClassLogs), 0, "", now)
		h.observe(proto.ClassCall, verdictOf(OutcomeTimeout, proto.ErrTimeout, proto.ClassCall), 0, "", now)
	}
	if st := h.status(0, now); h.State() != StateHealthy || st.Requests != 0 || st.Consecutive != 0 {
		t.Fatalf("after neutral calls: %+v", st)
	}
	h.observe(proto.ClassCheap, verdictOf(OutcomeTimeout, proto.ErrTimeout, proto.ClassCheap), 0, "", now)
	h.observe(proto.ClassCheap, verdictOf(OutcomeTimeout, proto.ErrTimeout, proto.ClassCheap), 0, "", now)
	if h.State() != StateBanned {
		t.Fatal("two cheap calls timed out in a row did not ban")
	}
}

// An HTTP 5xx whose body is a JSON-RPC error is the node's answer to the call; one
// without is the upstream failing. The client sees an error either way.
func TestFiveHundredWithJSONRPCBodyIsAnAnswer(t *testing.T) {
	cases := []struct {
		name     string
		status   int
		body     string
		failures int
	}{
		{"5xx with a JSON-RPC error", 500, `{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"execution reverted"}}`, 0},
		{"5xx without a body", 502, "bad gateway", 3},
		{"5xx with an error for another id", 500, `{"jsonrpc":"2.0","id":2,"error":{"code":-32000,"message":"x"}}`, 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.ReadAll(r.Body)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(c.status)
				_, _ = io.WriteString(w, c.body)
			})}
			go func() { _ = srv.Serve(ln) }()
			t.Cleanup(func() { _ = srv.Close() })
			cfg := testHealthConfig()
			cfg.MaxFailures = 100
			met := NewMetrics(NewRegistry(), "x")
			met.health = newHealth(&cfg)
			p, err := NewPool(PoolConfig{URL: "http://" + ln.Addr().String(), MaxConns: 2, MaxConnWaitTimeout: time.Second,
				DialTimeout: time.Second, MaxIdleConnDuration: time.Minute, MaxResponseBodySize: 1 << 20, Metrics: met})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			req := request("eth_call", `[{"to":"0x01"},"latest"]`)
			for range 3 {
				if _, err := p.Call(nil, req, []byte("1"), time.Now().Add(5*time.Second)); err == nil {
					t.Fatal("a 5xx answered without an error")
				}
			}
			if got := met.health.status(0, time.Now()).Consecutive; got != c.failures {
				t.Fatalf("%d failures counted, want %d", got, c.failures)
			}
		})
	}
}

// The up gauge goes to 0 when a call cannot reach the upstream, and when a judged read
// (a cheap one, a probe) times out: a blackholed upstream takes every call and answers
// none, and before, the gauge stayed 1 while the router banned it (the UpstreamDown
// alert reads it). A timeout of an eth_call is the client's and leaves it up. An answer
// after a timeout sets it back without a "back up" (onUp is for a transport that was
// unreachable).
func TestUpGaugeFollowsTimeouts(t *testing.T) {
	call, cheap := proto.MethodNamed("eth_call"), proto.MethodNamed("eth_blockNumber")
	for _, tc := range []struct {
		name   string
		meth   proto.Method
		cls    proto.Class
		o      Outcome
		wantUp bool
		onUp   int // calls of onUp once an answer follows
	}{
		{"cheap read timed out", cheap, proto.ClassCheap, OutcomeTimeout, false, 0},
		{"eth_call timed out", call, proto.ClassCall, OutcomeTimeout, true, 0},
		{"unreachable", cheap, proto.ClassCheap, OutcomeUnavailable, false, 1},
		{"answered", cheap, proto.ClassCheap, OutcomeOK, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMetrics(NewRegistry(), "x")
			ups := 0
			m.onUp = func() { ups++ }
			now := time.Now()
			m.observe(0, TransportHTTP, cheap, proto.ClassCheap, OutcomeOK, nil, now, now)
			m.observe(0, TransportHTTP, tc.meth, tc.cls, tc.o, proto.ErrTimeout, now, now)
			if got := m.Up(TransportHTTP); got != tc.wantUp {
				t.Fatalf("up after %s: %v, want %v", tc.name, got, tc.wantUp)
			}
			m.observe(0, TransportHTTP, cheap, proto.ClassCheap, OutcomeOK, nil, now, now)
			if !m.Up(TransportHTTP) || ups != tc.onUp {
				t.Fatalf("after an answer: up %v, onUp called %d times, want true and %d", m.Up(TransportHTTP), ups, tc.onUp)
			}
		})
	}
}

// Slowness is judged on enough answers (MinRequests in the window), on both sides: a
// fallback that served a few probes does not set the latency the primaries are judged
// against, nor does one slow answer ban an upstream. Before, a moment's stall of the
// machine made both primaries look five times slower than the fallback's few probes
// and both were banned at once, their traffic sent to the fallback (a failover test
// under load: 82 client calls to the fallback while the primaries were healthy).
func TestSlowJudgedOnEnoughAnswers(t *testing.T) {
	r := testRouter(t, Spec{Name: "a", HTTPURL: "http://127.0.0.1:1"}, Spec{Name: "b", HTTPURL: "http://127.0.0.1:1"},
		Spec{Name: "f", HTTPURL: "http://127.0.0.1:1", Tier: TierFallback})
	a, b, f := byName(r, "a"), byName(r, "b"), byName(r, "f")
	now := time.Now()
	for range 20 { // MinRequests is 10
		a.health.observe(proto.ClassCheap, verdictAnswered, 500*time.Millisecond, "", now)
		b.health.observe(proto.ClassCheap, verdictAnswered, 500*time.Millisecond, "", now)
	}
	for range 3 {
		f.health.observe(proto.ClassCheap, verdictAnswered, 2*time.Millisecond, "", now)
	}
	r.review(now)
	if a.health.State() != StateHealthy || b.health.State() != StateHealthy {
		t.Fatalf("3 probes of the fallback judged the primaries: a %v, b %v", a.health.State(), b.health.State())
	}
	// One slow answer of its own does not ban it either.
	f.health.observe(proto.ClassCheap, verdictAnswered, 20*time.Second, "", now)
	r.review(now)
	if f.health.State() != StateHealthy {
		t.Fatalf("the fallback banned on 4 answers: %v", f.health.State())
	}
	for range 20 { // enough answers: the rule holds
		f.health.observe(proto.ClassCheap, verdictAnswered, 2*time.Millisecond, "", now)
	}
	r.review(now)
	if a.health.State() != StateBanned || b.health.State() != StateBanned {
		t.Fatalf("primaries at p90 500ms against 2ms on 24 answers: a %v, b %v", a.health.State(), b.health.State())
	}
}
