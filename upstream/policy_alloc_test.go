//go:build !race

// The race detector makes sync.Pool drop items on purpose, so allocation counts only
// mean something without it.

package upstream

import (
	"testing"
	"time"
)

// Reading a call's policy allocates nothing: one atomic load and an index into the
// table resolved at load, or for a method outside proto's table (debug_traceCall) a
// scan of the few named ones; an upstream's own entries the same way.
func TestRoutedCallWithPolicyAllocatesNothing(t *testing.T) {
	u := newRawUpstream(t)
	r := testRouterWith(t, func(c *RouterConfig) {
		c.Mux = testMuxConfig(u.url)
		c.Mux.Conns = 1
		c.Methods = []MethodPolicy{
			{Method: "class:cheap", Timeout: 5 * time.Second, Retries: intp(1)},
			{Method: "debug_traceCall", Timeout: 20 * time.Second},
		}
	}, Spec{Name: "a", HTTPURL: "http://127.0.0.1:1", WSURL: u.url,
		Methods: []MethodPolicy{{Method: "eth_blockNumber", Timeout: 10 * time.Second, Hedge: boolp(false)}}})
	a := byName(r, "a")
	a.mux.Start()
	t.Cleanup(a.mux.Close)
	waitFor(t, "the socket", a.mux.Up)
	for _, req := range []string{"eth_blockNumber", "eth_getBalance", "debug_traceCall"} {
		req := request(req, `[]`)
		var buf []byte
		do := func() {
			var err error
			if buf, err = r.call(buf, req, benchID, time.Now().Add(30*time.Second), TransportWS); err != nil {
				t.Fatal(err)
			}
		}
		for range 100 {
			do()
		}
		if n := testing.AllocsPerRun(1000, do); n > 0.1 {
			t.Errorf("%s: a routed call with a per-method policy allocates %.2f times, want 0", req.Name, n)
		}
	}
}
