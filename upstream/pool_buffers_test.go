package upstream

import (
	"bytes"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// largeAnswer is over maxPooledBuf: fasthttp gives its body a buffer of twice that.
const largeAnswer = 2 << 20

// bufferServer is an HTTP upstream answering a single call to "large" with a result of
// largeAnswer bytes, a batch with one such answer (id 0), anything else a short result.
func bufferServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	large := strings.Repeat("l", largeAnswer)
	single := []byte(`{"jsonrpc":"2.0","id":1,"result":"` + large + `"}`)
	batch := []byte(`[{"jsonrpc":"2.0","id":0,"result":"` + large + `"}]`)
	small := []byte(`{"jsonrpc":"2.0","id":1,"result":"0x1"}`)
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		// Raw bodies: the server takes no buffer from the pool the client's responses
		// come from, so the test sees only what the pool gives back.
		ctx.SetContentType("application/json")
		body := ctx.PostBody()
		switch {
		case bytes.HasPrefix(body, []byte("[")):
			ctx.Response.SetBodyRaw(batch)
		case bytes.Contains(body, []byte(`"method":"large"`)):
			ctx.Response.SetBodyRaw(single)
		default:
			ctx.Response.SetBodyRaw(small)
		}
	}, MaxRequestBodySize: 8 << 20}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return "http://" + ln.Addr().String()
}

// newBufferPool is a pool of one connection to bufferServer.
func newBufferPool(t *testing.T) *Pool {
	t.Helper()
	p, err := NewPool(PoolConfig{URL: bufferServer(t), MaxConns: 1, MaxConnWaitTimeout: 5 * time.Second,
		DialTimeout: 3 * time.Second, MaxIdleConnDuration: time.Minute, MaxResponseBodySize: 8 << 20,
		Metrics: NewMetrics(NewRegistry(), "test")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// A response goes back to the pool without a body buffer over maxPooledBuf,
// whichever buffer it holds then: the large answer's own (spliced to another id, or a
// batch's), or the call's envelope swapped in for an answer that leaves as it came (id
// 1) after a large request. Before, each went back with its capacity, 4 MiB for a
// 2 MiB answer, and stayed there uncounted. A small answer's buffer is still pooled,
// for the next call to reuse.
func TestPoolDropsLargeBodyBuffers(t *testing.T) {
	p := newBufferPool(t)
	var put []int // the capacity of each body buffer given back to the pool
	keep := p.putResponse
	p.putResponse = func(r *fasthttp.Response) {
		put = append(put, cap(r.Body()))
		keep(r)
	}
	largeParams := `["` + strings.Repeat("p", largeAnswer) + `"]`
	for _, tc := range []struct {
		name       string
		call       func(deadline time.Time) error
		wantPooled bool // a small buffer stays in the pool
	}{
		{name: "large answer, another id", call: func(d time.Time) error {
			_, err := p.Call(nil, request("large", `[]`), []byte(`"x"`), d)
			return err
		}},
		{name: "large answer, id 1", call: func(d time.Time) error {
			_, err := p.Call(nil, request("large", `[]`), []byte("1"), d)
			return err
		}},
		{name: "large request, id 1", call: func(d time.Time) error {
			_, err := p.Call(nil, request("small", largeParams), []byte("1"), d)
			return err
		}},
		{name: "large batch answer", call: func(d time.Time) error {
			var b Batch
			b.Add(request("large", `[]`), []byte("1"))
			return p.CallBatch(&b, d)
		}},
		{name: "small answer", wantPooled: true, call: func(d time.Time) error {
			_, err := p.Call(nil, request("small", `[]`), []byte(`"x"`), d)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			put = put[:0]
			if err := tc.call(time.Now().Add(10 * time.Second)); err != nil {
				t.Fatal(err)
			}
			if len(put) != 1 {
				t.Fatalf("%d responses given back, want 1", len(put))
			}
			switch got := put[0]; {
			case got > maxPooledBuf:
				t.Errorf("a response went back to the pool with a %d-byte body buffer, over %d", got, maxPooledBuf)
			case tc.wantPooled && got == 0:
				t.Errorf("a small answer's body buffer was dropped: the next call allocates one")
			}
		})
	}
}
