package gateway

import (
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
)

// BenchmarkWSRouteBlockNumber measures /ws/blocknumber end to end: HTTP client, the
// gateway's route, the shared Mux, geth --dev, and back (cache off).
func BenchmarkWSRouteBlockNumber(b *testing.B) {
	node := testnode.Start(b, testnode.Period(0))
	gw := startGateway(b, "-upstream-http", node.HTTPURL, "-upstream-ws", node.WSURL, "-cache=false")
	gw.waitUpstreams(b)
	client := &fasthttp.Client{MaxConnsPerHost: 256}
	url := gw.URL + "/ws/blocknumber"
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI(url)
		for pb.Next() {
			if err := client.DoTimeout(req, resp, 30*time.Second); err != nil || resp.StatusCode() != 200 {
				b.Errorf("GET /ws/blocknumber: %v %d %s", err, resp.StatusCode(), resp.Body())
				return
			}
		}
	})
}
