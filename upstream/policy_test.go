package upstream

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func intp(n int) *int    { return &n }
func boolp(b bool) *bool { return &b }

// Resolution: an upstream's entry over its network's, a method's own entry over its
// class's at the same level, then the class default; each field on its own.
func TestMethodPolicyResolve(t *testing.T) {
	network := []MethodPolicy{
		{Method: "class:call", Timeout: 5 * time.Second, Retries: intp(1)},
		{Method: "eth_call", Retries: intp(3)},
		{Method: "eth_getLogs", Timeout: 30 * time.Second, Retries: intp(0)},
		{Method: "debug_traceCall", Timeout: 7 * time.Second, Hedge: boolp(false)},
	}
	upstream := []MethodPolicy{
		{Method: "eth_call", Timeout: 200 * time.Millisecond},
		{Method: "class:logs", Retries: intp(2), Hedge: boolp(true)},
	}
	for _, tc := range []struct {
		name   string
		levels [][]MethodPolicy
		method string
		want   policy
	}{
		{"cheap default", nil, "eth_blockNumber", policy{retries: -1, hedge: true}},
		{"call default", nil, "eth_call", policy{retries: -1, hedge: true}},
		{"logs default: not hedged", nil, "eth_getLogs", policy{retries: -1}},
		{"send default: never retried or hedged", nil, "eth_sendRawTransaction", policy{}},
		{"unknown method: the call class", nil, "eth_sendBundle", policy{retries: -1, hedge: true}},
		{"class entry", [][]MethodPolicy{network}, "eth_estimateGas", policy{timeout: 5 * time.Second, retries: 1, hedge: true}},
		{"method entry over its class", [][]MethodPolicy{network}, "eth_call", policy{timeout: 5 * time.Second, retries: 3, hedge: true}},
		{"method entry", [][]MethodPolicy{network}, "eth_getLogs", policy{timeout: 30 * time.Second, retries: 0}},
		{"a method outside the table", [][]MethodPolicy{network}, "debug_traceCall", policy{timeout: 7 * time.Second, retries: 1}},
		{"another outside the table: its class", [][]MethodPolicy{network}, "trace_block", policy{timeout: 5 * time.Second, retries: 1, hedge: true}},
		{"upstream over network, field by field", [][]MethodPolicy{network, upstream}, "eth_call", policy{timeout: 200 * time.Millisecond, retries: 3, hedge: true}},
		{"upstream class over network method", [][]MethodPolicy{network, upstream}, "eth_getLogs", policy{timeout: 30 * time.Second, retries: 2, hedge: true}},
		{"untouched method", [][]MethodPolicy{network, upstream}, "eth_getBalance", policy{retries: -1, hedge: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tab, err := resolvePolicies(tc.levels...)
			if err != nil {
				t.Fatal(err)
			}
			if got := tab.of(request(tc.method, "[]")); got != tc.want {
				t.Fatalf("%s: %+v, want %+v", tc.method, got, tc.want)
			}
		})
	}
}

// Entries that cannot be honoured are refused with a message that says why; a send
// (any method that is not a read) asking for retries or hedging is one of them.
func TestMethodPolicyCheck(t *testing.T) {
	for _, tc := range []struct {
		p    MethodPolicy
		want string // "" valid
	}{
		{MethodPolicy{Method: "eth_getLogs", Timeout: time.Second, Retries: intp(1), Hedge: boolp(false)}, ""},
		{MethodPolicy{Method: "class:logs", Retries: intp(0)}, ""},
		{MethodPolicy{Method: "debug_traceCall", Retries: intp(2)}, ""},
		{MethodPolicy{Method: "eth_sendRawTransaction", Timeout: time.Second, Retries: intp(0), Hedge: boolp(false)}, ""},
		{MethodPolicy{Method: "eth_sendRawTransaction", Retries: intp(2)}, "eth_sendRawTransaction: a send is never retried or hedged"},
		{MethodPolicy{Method: "eth_sendTransaction", Hedge: boolp(true)}, "never retried or hedged"},
		{MethodPolicy{Method: "eth_sendBundle", Retries: intp(1)}, "not a read"},
		{MethodPolicy{Method: "eth_newFilter", Retries: intp(1)}, "not a read"},
		{MethodPolicy{Method: "class:send", Retries: intp(1)}, "a send is never retried"},
		{MethodPolicy{Method: "class:writes"}, "want class:cheap"},
		{MethodPolicy{Method: "eth_*"}, "want a method name"},
		{MethodPolicy{Method: "eth_call", Retries: intp(8)}, "between 0 and 7"},
		{MethodPolicy{Method: "eth_call", Retries: intp(-1)}, "between 0 and 7"},
		{MethodPolicy{Method: "eth_call", Timeout: -time.Second}, "timeout must be > 0"},
	} {
		err := tc.p.Check()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v", tc.p, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: error %v, want one saying %q", tc.p, err, tc.want)
		}
	}
	if err := CheckMethodPolicies([]MethodPolicy{{Method: "eth_call"}, {Method: "eth_call"}}); err == nil {
		t.Error("a method listed twice was accepted")
	}
	// The router refuses them at start too, at either level.
	for _, mod := range []func(*RouterConfig, *Spec){
		func(c *RouterConfig, _ *Spec) {
			c.Methods = []MethodPolicy{{Method: "eth_sendRawTransaction", Retries: intp(2)}}
		},
		func(_ *RouterConfig, s *Spec) {
			s.Methods = []MethodPolicy{{Method: "eth_sendRawTransaction", Retries: intp(2)}}
		},
	} {
		cfg := RouterConfig{Registry: NewRegistry()}
		sp := Spec{Name: "a", HTTPURL: "http://127.0.0.1:1"}
		mod(&cfg, &sp)
		if _, err := NewRouter(cfg, []Spec{sp}); err == nil || !strings.Contains(err.Error(), "never retried") {
			t.Errorf("a send with retries: 2: NewRouter: %v", err)
		}
	}
}

// countingServer answers every call after delay (0: at once) with status (200: a
// result), counting the calls it saw.
func policyServer(t *testing.T, status int, delay time.Duration, seen *atomic.Int64) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		seen.Add(1)
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		if status != http.StatusOK {
			w.WriteHeader(status)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":"0x1"}`)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// retries: 0 for a method: a read of it that failed on one upstream is not tried on
// another, with or without hedging; a method without an entry still is (-retries).
func TestMethodPolicyRetries(t *testing.T) {
	for _, hedging := range []float64{0, 0.9} {
		var seen atomic.Int64
		broken := func() string { return policyServer(t, http.StatusServiceUnavailable, 0, &seen) }
		r := testRouterWith(t, func(c *RouterConfig) {
			c.HedgeQuantile = hedging
			c.Methods = []MethodPolicy{{Method: "eth_getLogs", Retries: intp(0)}}
		}, Spec{Name: "a", HTTPURL: broken()}, Spec{Name: "b", HTTPURL: broken()})
		for _, tc := range []struct {
			method string
			calls  int64 // upstream calls one client call makes
		}{
			{"eth_getLogs", 1},
			{"eth_getBalance", 2}, // -retries 2, but only two upstreams
		} {
			seen.Store(0)
			_, err := r.call(nil, request(tc.method, `[]`), []byte("1"), time.Now().Add(10*time.Second), TransportHTTP)
			if err == nil {
				t.Fatalf("hedging %v: %s answered by broken upstreams", hedging, tc.method)
			}
			if got := seen.Load(); got != tc.calls {
				t.Errorf("hedging %v: %s reached the upstreams %d times, want %d", hedging, tc.method, got, tc.calls)
			}
		}
		// A batch is retried whole: as its least-retried request allows.
		for _, tc := range []struct {
			methods []string
			calls   int64
		}{
			{[]string{"eth_blockNumber", "eth_getLogs"}, 1},
			{[]string{"eth_blockNumber", "eth_getBalance"}, 2},
		} {
			seen.Store(0)
			var b Batch
			for i, m := range tc.methods {
				b.Add(request(m, `[]`), []byte(strconv.Itoa(i+1)))
			}
			if err := r.callBatch(&b, time.Now().Add(10*time.Second), TransportHTTP); err == nil {
				t.Fatalf("batch %v answered by broken upstreams", tc.methods)
			}
			if got := seen.Load(); got != tc.calls {
				t.Errorf("batch %v reached the upstreams %d times, want %d", tc.methods, got, tc.calls)
			}
		}
	}
}

// timeout: 200ms for eth_call: an upstream that does not answer costs 200ms, then the
// call goes to another; without the entry the attempt keeps the call's deadline (less
// the retry reserve).
func TestMethodPolicyTimeoutFailsOver(t *testing.T) {
	var served atomic.Int64
	hole, good := blackhole(t), policyServer(t, http.StatusOK, 0, &served)
	r := testRouterWith(t, func(c *RouterConfig) {
		c.Methods = []MethodPolicy{{Method: "eth_call", Timeout: 200 * time.Millisecond}}
	}, Spec{Name: "hole", HTTPURL: hole, Weight: 1000}, Spec{Name: "good", HTTPURL: good})
	for i := range 3 {
		start := time.Now()
		ans, err := r.call(nil, request("eth_call", `[{"to":"0x01"},"latest"]`), []byte("7"), start.Add(4*time.Second), TransportHTTP)
		took := time.Since(start)
		if err != nil || string(ans) != `{"jsonrpc":"2.0","id":7,"result":"0x1"}` {
			t.Fatalf("eth_call %d: %s %v after %v", i, ans, err, took)
		}
		// 200ms per attempt and a second attempt; the call's own reserve would be 3.7s.
		if took > 2*time.Second {
			t.Fatalf("eth_call %d answered after %v: the 200ms timeout did not end the attempt on the blackhole", i, took)
		}
	}
	// An eth_call times out on its own terms, not the upstream's: no ban.
	if st := byName(r, "hole").health.State(); st == StateBanned {
		t.Fatal("timeouts of eth_call banned the upstream")
	}
}

// hedge: false: a slow read is never hedged, even with -hedge-quantile; eth_getLogs is
// not by default (its class); eth_call without an entry is.
func TestMethodPolicyHedge(t *testing.T) {
	for _, tc := range []struct {
		name    string
		methods []MethodPolicy
		method  string
		hedged  bool
	}{
		{"eth_call by default", nil, "eth_call", true},
		{"eth_call hedge: false", []MethodPolicy{{Method: "eth_call", Hedge: boolp(false)}}, "eth_call", false},
		{"eth_getLogs by default", nil, "eth_getLogs", false},
		{"eth_getLogs hedge: true", []MethodPolicy{{Method: "eth_getLogs", Hedge: boolp(true)}}, "eth_getLogs", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var seen atomic.Int64
			// Slower than the hedge wait of an upstream with no latency yet (50ms).
			slow := func() string { return policyServer(t, http.StatusOK, 400*time.Millisecond, &seen) }
			r := testRouterWith(t, func(c *RouterConfig) {
				c.HedgeQuantile, c.HedgeMaxExtra, c.Methods = 0.9, 1, tc.methods
			}, Spec{Name: "a", HTTPURL: slow()}, Spec{Name: "b", HTTPURL: slow()})
			for i := range 3 {
				if _, err := r.call(nil, request(tc.method, `[]`), []byte("1"), time.Now().Add(10*time.Second), TransportHTTP); err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
			}
			if got := r.hedged.Load(); (got > 0) != tc.hedged {
				t.Fatalf("%s: %d of 3 calls hedged, want hedged %v", tc.method, got, tc.hedged)
			}
		})
	}
}

// Upstream entries apply when that upstream is tried: its timeout bounds its attempt;
// a reload of the network's entries keeps them on top.
func TestMethodPolicyPerUpstream(t *testing.T) {
	var served atomic.Int64
	hole, good := blackhole(t), policyServer(t, http.StatusOK, 0, &served)
	r := testRouter(t,
		Spec{Name: "hole", HTTPURL: hole, Weight: 1000, Methods: []MethodPolicy{{Method: "eth_call", Timeout: 200 * time.Millisecond}}},
		Spec{Name: "good", HTTPURL: good})
	call := func() time.Duration {
		start := time.Now()
		if _, err := r.call(nil, request("eth_call", `[]`), []byte("1"), start.Add(4*time.Second), TransportHTTP); err != nil {
			t.Fatalf("eth_call: %v", err)
		}
		return time.Since(start)
	}
	if took := call(); took > 2*time.Second {
		t.Fatalf("the hole's own 200ms timeout did not bound its attempt: %v", took)
	}
	if err := r.SetMethodPolicies([]MethodPolicy{{Method: "eth_call", Timeout: 3 * time.Second, Retries: intp(1)}}); err != nil {
		t.Fatal(err)
	}
	if got := byName(r, "hole").policyOf(request("eth_call", `[]`)); got.timeout != 200*time.Millisecond || got.retries != 1 {
		t.Fatalf("after the network's entries changed, the hole's eth_call policy is %+v", got)
	}
	if got := byName(r, "good").policyOf(request("eth_call", `[]`)); got.timeout != 3*time.Second {
		t.Fatalf("after the network's entries changed, good's eth_call policy is %+v", got)
	}
	if err := r.SetMethodPolicies([]MethodPolicy{{Method: "eth_sendTransaction", Retries: intp(1)}}); err == nil {
		t.Fatal("a send with retries was accepted on reload")
	}
	if got := byName(r, "good").policyOf(request("eth_call", `[]`)); got.timeout != 3*time.Second {
		t.Fatalf("a refused reload changed the policy: %+v", got)
	}
}
