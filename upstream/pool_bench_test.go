package upstream

import (
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/infura-gateway/infura-gateway/tracing"
)

// BenchmarkPoolCallInmemory is one Pool.Call (and the same request made with a bare
// HostClient, the reference relay's shape) over an in-memory listener: no syscalls, so
// what is left is the client side's CPU, and the difference between the two rows is
// the pool's own work (envelope, headers, deadline, answer checks, metrics).
func BenchmarkPoolCallInmemory(b *testing.B) {
	ln := fasthttputil.NewInmemoryListener()
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"jsonrpc":"2.0","id":1,"result":"0x10d4f"}`)
	}}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Shutdown() })
	// The pool's own connection type, as its dialer makes them: its reads are metered
	// against the answer budget.
	dial := func(string) (net.Conn, error) {
		c, err := ln.Dial()
		return &coarseConn{Conn: c}, err
	}
	p, err := NewPool(PoolConfig{URL: "http://127.0.0.1:1", MaxConns: 8, MaxConnWaitTimeout: time.Second,
		DialTimeout: time.Second, MaxIdleConnDuration: time.Minute, MaxResponseBodySize: 1 << 20,
		Answers: NewAnswerBudget(256<<20, nil), Metrics: NewMetrics(NewRegistry(), "bench")})
	if err != nil {
		b.Fatal(err)
	}
	p.hc.Dial = dial
	req := request("eth_blockNumber", `[]`)
	var tc tracing.Call
	tc.SetIn(tracing.In{RequestID: []byte("0123456789abcdef0123456789abcdef")})
	req.Trace = &tc
	b.Run("pool", func(b *testing.B) {
		var spare []byte
		b.ReportAllocs()
		for b.Loop() {
			ans, err := p.Call(spare, req, []byte("7"), time.Now().Add(5*time.Second))
			if err != nil {
				b.Fatal(err)
			}
			spare = ans
		}
	})
	b.Run("bare", func(b *testing.B) {
		hc := &fasthttp.HostClient{Addr: "127.0.0.1:1", Dial: dial, MaxConns: 8}
		body := []byte(`{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}`)
		resp := fasthttp.AcquireResponse()
		b.ReportAllocs()
		for b.Loop() {
			r := fasthttp.AcquireRequest()
			r.SetRequestURI("http://127.0.0.1:1/")
			r.Header.SetMethod(fasthttp.MethodPost)
			r.Header.SetContentType("application/json")
			r.SetBodyRaw(body)
			if err := hc.Do(r, resp); err != nil {
				b.Fatal(err)
			}
			fasthttp.ReleaseRequest(r)
		}
	})
}
