package failover_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/internal/rpcspy"
	"github.com/infura-gateway/infura-gateway/gateway/internal/subrec"
	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
	"github.com/infura-gateway/infura-gateway/gateway/internal/toxiproxy"
)

// eth_sendRawTransaction through upstreams that fail after the request reached them
// (the answer lost on the way back, the socket closed, HTTP 500, HTTP 429): every
// write reaches exactly one upstream, once, and the client gets the error; it is never
// sent to a second upstream. A write that could not be sent at all (nothing listening)
// goes to another upstream and is mined.
func TestWritesNeverSentTwice(t *testing.T) {
	node := testnode.Start(t)
	tox := toxiproxy.Start(t)
	a := newChain(t, tox, "a", "primary", node)
	b := newChain(t, tox, "b", "primary", node)
	g := startGateway(t, []*chain{a, b}, "routing:\n  retries: 3\n", "-cache=false")
	ws := subrec.Dial(t, g.WSURL)

	writes := func() int { return a.Spy.Count("eth_sendRawTransaction") + b.Spy.Count("eth_sendRawTransaction") }
	bothHealthy := func() {
		t.Helper()
		waitFor(t, "both upstreams healthy with their sockets up", 3*banMax+5*time.Second, func() bool {
			for _, c := range []*chain{a, b} {
				if u := g.upstream(t, c.Name); u.State != "healthy" || u.WS == nil || !*u.WS {
					return false
				}
			}
			return true
		})
	}
	cases := []struct {
		name   string
		ws     bool // over /socket2socket, else POST /
		inject func(c *chain)
		heal   func(c *chain)
		status int  // the HTTP status the client gets (POST /)
		taken  bool // the node itself received the write
		// backsOff: the fault is a throttle, and a throttled upstream is asked nothing
		// during its back-off (issue 22): once both are, the gateway refuses the write
		// itself, and it reaches no upstream.
		backsOff bool
	}{
		{"answer lost after the node took it", false, func(c *chain) {
			// Requests go through; the first bytes of every answer are swallowed and
			// the connection closed.
			c.Tox.HTTP.SetToxic(toxiproxy.Toxic{Type: "reset_peer", Stream: toxiproxy.StreamDownstream, Attributes: map[string]int64{"timeout": 0}})
		}, func(c *chain) { c.Tox.HTTP.Clear() }, http.StatusBadGateway, true, false},
		{"socket closed by the upstream instead of an answer", true, func(c *chain) {
			c.Spy.SetFault(func(m string) *rpcspy.Fault {
				if m == "eth_sendRawTransaction" {
					return &rpcspy.Fault{Close: true}
				}
				return nil
			})
		}, func(c *chain) { c.Spy.SetFault(nil) }, 0, false, false},
		{"HTTP 500", false, func(c *chain) {
			c.Spy.SetFault(func(m string) *rpcspy.Fault {
				if m == "eth_sendRawTransaction" {
					return &rpcspy.Fault{Status: http.StatusInternalServerError}
				}
				return nil
			})
		}, func(c *chain) { c.Spy.SetFault(nil) }, http.StatusBadGateway, false, false},
		{"HTTP 429", false, func(c *chain) {
			c.Spy.SetFault(func(m string) *rpcspy.Fault {
				if m == "eth_sendRawTransaction" {
					return &rpcspy.Fault{Status: http.StatusTooManyRequests}
				}
				return nil
			})
		}, func(c *chain) { c.Spy.SetFault(nil) }, http.StatusTooManyRequests, false, true},
	}
	for _, c := range cases {
		bothHealthy()
		// Both upstreams fail the same way: whichever the router picks, and whichever
		// it might try next, would show.
		for _, u := range []*chain{a, b} {
			c.inject(u)
		}
		for i := range 3 {
			tx := node.SignTransfer(t, nil)
			raw, hash := tx.Raw, tx.Hash
			before := writes()
			var err error
			var status int
			if c.ws {
				_, err = ws.Call("eth_sendRawTransaction", raw)
			} else {
				status, err = post(g.URL+"/", "eth_sendRawTransaction", raw)
			}
			if err == nil || (!c.ws && status != c.status) {
				t.Errorf("%s, write %d: HTTP %d, %v; want %d and an error", c.name, i, status, err, c.status)
			}
			if got := writes() - before; got != 1 && !(c.backsOff && got == 0) {
				t.Errorf("%s, write %d (%s) reached the upstreams %d times", c.name, i, hash, got)
			}
			if c.taken {
				// The node has it: sent again elsewhere, it would have been submitted twice.
				if res, err := node.CallErr("eth_getTransactionByHash", hash); err != nil || string(res) == "null" {
					t.Errorf("%s, write %d: the node does not know %s: %s %v", c.name, i, hash, res, err)
				}
			}
		}
		for _, u := range []*chain{a, b} {
			c.heal(u)
		}
		t.Logf("%s: 3 writes, each reached one upstream once and failed to the client", c.name)
	}

	// a goes down. A write in the moment it does may meet one of a's kept-alive
	// connections just closed: whether it left cannot be known, so it fails to the
	// client and is not sent to b. Any other is sent to b, once, and mined. Once a is
	// banned every write goes to b.
	bothHealthy()
	writesOnA := a.Spy.Count("eth_sendRawTransaction")
	a.Tox.Down()
	outcomes := map[string]int{}
	for i := range 6 {
		if i == 3 {
			waitFor(t, "a banned", 10*time.Second, func() bool { return g.upstream(t, "a").State == "banned" })
		}
		tx := node.SignTransfer(t, nil)
		raw, hash := tx.Raw, tx.Hash
		beforeB := b.Spy.Count("eth_sendRawTransaction")
		status, err := post(g.URL+"/", "eth_sendRawTransaction", raw)
		db := b.Spy.Count("eth_sendRawTransaction") - beforeB
		switch {
		case a.Spy.Count("eth_sendRawTransaction") != writesOnA:
			t.Fatalf("write %d reached a, which is down", i)
		case err == nil && status == http.StatusOK && db == 1:
			outcomes["sent to b"]++
			waitFor(t, "transaction "+hash+" mined", time.Minute, func() bool {
				res, err := node.CallErr("eth_getTransactionReceipt", hash)
				return err == nil && string(res) != "null"
			})
		case err != nil && i < 3 && db == 0:
			outcomes["failed on a closed connection to a"]++
		default:
			t.Errorf("write %d with a down: HTTP %d, %v; reached b %d times", i, status, err, db)
		}
	}
	t.Logf("a down: 6 writes: %v", outcomes)
	a.Tox.Up()
}

// post makes one JSON-RPC call over HTTP and returns the status and, for an answer
// that is not a result, an error.
func post(url, method string, params ...any) (int, error) {
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
	resp, err := adminClient.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	var ans struct {
		Result json.RawMessage `json:"result"`
		Error  json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(out, &ans); err != nil || ans.Error != nil || ans.Result == nil {
		return resp.StatusCode, &answerError{string(out)}
	}
	return resp.StatusCode, nil
}

type answerError struct{ body string }

func (e *answerError) Error() string { return "answer " + e.body }
