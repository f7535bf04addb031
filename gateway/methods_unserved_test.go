package gateway

import (
	"fmt"
	"strings"
	"testing"

	"github.com/fasthttp/websocket"

	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
)

// A method no upstream of the network is configured for (every upstream's methods
// deny it, or leave it off their allow list) is answered as a method not available
// (200, -32601), on every transport, and never sinks the rest of a batch: the other
// elements are answered by the upstream. Before, it was 503 "no upstream available:
// every upstream ... is at its in-flight limit, or none is configured for it" (a status
// clients retry), and a batch holding one such element had every element answered so,
// eth_blockNumber included.
func TestMethodNoUpstreamServes(t *testing.T) {
	node := testnode.Start(t, testnode.Period(0))
	file := fmt.Sprintf(`upstreams:
  - {name: geth, http: %q, ws: %q, methods: {deny: [eth_getCode]}}
  - {name: geth-too, http: %q, methods: {allow: [eth_blockNumber, eth_chainId, eth_getBlockByNumber, eth_getBalance]}}
`, node.HTTPURL, node.WSURL, node.HTTPURL)
	gw := startGateway(t, "-config", writeFile(t, t.TempDir(), "gateway.yaml", file))
	gw.waitUpstreams(t)
	account := testnode.DevAddress
	code := fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"eth_getCode","params":[%q,"latest"]}`, account)
	balance := fmt.Sprintf(`{"jsonrpc":"2.0","id":2,"method":"eth_getBalance","params":[%q,"latest"]}`, account)
	notServed := func(t *testing.T, what, ans string, id int) {
		t.Helper()
		if !strings.Contains(ans, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"error":{"code":-32601,`, id)) ||
			!strings.Contains(ans, "no upstream is configured") {
			t.Fatalf("%s: %.300s, want -32601 saying no upstream is configured for it", what, ans)
		}
	}
	t.Run("POST", func(t *testing.T) {
		status, body := do(t, "POST", gw.URL+"/", code)
		if status != 200 {
			t.Fatalf("status %d: %s", status, body)
		}
		notServed(t, "eth_getCode", string(body), 1)
	})
	t.Run("batch", func(t *testing.T) {
		status, body := do(t, "POST", gw.URL+"/", "["+code+","+balance+"]")
		if status != 200 {
			t.Fatalf("status %d: %s", status, body)
		}
		notServed(t, "the batch's eth_getCode", string(body), 1)
		want := strings.TrimSpace(string(node.Raw(t, balance)))
		if !strings.HasSuffix(strings.TrimSpace(string(body)), ","+want+"]") {
			t.Fatalf("the batch's eth_getBalance: %.400s, want geth's %s", body, want)
		}
	})
	t.Run("socket2socket", func(t *testing.T) {
		ws, _, err := websocket.DefaultDialer.Dial(gw.WSURL, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		if err := ws.WriteMessage(websocket.TextMessage, []byte(code)); err != nil {
			t.Fatal(err)
		}
		_, msg, err := ws.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		notServed(t, "eth_getCode over /socket2socket", string(msg), 1)
	})
	// A method some upstream takes is served as before.
	if status, body := do(t, "POST", gw.URL+"/", balance); status != 200 || !strings.Contains(string(body), `"result":"0x`) {
		t.Fatalf("eth_getBalance: %d %s", status, body)
	}
}
