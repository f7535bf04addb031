package gateway

import (
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/gateway/config"
	"github.com/infura-gateway/infura-gateway/gateway/internal/redistest"
	"github.com/infura-gateway/infura-gateway/gateway/pipeline"
	"github.com/infura-gateway/infura-gateway/internal/pooltest"
)

// The hot path: a REST route forwarding to the HTTP upstream. These tests call the
// gateway's handler directly (no client-side network) against a fixed-answer fasthttp
// upstream on loopback, and count every allocation in the process.

const fixedBlockNumber = `{"jsonrpc":"2.0","id":1,"result":"0x10d4f"}`

func newDirectServer(tb testing.TB, args ...string) *Server {
	tb.Helper()
	return newDirectServerAnswering(tb, fixedBlockNumber, args...)
}

// newDirectServerAnswering is newDirectServer over an upstream answering answer.
func newDirectServerAnswering(tb testing.TB, answer string, args ...string) *Server {
	tb.Helper()
	fake := startFakeUpstream(tb, fakeFixed(answer))
	cfg, err := config.Load(append([]string{"-upstream-http", fake.HTTPURL, "-upstream-ws", "off", "-admin-listen", ""}, args...),
		func(string) string { return "" }, io.Discard)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	return s
}

type directCall struct {
	ctx fasthttp.RequestCtx
	h   fasthttp.RequestHandler
}

func newDirectCall(s *Server, method, uri, body string) *directCall {
	return newHandlerCall(s.Handler(), method, uri, body)
}

// newHandlerCall is a request for h on a context of its own.
func newHandlerCall(h fasthttp.RequestHandler, method, uri, body string) *directCall {
	c := &directCall{h: h}
	var req fasthttp.Request
	req.Header.SetMethod(method)
	req.SetRequestURI(uri)
	req.SetBodyString(body)
	c.ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, nil)
	// A server's context keeps its bodies' buffers from one request to the next
	// (fasthttp's keepBodyBuffer, set for every context it serves with).
	c.ctx.Request.KeepBodyBuffer = true
	c.ctx.Response.KeepBodyBuffer = true
	return c
}

// allocsPerRequest is testing.AllocsPerRun(1000, run) with fasthttp's body pools in the
// state a busy gateway's reach (pooltest.CalibrateBodyPools), whatever earlier tests
// sent: a guard passing only on uncalibrated pools passed here and allocated in
// production (TestPoolKeepsBodyBuffersOnceCalibrated).
func allocsPerRequest(run func()) float64 {
	pooltest.CalibrateBodyPools()
	return testing.AllocsPerRun(1000, run)
}

func (c *directCall) run(tb testing.TB) {
	// As a server resets a context it keeps: the response's buffer is dropped past
	// pipeline.KeptBody (KeepBodyBuffer, set above, skips that step).
	c.ctx.Response.ReleaseBody(pipeline.KeptBody)
	c.ctx.Response.Reset()
	c.h(&c.ctx)
	if c.ctx.Response.StatusCode() != 200 {
		tb.Fatalf("status %d: %s", c.ctx.Response.StatusCode(), c.ctx.Response.Body())
	}
}

var hotPaths = []struct{ name, method, uri, body string }{
	{"GET /blocknumber", "GET", "/blocknumber", ""},
	{"POST /blockbynumber", "POST", "/blockbynumber", `{"block":"0xc6af55","txdetails":"true"}`},
	{"POST /txbyblockandindex", "POST", "/txbyblockandindex", `{"block":"13020000","index":"0x11"}`},
	{"POST / eth_blockNumber", "POST", "/", `{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}`},
}

func BenchmarkHotPath(b *testing.B) { benchPaths(b, newDirectServer(b, "-cache=false")) }

func BenchmarkCacheHit(b *testing.B) {
	benchPaths(b, newDirectServer(b, "-cache=true", "-cache-max-age", "1h"))
}

func benchPaths(b *testing.B, s *Server) {
	for _, p := range hotPaths {
		b.Run(p.name, func(b *testing.B) {
			c := newDirectCall(s, p.method, p.uri, p.body)
			b.ReportAllocs()
			for b.Loop() {
				c.run(b)
			}
		})
	}
}

// BenchmarkDirectUpstream is the same fixed-answer call made straight to the upstream
// with fasthttp's client: the ratio to BenchmarkHotPath is the gateway's overhead.
func BenchmarkDirectUpstream(b *testing.B) {
	url := startFakeUpstream(b, fakeFixed(fixedBlockNumber)).HTTPURL
	var hc fasthttp.Client
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	req.SetRequestURI(url)
	req.Header.SetMethod("POST")
	req.SetBodyString(`{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}`)
	b.ReportAllocs()
	for b.Loop() {
		if err := hc.Do(req, resp); err != nil {
			b.Fatal(err)
		}
	}
}

// keyedPlan is generous enough that benchmarks and allocation tests are never refused:
// the limits are checked, and pass.
const keyedPlan = "{requests_per_second: 10000000, burst: 1000000000, units_per_second: 1000000000, " +
	"units_burst: 1000000000, daily_units: 100000000000}"

// keyedPaths are the hot paths with an API key: in the path, and in a header.
var keyedPaths = []struct{ name, method, uri, header, body string }{
	{"POST /v3/<key> eth_blockNumber", "POST", "/v3/" + keyAlice, "", `{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}`},
	{"GET /blocknumber X-API-Key", "GET", "/blocknumber", keyAlice, ""},
}

// newKeyedServer is newDirectServer with keys on (and Redis when addr is set).
func newKeyedServer(tb testing.TB, redisAddr string, args ...string) *Server {
	tb.Helper()
	path := writeFile(tb, tb.TempDir(), "gateway.yaml", accessConfig(keyedPlan))
	args = append(args, "-config", path)
	if redisAddr != "" {
		args = append(args, "-redis-addr", redisAddr)
	}
	return newDirectServer(tb, args...)
}

func newKeyedCall(s *Server, method, uri, key, body string) *directCall {
	c := newDirectCall(s, method, uri, body)
	if key != "" {
		c.ctx.Request.Header.Set("X-API-Key", key)
	}
	return c
}

// BenchmarkKeyedHotPath is BenchmarkHotPath with a key and its limits checked, per
// process and through Redis: compare ns/op with BenchmarkHotPath.
func BenchmarkKeyedHotPath(b *testing.B) {
	for _, mode := range []string{"local", "redis"} {
		b.Run(mode, func(b *testing.B) {
			addr := ""
			if mode == "redis" {
				addr = redistest.Start(b).Addr
			}
			s := newKeyedServer(b, addr, "-cache=false")
			for _, p := range keyedPaths {
				b.Run(p.name, func(b *testing.B) {
					c := newKeyedCall(s, p.method, p.uri, p.header, p.body)
					b.ReportAllocs()
					for b.Loop() {
						c.run(b)
					}
				})
			}
		})
	}
}
