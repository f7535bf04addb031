//go:build !race

package gateway

import "testing"

// TestTracingUnsampledAllocatesNothing: with tracing on, a call that is not sampled
// (ratio 0; or a caller's traceparent saying "not sampled", passed on upstream) costs
// no allocation more than with tracing off, which is none on these paths (the guard
// above); nor does a client's X-Request-Id, echoed and passed on. Each path is measured
// against a tracing-off server: a batch allocates with tracing off too (picking its
// upstream copies a slice).
func TestTracingUnsampledAllocatesNothing(t *testing.T) {
	const batch = `[{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]},{"jsonrpc":"2.0","id":2,"method":"eth_blockNumber","params":[]}]`
	paths := append(hotPaths[:len(hotPaths):len(hotPaths)], struct{ name, method, uri, body string }{"POST / batch", "POST", "/", batch})
	off := newDirectServer(t, "-cache=false")
	on := newDirectServer(t, "-cache=false", "-trace-exporter", "otlp-http",
		"-trace-endpoint", "http://127.0.0.1:9", "-trace-sample-ratio", "0")
	measure := func(c *directCall) float64 {
		for range 100 { // warm pools and connections
			c.run(t)
		}
		return allocsPerRequest(func() { c.run(t) })
	}
	for _, h := range []struct{ name, traceparent, requestID string }{
		{"no headers", "", ""},
		{"unsampled traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", ""},
		{"client request id", "", "req-42.a:b_c"},
		{"invalid request id replaced", "", "bad id\x01"},
	} {
		for _, p := range paths {
			want := measure(newDirectCall(off, p.method, p.uri, p.body))
			c := newDirectCall(on, p.method, p.uri, p.body)
			if h.traceparent != "" {
				c.ctx.Request.Header.Set("traceparent", h.traceparent)
			}
			if h.requestID != "" {
				c.ctx.Request.Header.Set("X-Request-Id", h.requestID)
			}
			n := measure(c)
			if got := string(c.ctx.Response.Header.Peek("X-Request-Id")); got == "" || h.requestID == "req-42.a:b_c" && got != h.requestID {
				t.Fatalf("%s, %s: X-Request-Id %q", h.name, p.name, got)
			}
			if n > want {
				t.Errorf("%s, %s: %v allocations per request with tracing on, unsampled; %v with tracing off", h.name, p.name, n, want)
			}
		}
	}
}
