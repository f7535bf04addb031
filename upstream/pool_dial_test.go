package upstream

import (
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
)

// With the upstream's node down, calls fail as unreachable without dialling it each
// time: after a failed dial the next ones fail at once for dialHold, then one tries
// again. Before, every call dialled (the audit: 5,400 connection attempts a second
// against a restarting node). Once the node is back, calls are served again.
func TestDialsHeldAfterAFailure(t *testing.T) {
	url := serveHTTP(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":"0x1"}`)
	})
	p := testPool(t, url)
	var dials atomic.Int64
	var down atomic.Bool
	down.Store(true)
	dial := p.dialer.fn
	p.dialer.fn = func(addr string, timeout time.Duration) (net.Conn, error) {
		dials.Add(1)
		if down.Load() {
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
		}
		return dial(addr, timeout)
	}
	start := time.Now()
	const calls = 100
	for range calls {
		_, err := p.Call(nil, request("eth_blockNumber", ""), []byte("1"), time.Now().Add(5*time.Second))
		if !errors.Is(err, proto.ErrUnreachable) {
			t.Fatalf("a call with the node down: %v, want unreachable", err)
		}
	}
	// One dial, then one per hold that passed while the calls ran.
	if n, most := dials.Load(), 2+int64(time.Since(start)/dialHold); n < 1 || n > most {
		t.Fatalf("%d dials for %d calls in %v, want 1 to %d", n, calls, time.Since(start).Round(time.Millisecond), most)
	}
	down.Store(false)
	deadline := time.Now().Add(20 * time.Second)
	for {
		ans, err := p.Call(nil, request("eth_blockNumber", ""), []byte("1"), time.Now().Add(5*time.Second))
		if err == nil {
			if string(ans) != `{"jsonrpc":"2.0","id":1,"result":"0x1"}` {
				t.Fatalf("once back: %s", ans)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node back, calls still fail: %v", err)
		}
	}
}
