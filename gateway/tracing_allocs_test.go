//go:build !race

package gateway

import "testing"

// TestTracingUnsampledAllocatesNothing: with tracing on, a call that is not sampled
// (ratio 0; or a caller's traceparent saying "not sampled", passed on upstream) costs
// no allocation, nor does a client's X-Request-Id, echoed and passed on. A batch
// allocates what it does with tracing off (picking its upstream copies a slice), no more.
func TestTracingUnsampledAllocatesNothing(t *testing.T) {
	const batch = `[{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]},{"jsonrpc":"2.0","id":2,"method":"eth_blockNumber","params":[]}]`
	off := newDirectCall(newDirectServer(t, "-cache=false"), "POST", "/", batch)
	for range 100 {
		off.run(t)
	}
	batchAllocs := testing.AllocsPerRun(1000, func() { off.run(t) })
	s := newDirectServer(t, "-cache=false", "-trace-exporter", "otlp-http",
		"-trace-endpoint", "http://127.0.0.1:9", "-trace-sample-ratio", "0")
	for _, h := range []struct{ name, traceparent, requestID string }{
		{"no headers", "", ""},
		{"unsampled traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", ""},
		{"client request id", "", "req-42.a:b_c"},
		{"invalid request id replaced", "", "bad id\x01"},
	} {
		paths := append(hotPaths[:len(hotPaths):len(hotPaths)], struct{ name, method, uri, body string }{"POST / batch", "POST", "/", batch})
		for _, p := range paths {
			c := newDirectCall(s, p.method, p.uri, p.body)
			if h.traceparent != "" {
				c.ctx.Request.Header.Set("traceparent", h.traceparent)
			}
			if h.requestID != "" {
				c.ctx.Request.Header.Set("X-Request-Id", h.requestID)
			}
			for range 100 {
				c.run(t)
			}
			if got := string(c.ctx.Response.Header.Peek("X-Request-Id")); got == "" || h.requestID == "req-42.a:b_c" && got != h.requestID {
				t.Fatalf("%s, %s: X-Request-Id %q", h.name, p.name, got)
			}
			want := 0.0
			if p.body == batch {
				want = batchAllocs
			}
			if n := testing.AllocsPerRun(1000, func() { c.run(t) }); n > want {
				t.Errorf("%s, %s: %v allocations per request with tracing on, unsampled; want %v (tracing off)", h.name, p.name, n, want)
			}
		}
	}
}
