package load

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/bench/internal/fixednode"
	"github.com/infura-gateway/infura-gateway/bench/internal/profile"
)

// startNode runs a fixed node on a loopback port for the test's lifetime.
func startNode(t *testing.T) (*fixednode.Node, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := fixednode.New(100)
	srv := n.Server()
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return n, ln.Addr().String()
}

func run(t *testing.T, cfg Config, tgt Target) *Result {
	t.Helper()
	r, err := New(cfg, tgt)
	if err != nil {
		t.Fatal(err)
	}
	return r.Run(context.Background())
}

func TestHTTPClosedLoop(t *testing.T) {
	_, addr := startNode(t)
	res := run(t, Config{VUs: 2, Duration: 300 * time.Millisecond},
		Target{Kind: HTTP, URL: "http://" + addr + "/", Body: []byte(`{"jsonrpc":"2.0","id":"a","method":"eth_blockNumber","params":[]}`), Method: "POST"})
	if res.Failed() || res.OK == 0 || res.ErrorCount != 0 || res.LatencyMS.P99 <= 0 {
		t.Fatalf("result %+v", res)
	}
}

// Errors must fail the run, classified by kind.
func TestErrorsFailTheRun(t *testing.T) {
	_, addr := startNode(t)
	res := run(t, Config{VUs: 1, Duration: 200 * time.Millisecond},
		Target{Kind: HTTP, URL: "http://" + addr + "/", Body: []byte(`{"jsonrpc":"2.0","id":1,"method":"eth_nope"}`), Method: "POST"})
	if !res.Failed() || res.Errors["rpc_error_-32601"] == 0 || res.OK != 0 {
		t.Fatalf("rpc errors not reported: %+v", res)
	}
	res = run(t, Config{VUs: 1, Duration: 200 * time.Millisecond}, Target{Kind: HTTP, URL: "http://" + addr + "/missing"})
	if !res.Failed() || res.Errors["http_404"] == 0 {
		t.Fatalf("404 not reported: %+v", res)
	}
	// Nothing listens on this port: every dial is refused.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	res = run(t, Config{VUs: 1, Duration: 200 * time.Millisecond}, Target{Kind: HTTP, URL: "http://" + dead + "/"})
	if !res.Failed() || res.Errors["conn_refused"] == 0 {
		t.Fatalf("refused not reported: %+v", res)
	}
	if _, err := New(Config{VUs: 1, Duration: time.Second}, Target{Kind: HTTP, URL: "http://10.1.2.3/"}); err == nil {
		t.Fatal("non-loopback target accepted")
	}
}

func TestOpenLoop(t *testing.T) {
	_, addr := startNode(t)
	res := run(t, Config{VUs: 4, Duration: 500 * time.Millisecond, Rate: 200},
		Target{Kind: HTTP, URL: "http://" + addr + "/", Body: []byte(`{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}`), Method: "POST"})
	// 200/s for 0.5 s is 100 requests, give or take the last tick.
	if res.Failed() || res.OK < 90 || res.OK > 101 || res.Mode != "open" {
		t.Fatalf("open loop: %+v", res)
	}
}

func TestProfileRun(t *testing.T) {
	_, addr := startNode(t)
	p, err := profile.Parse([]byte(`{"stages":[{"duration":"200ms","target":4},{"duration":"200ms","target":0}]}`))
	if err != nil {
		t.Fatal(err)
	}
	res := run(t, Config{Profile: p, StartVUs: 1},
		Target{Kind: HTTP, URL: "http://" + addr + "/", Body: []byte(`{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}`), Method: "POST"})
	if res.Failed() || res.VUs != 4 || res.Mode != "profile" || res.DurationS < 0.39 {
		t.Fatalf("profile: %+v", res)
	}
}

func TestWebsocketKinds(t *testing.T) {
	n, addr := startNode(t)
	res := run(t, Config{VUs: 2, Duration: 300 * time.Millisecond}, Target{Kind: WSRPC, URL: "ws://" + addr + "/"})
	if res.Failed() || res.OK == 0 || res.Connections != 2 {
		t.Fatalf("ws-rpc: %+v", res)
	}
	stop := make(chan struct{})
	go n.RunHeads(100*time.Millisecond, stop)
	defer close(stop)
	res = run(t, Config{VUs: 3, Duration: 550 * time.Millisecond}, Target{Kind: WSSub, URL: "ws://" + addr + "/"})
	if res.Failed() || res.OK != 3 || res.MinNotifs < 3 {
		t.Fatalf("ws-sub: %+v", res)
	}
	res = run(t, Config{VUs: 20, Duration: 300 * time.Millisecond}, Target{Kind: WSIdle, URL: "ws://" + addr + "/"})
	if res.Failed() || res.Connections != 20 {
		t.Fatalf("ws-idle: %+v", res)
	}
	res = run(t, Config{VUs: 1, Duration: 200 * time.Millisecond}, Target{Kind: WSRPC, URL: "ws://" + addr + "/", RPCMethod: "eth_nope"})
	if !res.Failed() || res.Errors["rpc_error_-32601"] == 0 {
		t.Fatalf("ws rpc error not reported: %+v", res)
	}
}

// Cancelling a run must not wait for the end of the run's duration even
// when every VU is blocked reading an idle socket.
func TestCancelWakesIdleSockets(t *testing.T) {
	_, addr := startNode(t)
	r, err := New(Config{VUs: 5, Duration: time.Minute}, Target{Kind: WSIdle, URL: "ws://" + addr + "/"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan *Result)
	go func() { done <- r.Run(ctx) }()
	for r.Live().Connections < 5 {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case res := <-done:
		if res.ErrorCount != 0 || res.Connections != 5 {
			t.Fatalf("cancelled idle run: %+v", res)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}
