package main

import (
	"net"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/bench/internal/fixednode"
)

// The relay answers its three paths with the fixed node's answer, and many calls at once on
// the shared sockets each get their own.
func TestRelayAnswersBothPaths(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// The node runs until the test binary exits: the relay's socket readers end the
	// process when their upstream goes away.
	go func() { _ = fixednode.New(21_000_000).Server().Serve(ln) }()
	addr := ln.Addr().String()
	h, err := newRelay("http://"+addr+"/", "ws://"+addr+"/", 2)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"jsonrpc":"2.0","id":`
	for _, path := range []string{"/blocknumber", "/ws/blocknumber", "/"} {
		errs := make(chan string, 50)
		for range 50 {
			go func() {
				var ctx fasthttp.RequestCtx
				ctx.Request.SetRequestURI(path)
				if path == "/" {
					ctx.Request.Header.SetMethod(fasthttp.MethodPost)
					ctx.Request.SetBodyString(`{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}`)
				}
				h(&ctx)
				body := string(ctx.Response.Body())
				if ctx.Response.StatusCode() != 200 || !strings.HasPrefix(body, want) || !strings.Contains(body, `"result":"0x1406f40"`) {
					errs <- path + ": " + body
					return
				}
				errs <- ""
			}()
		}
		for range 50 {
			if e := <-errs; e != "" {
				t.Fatal(e)
			}
		}
	}
}
