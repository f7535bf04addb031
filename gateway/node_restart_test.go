package gateway

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
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
		node.SendTx(t) // one block each: head 3
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
	for _, path := range []string{"/blocknumber", "/ws/blocknumber"} {
		waitFor(t, path+" at the old chain's head", func() bool { return result(path) == "0x3" })
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
