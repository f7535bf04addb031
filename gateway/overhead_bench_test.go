package gateway

import (
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// The gateway's own work per request, against the reference relay's shape
// (bench/cmd/minrelay) on the same in-memory upstream: no syscall on either side, so
// what is timed is user-space work only. Each iteration runs the gateway's handler and
// the relay's, one after the other, and times each on its own; the ratio of the two is
// reported with them (gw/relay).
//
// Warm runs them back to back, everything in cache: the work's instructions. Cold
// writes a buffer larger than the CPU's caches (OVERHEAD_EVICT_KIB, default 8 MiB)
// before each handler, as the kernel's networking and the other connections do between
// two requests of one connection under load: what a request costs when its code and
// data must be fetched again. Under load the cold figures are the ones that track CPU
// per request (bench/README.md, "Round 4").
//
//	go test -run '^$' -bench BenchmarkOverhead -benchtime 3s ./gateway/

// overheadUpstream answers every call with one fixed answer, in memory.
type overheadUpstream struct{ answer []byte }

func (u overheadUpstream) RoundTrip(_ *fasthttp.HostClient, _ *fasthttp.Request, resp *fasthttp.Response) (bool, error) {
	resp.Reset()
	resp.Header.SetContentType("application/json")
	resp.SetBodyRaw(u.answer)
	return false, nil
}

var overheadPaths = []struct {
	name, short, method, uri, body string
	args                           []string
	// relay is the reference shape of the path: "forward" sends a fixed eth_blockNumber,
	// "body" the client's body as it is, "fixed" answers from memory (the floor).
	relay string
}{
	{"GET /blocknumber", "blocknumber", "GET", "/blocknumber", "", []string{"-cache=false"}, "forward"},
	{"POST / eth_blockNumber", "post", "POST", "/", `{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}`, []string{"-cache=false"}, "body"},
	{"GET /blocknumber cache hit", "cachehit", "GET", "/blocknumber", "", []string{"-cache=true", "-cache-max-age", "1h"}, "fixed"},
}

func BenchmarkOverhead(b *testing.B) {
	evict := newEvictor(b)
	for _, p := range overheadPaths {
		gw, relay := overheadCalls(b, p.short)
		for _, cold := range []bool{false, true} {
			name := p.name + "/warm"
			if cold {
				name = p.name + "/cold"
			}
			b.Run(name, func(b *testing.B) {
				clock := clockCost()
				var g, r time.Duration
				b.ReportAllocs()
				for b.Loop() {
					// A fresh start time: the gateway's deadline counts from it.
					gw.ctx.Init2(benchConn, benchLogger{}, false)
					if cold {
						evict()
					}
					t0 := time.Now()
					gw.run(b)
					g += time.Since(t0) - clock
					if cold {
						evict()
					}
					t0 = time.Now()
					relay.run(b)
					r += time.Since(t0) - clock
				}
				n := float64(b.N)
				b.ReportMetric(float64(g.Nanoseconds())/n, "gw-ns/req")
				b.ReportMetric(float64(r.Nanoseconds())/n, "relay-ns/req")
				b.ReportMetric(float64(g)/float64(r), "gw/relay")
			})
		}
	}
}

// overheadCalls is the gateway's request and the relay's for the path named short, on
// the in-memory upstream.
func overheadCalls(tb testing.TB, short string) (gw, relay *directCall) {
	for _, p := range overheadPaths {
		if p.short != short {
			continue
		}
		up := overheadUpstream{answer: []byte(fixedBlockNumber)}
		s := newDirectServer(tb, p.args...)
		if p.relay != "fixed" {
			// A cache hit never reaches the upstream; the head follower keeps polling the
			// fixed-answer upstream on loopback, which knows eth_getBlockByNumber.
			for _, n := range s.nets.List() {
				n.Router.SetHTTPTransport(up)
			}
		}
		return newDirectCall(s, p.method, p.uri, p.body), newHandlerCall(relayHandler(p.relay, up), p.method, p.uri, p.body)
	}
	tb.Fatalf("no overhead path %q", short)
	return nil, nil
}

// BenchmarkFootprint runs one handler of one path alone, every request through
// footprintOne. bench/cmd/footprint (./task bench:footprint) runs it under callgrind,
// counting inside footprintOne only: the instructions a request executes and the code
// lines they sit on, figures that do not move with the machine's load as times do.
// Run plainly, it is the warm figure of each handler on its own.
//
//	go test -run '^$' -bench 'BenchmarkFootprint/gateway/blocknumber' ./gateway/
func BenchmarkFootprint(b *testing.B) {
	for _, p := range overheadPaths {
		gw, relay := overheadCalls(b, p.short)
		for _, who := range []struct {
			name string
			c    *directCall
		}{{"gateway", gw}, {"relay", relay}} {
			b.Run(who.name+"/"+p.short, func(b *testing.B) {
				// Pools, caches and the branch history settle outside the counted function.
				for range 200 {
					who.c.ctx.Init2(benchConn, benchLogger{}, false)
					who.c.run(b)
				}
				b.ReportAllocs()
				for b.Loop() {
					who.c.ctx.Init2(benchConn, benchLogger{}, false)
					footprintOne(b, who.c)
				}
			})
		}
	}
}

// footprintOne is one request, in a function of its own for callgrind's
// --toggle-collect.
//
//go:noinline
func footprintOne(tb testing.TB, c *directCall) { c.run(tb) }

// relayHandler is the reference relay's handler for one path (bench/cmd/minrelay), its
// HostClient on the in-memory upstream.
func relayHandler(shape string, up fasthttp.RoundTripper) fasthttp.RequestHandler {
	hc := &fasthttp.HostClient{Addr: "127.0.0.1:1", Transport: up, MaxConns: 512}
	blockNumber := []byte(`{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}`)
	answer := []byte(fixedBlockNumber)
	forward := func(ctx *fasthttp.RequestCtx, body []byte) {
		req := fasthttp.AcquireRequest()
		defer fasthttp.ReleaseRequest(req)
		req.SetRequestURI("http://127.0.0.1:1/")
		req.Header.SetMethod(fasthttp.MethodPost)
		req.Header.SetContentType("application/json")
		req.SetBodyRaw(body)
		if err := hc.Do(req, &ctx.Response); err != nil {
			ctx.Error(err.Error(), fasthttp.StatusBadGateway)
		}
	}
	switch shape {
	case "forward":
		return func(ctx *fasthttp.RequestCtx) { forward(ctx, blockNumber) }
	case "body":
		return func(ctx *fasthttp.RequestCtx) { forward(ctx, ctx.PostBody()) }
	}
	return func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.SetBody(answer)
	}
}

// benchConn is the connection a benchmark's request context says it came on: only its
// addresses are ever asked for.
var benchConn net.Conn = addrConn{}

type addrConn struct{ net.Conn }

func (addrConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }
func (addrConn) LocalAddr() net.Addr  { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8545} }

type benchLogger struct{}

func (benchLogger) Printf(string, ...any) {}

// newEvictor returns a function that writes one byte in every cache line of a buffer
// larger than the caches (OVERHEAD_EVICT_KIB KiB, default 8 MiB).
func newEvictor(tb testing.TB) func() {
	size := 8 << 20
	if v := os.Getenv("OVERHEAD_EVICT_KIB"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			tb.Fatalf("OVERHEAD_EVICT_KIB=%q: want a positive number of KiB", v)
		}
		size = n << 10
	}
	buf := make([]byte, size)
	return func() {
		for i := 0; i < len(buf); i += 64 {
			buf[i]++
		}
	}
}

// clockCost is what timing an empty stretch costs (two clock reads), taken off each
// handler's time.
func clockCost() time.Duration {
	const n = 1 << 14
	var d time.Duration
	for range n {
		t0 := time.Now()
		d += time.Since(t0)
	}
	return d / n
}
