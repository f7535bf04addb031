package failover_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/infura-gateway/infura-gateway/gateway/internal/subrec"
	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
	"github.com/infura-gateway/infura-gateway/gateway/internal/toxiproxy"
)

// A real node's error for the call itself (a revert, bad params) is the answer: the
// classifier reads it as client_error, the client gets it as the node wrote it, and it
// is never tried on another upstream, over HTTP or websocket. Two upstreams in front of
// one geth --dev: each such call reaches exactly one of them.
func TestNodeErrorsReachOneUpstream(t *testing.T) {
	node := testnode.Start(t)
	tox := toxiproxy.Start(t)
	a := newChain(t, tox, "a", "primary", node)
	b := newChain(t, tox, "b", "primary", node)
	g := startGateway(t, []*chain{a, b}, "routing:\n  retries: 3\n", "-cache=false")
	ws := subrec.Dial(t, g.WSURL)
	cases := []struct {
		name, method string
		params       []any
		text         string // in the node's message
	}{
		// Init code PUSH1 0 PUSH1 0 REVERT: eth_call without "to" runs it.
		{"reverting eth_call", "eth_call", []any{map[string]any{"data": "0x60006000fd"}, "latest"}, "execution reverted"},
		{"bad params", "eth_getBalance", []any{"0x01", "latest"}, "invalid argument"},
	}
	for _, c := range cases {
		count := func() int { return a.Spy.Count(c.method) + b.Spy.Count(c.method) }
		for i := range 4 {
			before := count()
			var msg string
			if i%2 == 0 {
				body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": c.method, "params": c.params})
				status, ans, err := postRaw(g.URL+"/", string(body))
				if err != nil || status != 200 {
					t.Fatalf("%s over HTTP: %d %v", c.name, status, err)
				}
				msg = string(ans)
			} else {
				_, err := ws.Call(c.method, c.params...)
				if err == nil {
					t.Fatalf("%s over websocket: no error", c.name)
				}
				msg = err.Error()
			}
			if !strings.Contains(msg, c.text) {
				t.Fatalf("%s, call %d: %s; want the node's %q", c.name, i, msg, c.text)
			}
			if got := count() - before; got != 1 {
				t.Fatalf("%s, call %d reached the upstreams %d times, want 1", c.name, i, got)
			}
		}
	}
	for _, name := range []string{"a", "b"} {
		if u := g.upstream(t, name); u.State != "healthy" {
			t.Errorf("%s is %s after answering the calls' own errors", name, u.State)
		}
	}
}
