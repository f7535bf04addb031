package gateway

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// exhaustedListener fails its first Accepts as a process out of file descriptors does
// (accept4: EMFILE), then accepts.
type exhaustedListener struct {
	net.Listener
	fail atomic.Int32
}

func (l *exhaustedListener) Accept() (net.Conn, error) {
	if l.fail.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// A client holding enough connections to reach the descriptor limit makes Accept fail
// with EMFILE until some close. fasthttp's Serve returned on it and the gateway exited:
// one client stopped it for everyone, for good. The gateway waits and accepts again
// once descriptors are free, and counts the failures.
func TestServeOutlivesDescriptorExhaustion(t *testing.T) {
	fake := startFakeUpstream(t)
	srv := newUnservedServer(t, fake.args()...)
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &exhaustedListener{Listener: inner}
	ln.fail.Store(3)
	var serveErr error
	served := make(chan struct{})
	go func() { serveErr = srv.Serve(ln); close(served) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-served
	})

	answered := make(chan error, 1)
	go func() {
		c := &http.Client{Timeout: 30 * time.Second}
		resp, err := c.Get("http://" + inner.Addr().String() + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != 200 {
				err = io.ErrUnexpectedEOF
			}
		}
		answered <- err
	}()
	select {
	case <-served:
		t.Fatalf("Serve returned on EMFILE (%v): the gateway would exit", serveErr)
	case err := <-answered:
		if err != nil {
			t.Fatalf("GET /health after the descriptors came back: %v", err)
		}
	}
	gw := &testGateway{srv: srv}
	if n := gw.metric(t, `gateway_accept_errors_total{listener="public"}`); n != 3 {
		t.Errorf(`gateway_accept_errors_total{listener="public"} = %v, want 3`, n)
	}
}
