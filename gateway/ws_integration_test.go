package gateway

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
)

// The /ws/* routes through the full server and the shared Mux: many concurrent clients
// each get the node's answer; the node is killed and restarted on the same ports and
// the routes recover within a few seconds, with errors (never hangs) in between.
func TestWSRoutesConcurrentAndRecovery(t *testing.T) {
	node := testnode.Start(t, testnode.Period(0)) // a still chain: stable answers to compare
	gw := startGateway(t, "-upstream-http", node.HTTPURL, "-upstream-ws", node.WSURL, "-cache=false",
		"-upstream-timeout", "5s")
	gw.waitUpstreams(t)
	genesis := string(node.Raw(t, rpcBody("eth_getBlockByNumber", `["0x0",false]`)))
	gasPrice := string(node.Raw(t, rpcBody("eth_gasPrice", `[]`)))
	tx0 := string(node.Raw(t, rpcBody("eth_getTransactionByBlockNumberAndIndex", `["0x0","0x0"]`)))
	health, _ := do(t, "GET", gw.URL+"/ws/health", "")
	if health != 200 {
		t.Fatalf("/ws/health %d", health)
	}

	const clients, each = 300, 6
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < each; j++ {
				var method, path, body, want string
				switch (i + j) % 4 {
				case 0:
					method, path = "GET", "/ws/blocknumber"
				case 1:
					method, path, want = "GET", "/ws/gasprice", gasPrice
				case 2:
					method, path, body, want = "POST", "/ws/blockbynumber", `{"block":"0","txdetails":false}`, genesis
				case 3:
					method, path, body, want = "POST", "/ws/txbyblockandindex", `{"block":"0x0","index":"0x0"}`, tx0
				}
				code, got := do(t, method, gw.URL+path, body)
				if code != 200 {
					errs <- fmt.Errorf("%s: %d %s", path, code, got)
					return
				}
				if want != "" && string(got) != want {
					errs <- fmt.Errorf("%s:\n got %s\nwant %s", path, got, want)
					return
				}
				if want == "" && !isBlockNumberAnswer(got) {
					errs <- fmt.Errorf("%s: %s", path, got)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	node.Kill()
	start := time.Now()
	for i := 0; i < 20; i++ {
		code, got := do(t, "GET", gw.URL+"/ws/blocknumber", "")
		if code != 502 && code != 504 && code != 503 {
			t.Fatalf("node down: %d %s", code, got)
		}
		var e rpcAnswer
		if json.Unmarshal(got, &e) != nil || e.Error == nil {
			t.Fatalf("node down: error body %s", got)
		}
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("20 calls against a dead node took %v", d)
	}
	node.Restart(t)
	restarted := time.Now()
	for {
		code, got := do(t, "GET", gw.URL+"/ws/blocknumber", "")
		if code == 200 && isBlockNumberAnswer(got) {
			break
		}
		if time.Since(restarted) > 10*time.Second {
			t.Fatalf("/ws/blocknumber not back 10s after the node: %d %s", code, got)
		}
		time.Sleep(20 * time.Millisecond) // polling the gateway's recovery, bounded
	}
	t.Logf("/ws/blocknumber recovered %v after the node answered again", time.Since(restarted))
}

func isBlockNumberAnswer(b []byte) bool {
	var a rpcAnswer
	if json.Unmarshal(b, &a) != nil || a.Error != nil {
		return false
	}
	var s string
	if json.Unmarshal(a.Result, &s) != nil || !strings.HasPrefix(s, "0x") {
		return false
	}
	_, err := strconv.ParseUint(s[2:], 16, 64)
	return err == nil
}
