package upstream

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// headHTTP is an HTTP JSON-RPC upstream that makes no block: eth_getBlockByNumber
// answers the header of block 5, eth_chainId *chain once hold is closed.
type headHTTP struct {
	URL   string
	chain atomic.Pointer[string]
	hold  chan struct{} // closed: eth_chainId is answered
	reads atomic.Int64  // eth_getBlockByNumber calls
}

func newHeadHTTP(t *testing.T, chain string, held bool) *headHTTP {
	t.Helper()
	h := &headHTTP{hold: make(chan struct{})}
	h.chain.Store(&chain)
	if !held {
		close(h.hold)
	}
	h.URL = serveHTTP(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		res := `"0x5"`
		switch {
		case strings.Contains(string(body), `"eth_chainId"`):
			<-h.hold
			res = *h.chain.Load()
		case strings.Contains(string(body), `"eth_getBlockByNumber"`):
			h.reads.Add(1)
			res = string(header(5))
		}
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":`+res+`}`)
	})
	return h
}

// A head read before the upstream proved its chain moves nothing; once it proves the
// chain the head is read again, once, rather than at the next poll (an hour here) or
// the next block (never: this node makes none). Before, an upstream over HTTP only
// whose first head answer came before its first eth_chainId answer served no head
// until the next poll (-head-poll, 2 s by default).
func TestHeadReadAgainOnceTheChainIsProved(t *testing.T) {
	up := newHeadHTTP(t, chain1337, true)
	r := testRouterWith(t, func(c *RouterConfig) { withChain(1337)(c); c.HeadPoll = time.Hour },
		Spec{Name: "a", HTTPURL: up.URL})
	u := byName(r, "a")
	started := make(chan struct{})
	go func() { r.Start(); close(started) }() // Start waits for the held eth_chainId
	t.Cleanup(func() { <-started; r.Close() })
	waitFor(t, "the first head read", func() bool { return u.health.HeadKnown() })
	if r.HeadKnown() {
		t.Fatal("a head read before the chain was proved moved the served head")
	}
	close(up.hold)
	waitFor(t, "the served head at the node's block 5", func() bool { return r.HeadKnown() && r.ServedHead() == 5 })
	if n := up.reads.Load(); n != 2 {
		t.Fatalf("%d head reads, want 2: the first, and one after the proof", n)
	}
}

// The same with a socket: an upstream whose HTTP endpoint answered another chain
// (wrong_chain) while its socket proved the right one had its head read, and dropped;
// once the HTTP endpoint answers the chain again (the next check, a probe interval
// later) the head is read again. Before, the socket being up, nothing read it until
// the node's next block: the served head stayed unknown.
func TestHeadReadAgainWhenTheChainIsRightAgain(t *testing.T) {
	up := newHeadHTTP(t, chain31337, false)
	ws := newFakeUpstream(t, false)
	right := chain1337
	ws.chainID.Store(&right)
	r := testRouterWith(t, func(c *RouterConfig) {
		withChain(1337)(c)
		c.HeadPoll = time.Hour
		c.Mux = testMuxConfig(ws.url)
	}, Spec{Name: "a", HTTPURL: up.URL, WSURL: ws.url})
	u := byName(r, "a")
	r.Start()
	t.Cleanup(r.Close)
	waitFor(t, "the head read with the socket up", func() bool { return u.mux.Up() && u.health.HeadKnown() })
	if !u.wrongChain() || r.HeadKnown() {
		t.Fatalf("the head of an upstream answering another chain over HTTP moved the served head (wrong %v)", u.wrongChain())
	}
	up.chain.Store(&right) // fixed behind the same URL: the next check sees it
	waitFor(t, "the served head at the node's block 5", func() bool { return r.HeadKnown() && r.ServedHead() == 5 })
	if !u.mux.Up() {
		t.Fatal("the socket went down during the test")
	}
}
