package upstream

import (
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// BenchmarkRouterOneUpstream is the router's price with one upstream: the same
// eth_blockNumber call to a fixed-answer fasthttp server on loopback, straight through
// the upstream's Pool and through the Router (pick, served-head clamp, retry checks).
// Compare the two sub-benchmarks' ns/op.
func BenchmarkRouterOneUpstream(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"jsonrpc":"2.0","id":1,"result":"0x10d4f"}`)
	}}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Shutdown() })
	r := testRouter(b, Spec{Name: "a", HTTPURL: "http://" + ln.Addr().String()})
	u := r.Upstreams()[0]
	req := request("eth_blockNumber", `[]`)
	id := []byte("7")
	calls := []struct {
		name string
		call func(spare []byte) ([]byte, error)
	}{
		{"pool", func(spare []byte) ([]byte, error) { return u.pool.Call(spare, req, id, time.Now().Add(5*time.Second)) }},
		{"router", func(spare []byte) ([]byte, error) {
			return r.HTTP().Call(spare, req, id, time.Now().Add(5*time.Second))
		}},
	}
	for _, c := range calls {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				buf := make([]byte, 0, 256)
				for pb.Next() {
					ans, err := c.call(buf)
					if err != nil {
						b.Error(err)
						return
					}
					buf = ans[:0]
				}
			})
		})
	}
}

// BenchmarkRouterDecisions is the router's own work per call with one upstream, without
// the network: what to need, whom to pick, and the checks on the answer.
func BenchmarkRouterDecisions(b *testing.B) {
	r := testRouter(b, Spec{Name: "a", HTTPURL: "http://127.0.0.1:1"})
	r.observeHead(r.Upstreams()[0], header(0x10d4f))
	req := request("eth_blockNumber", `[]`)
	ans := []byte(`{"jsonrpc":"2.0","id":7,"result":"0x10d4f"}`)
	b.ReportAllocs()
	for b.Loop() {
		n := r.needOf(req)
		u := r.pick(req, n, TransportHTTP, nil)
		u.inFlight.Add(1)
		u.inFlight.Add(-1)
		if u == nil || retryableAnswer(ans) || len(r.clamp(req, ans)) != len(ans) {
			b.Fatal("unexpected routing")
		}
	}
}
