package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// During the drain delay a keep-alive client is asked to leave between two answers:
// the answer carries Connection: close, comes whole, and the gateway then closes the
// connection cleanly (FIN, not a reset), long before the listener closes. The client
// reconnects, and the load balancer sends it to a pod that stays.
func TestDrainClosesKeepAliveConnections(t *testing.T) {
	fake := startFakeUpstream(t)
	gw := startGateway(t, fake.args("-drain-delay", "60s")...)
	gw.waitUpstreams(t)
	conn, err := net.Dial("tcp", strings.TrimPrefix(gw.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	const call = `{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}`
	roundTrip := func(what string) *http.Response {
		t.Helper()
		_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
		req := "POST / HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\nContent-Length: " +
			strconv.Itoa(len(call)) + "\r\n\r\n" + call
		if _, err := io.WriteString(conn, req); err != nil {
			t.Fatalf("%s: write: %v", what, err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: read: %v", what, err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil || int64(len(body)) != resp.ContentLength {
			t.Fatalf("%s: body of %d bytes of %d: %v", what, len(body), resp.ContentLength, err)
		}
		var answer struct {
			Result string `json:"result"`
		}
		if err := json.Unmarshal(body, &answer); err != nil || answer.Result == "" || resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s (%v)", what, resp.StatusCode, body, err)
		}
		return resp
	}
	if resp := roundTrip("before the drain"); resp.Close {
		t.Fatal("Connection: close before the drain")
	}

	ctx, cancel := context.WithCancel(context.Background())
	var shutdownErr error
	done := make(chan struct{})
	go func() { shutdownErr = gw.srv.Shutdown(ctx); close(done) }()
	t.Cleanup(func() { // before startGateway's: its Shutdown then has nothing left to drain
		cancel()
		<-done
		gw.srv.cfg.DrainDelay = 0
	})
	waitFor(t, "draining", func() bool { return gw.srv.probe.Draining() })

	resp := roundTrip("during the drain") // the same connection
	// resp.Close is net/http's reading of Connection: close (it drops the header).
	if !resp.Close {
		t.Fatal("during the drain: no Connection: close")
	}
	// Then the gateway closes the connection: a clean end of stream, not a reset, and
	// not the listener's closing (60s away).
	n, err := br.Read(make([]byte, 1))
	switch {
	case errors.Is(err, syscall.ECONNRESET):
		t.Fatalf("connection reset after the answer: %v", err)
	case n != 0 || !errors.Is(err, io.EOF):
		t.Fatalf("after the answer: %d bytes, %v; want the end of the stream", n, err)
	}
	select {
	case <-done:
		t.Fatalf("the listener closed already (%v): the drain delay did not hold", shutdownErr)
	default:
	}
	cancel() // ends the drain delay
	<-done
	// The cancelled context also bounds the listener's shutdown that follows: with a
	// connection still open at that instant (the harness's own), Shutdown rightly says
	// it stopped waiting. Anything else is a failure.
	if shutdownErr != nil && !errors.Is(shutdownErr, context.Canceled) {
		t.Fatal(shutdownErr)
	}
}

// A Serve that starts as Shutdown runs, or after it, returns: it does not accept for
// ever on a listener fasthttp never registered (a test's cleanup once hung on it).
func TestServeAfterShutdownReturns(t *testing.T) {
	fake := startFakeUpstream(t)
	srv := newUnservedServer(t, append([]string{"-drain-delay", "0s"}, fake.args()...)...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Serve after Shutdown is still accepting")
	}
}
