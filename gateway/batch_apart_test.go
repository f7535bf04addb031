package gateway

import (
	"fmt"
	"strings"
	"testing"

	"github.com/fasthttp/websocket"

	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
)

// A batch whose calls each some upstream takes, but no one upstream takes them all
// (their methods lists differ), is answered call by call: the answer is geth's own to
// the batch. Before, the router found no upstream for the whole exchange and every
// element was answered 503 -32000 "no upstream available", though each call alone was
// served.
func TestBatchAcrossUpstreamsMethodLists(t *testing.T) {
	node := testnode.Start(t, testnode.Period(0))
	file := fmt.Sprintf(`upstreams:
  - {name: no-code, http: %q, ws: %q, methods: {deny: [eth_getCode]}}
  - {name: no-balance, http: %q, ws: %q, methods: {deny: [eth_getBalance]}}
`, node.HTTPURL, node.WSURL, node.HTTPURL, node.WSURL)
	gw := startGateway(t, "-config", writeFile(t, t.TempDir(), "gateway.yaml", file), "-cache=false")
	gw.waitUpstreams(t)
	a := testnode.DevAddress
	batch := fmt.Sprintf(`[{"jsonrpc":"2.0","id":1,"method":"eth_getCode","params":[%q,"0x0"]},`+
		`{"jsonrpc":"2.0","id":2,"method":"eth_getBalance","params":[%q,"0x0"]},`+
		`{"jsonrpc":"2.0","id":3,"method":"eth_chainId","params":[]}]`, a, a)
	want := strings.TrimSpace(string(node.Raw(t, batch)))
	if !strings.Contains(want, `"id":2,"result":"0x`) {
		t.Fatalf("geth: %s", want)
	}
	status, body := do(t, "POST", gw.URL+"/", batch)
	if status != 200 || strings.TrimSpace(string(body)) != want {
		t.Fatalf("POST /: %d %.400s\nwant %s", status, body, want)
	}
	ws, _, err := websocket.DefaultDialer.Dial(gw.WSURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if err := ws.WriteMessage(websocket.TextMessage, []byte(batch)); err != nil {
		t.Fatal(err)
	}
	_, msg, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(msg)) != want {
		t.Fatalf("/socket2socket: %.400s\nwant %s", msg, want)
	}
}
