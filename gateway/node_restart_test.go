package gateway

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
	"github.com/infura-gateway/infura-gateway/gateway/internal/toxiproxy"
)

// A node restarted on a fresh chain that makes no block of its own (geth --dev with
// --dev.period 0 starts again at block 0 and waits for a transaction) is followed
// without one: the gateway reads the head again when its socket comes back, so the
// served head, the cache and every transport go back to block 0. Before, the gateway
// kept answering the old chain's head until the node mined a block, which it may
// never do.
func TestNodeRestartedOnFreshChainWithoutBlocks(t *testing.T) {
	node := testnode.Start(t, testnode.Period(0))
	for range 3 {
		node.SendTx(t) // one block each: head 3, now and then 5 (below)
	}
	gw := startGateway(t, "-upstream-http", node.HTTPURL, "-upstream-ws", node.WSURL)
	gw.waitUpstreams(t)
	var mu sync.Mutex
	last := map[string]string{} // each path's last answer, for a failure's report
	result := func(path string) string {
		code, body, err := tryDo("GET", gw.URL+path, "")
		mu.Lock()
		last[path] = fmt.Sprintf("%d %s %v", code, body, err)
		mu.Unlock()
		if err != nil || code != 200 {
			return ""
		}
		var ans struct{ Result string }
		_ = json.Unmarshal(body, &ans)
		return ans.Result
	}
	t.Cleanup(func() {
		if t.Failed() { // what the gateway and the node said last (the node still runs)
			mu.Lock()
			defer mu.Unlock()
			code, status, err := tryDo("GET", gw.AdminURL+"/status", "")
			t.Logf("last answers: %v; node's eth_blockNumber %s; gateway /status: %d %v\n%s", last,
				node.Call(t, "eth_blockNumber"), code, err, status)
		}
	})
	// The node's own head, not 0x3: geth --dev at period 0 now and then seals an empty
	// block or two after a transaction's (its on-demand loop commits again while the
	// pool still lists the mined transaction), before or after the gateway starts.
	// No block is made once the gateway runs: it must find the head by itself.
	for _, path := range []string{"/blocknumber", "/ws/blocknumber"} {
		waitFor(t, path+" at the old chain's head", func() bool { return result(path) == nodeHead(t, node) })
	}

	node.Restart(t) // SIGKILL, then a fresh in-memory chain on the same ports
	for _, path := range []string{"/blocknumber", "/ws/blocknumber"} {
		waitFor(t, path+" at the new chain's head 0x0", func() bool { return result(path) == "0x0" })
	}
	code, body := do(t, "POST", gw.URL+"/", `{"jsonrpc":"2.0","id":1,"method":"eth_getBlockByNumber","params":["0x2",false]}`)
	if code != 200 || string(body) != `{"jsonrpc":"2.0","id":1,"result":null}` {
		t.Fatalf("the old chain's block 2 after the restart: %d %s", code, body)
	}
}

// A node back on a fresh chain over HTTP while its websocket is still down (the
// reconnect backoff is up to -ws-backoff-max behind) is followed at once: the HTTP
// transport coming back up reads the head again, as a socket coming back does. Before,
// the served head stayed at the old chain's until a socket reconnected, and
// eth_blockNumber from the node (behind it) was answered with the old head: the chaos
// audit saw 3 s of the old chain's head 132 with the node at block 2. Here the socket
// never comes back, so without the HTTP read /blocknumber stays at the old head.
func TestNodeBackOverHTTPBeforeItsSocketIsFollowed(t *testing.T) {
	node := testnode.Start(t, testnode.Period(0))
	for range 3 {
		node.SendTx(t) // one block each: head 3, now and then 5 (below)
	}
	ws := toxiproxy.Start(t).NewProxy(t, "ws", strings.TrimPrefix(node.WSURL, "ws://"))
	gw := startGateway(t, "-upstream-http", node.HTTPURL, "-upstream-ws", ws.URL("ws"), "-cache=false")
	gw.waitUpstreams(t)
	blockNumber := func() (int, string) {
		code, body, err := tryDo("POST", gw.URL+"/", `{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}`)
		if err != nil {
			return 0, err.Error()
		}
		var ans struct{ Result string }
		_ = json.Unmarshal(body, &ans)
		return code, ans.Result
	}
	waitFor(t, "the old chain's head", func() bool { _, n := blockNumber(); return n == nodeHead(t, node) }) // as above

	ws.Down()
	node.Kill()
	// A call finds the node gone over HTTP (with the cache off each call reaches it).
	waitFor(t, "a 502 while the node is down", func() bool { code, _ := blockNumber(); return code == 502 })
	node.Resume(t) // a fresh in-memory chain at block 0; its socket stays unreachable
	var last string
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last answer: %s; node's eth_blockNumber %s", last, node.Call(t, "eth_blockNumber"))
		}
	})
	waitFor(t, "the new chain's head 0x0 over HTTP, the socket down", func() bool {
		code, n := blockNumber()
		last = fmt.Sprintf("%d %s", code, n)
		return n == "0x0"
	})
	if ws.Enabled() {
		t.Fatal("the websocket proxy came back up during the test")
	}
}

// With every upstream socket down (HTTP still answering) the head is polled, as
// without a websocket: the served head and the answers cached on it move with the
// node's blocks. Before, the head stood still until a socket came back, and
// eth_blockNumber was answered from the cache for up to -cache-max-age, then stood
// still again (the chaos audit: /blocknumber at 197 for 14 s, the node at 211).
func TestHeadPolledWhileEverySocketIsDown(t *testing.T) {
	node := testnode.Start(t, testnode.Period(0)) // a block per transaction only
	ws := toxiproxy.Start(t).NewProxy(t, "ws", strings.TrimPrefix(node.WSURL, "ws://"))
	gw := startGateway(t, "-upstream-http", node.HTTPURL, "-upstream-ws", ws.URL("ws"), "-head-poll", "100ms")
	gw.waitUpstreams(t)
	const conns = `gateway_upstream_ws_connections{upstream="default"}`
	ws.Down()
	waitFor(t, "every upstream socket down", func() bool { return gw.metric(t, conns) == 0 })
	for range 2 {
		_, n := node.SendTx(t)
		want, err := testnode.ParseQuantity(n)
		if err != nil {
			t.Fatal(err)
		}
		// At least: geth --dev at period 0 now and then seals an empty block after a
		// transaction's (TestNodeRestartedOnFreshChainWithoutBlocks).
		waitFor(t, "the served head at the node's block "+n, func() bool {
			return gw.metric(t, `gateway_chain_head_block`) >= float64(want)
		})
		code, body := do(t, "GET", gw.URL+"/blocknumber", "")
		var ans struct{ Result string }
		_ = json.Unmarshal(body, &ans)
		got, err := testnode.ParseQuantity(ans.Result)
		if code != 200 || err != nil || got < want || got > node.BlockNumber(t) {
			t.Fatalf("/blocknumber with the head at %s or past it: %d %s (node at %d)", n, code, body, node.BlockNumber(t))
		}
	}
	if gw.metric(t, conns) != 0 {
		t.Fatal("a socket came back up during the test")
	}
}

// nodeHead is the node's eth_blockNumber, as a quantity.
func nodeHead(t testing.TB, node *testnode.Node) string {
	return testnode.Quantity(node.BlockNumber(t))
}
