package gateway

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// Requests the gateway answers itself, without the node, get the error code and id geth
// gives the same bytes, on POST / and on /socket2socket (the messages may say more). A
// client library that maps codes to exceptions sees the same exception either way.
func TestRefusalsMatchNodeCodes(t *testing.T) {
	node, gw := startNodeGateway(t, nil)
	direct, ws := dialWS(t, node.WSURL, nil), dialWS(t, gw.WSURL, nil)
	for _, body := range []string{
		// params that are neither an array nor an object: geth -32602 "non-array args"
		`{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":"latest"}`,
		`{"jsonrpc":"2.0","id":2,"method":"eth_getBlockByNumber","params":1}`,
		`{"jsonrpc":"2.0","id":"t","method":"eth_chainId","params":true}`,
		`[{"jsonrpc":"2.0","id":3,"method":"eth_chainId","params":"x"},{"jsonrpc":"2.0","id":4,"method":"eth_chainId"}]`,
		// invalid requests: -32600
		`{"jsonrpc":"2.0","id":{"a":1},"method":"eth_chainId"}`,
		`{"jsonrpc":"1.0","id":5,"method":"eth_chainId"}`,
		`{"jsonrpc":"2.0","id":6,"method":5}`,
		`{"jsonrpc":"2.0","id":7,"method":""}`,
		`{"jsonrpc":"2.0","id":8}`,
		// no "jsonrpc" member: -32600 with the id, decided before the params; in a batch
		// only that element is refused
		`{"id":10,"method":"eth_chainId","params":[]}`,
		`{"id":"s","method":"eth_chainId"}`,
		`{"id":null,"method":"eth_chainId"}`,
		`{"id":11,"method":"eth_chainId","params":"x"}`,
		`{"id":12,"method":"eth_subscribe","params":["newHeads"]}`,
		`[{"id":13,"method":"eth_chainId"},{"jsonrpc":"2.0","id":14,"method":"eth_chainId"}]`,
		`null`,
		`[]`,
		`[1,[]]`,
		// notifications: an invalid one is answered (id null), one with wrong params is not
		`{"jsonrpc":"1.0","method":"eth_chainId"}`,
		`{"jsonrpc":"2.0","method":"eth_chainId","params":"x"}`,
		`[{"jsonrpc":"2.0","method":"eth_chainId","params":1},{"jsonrpc":"2.0","id":9,"method":"eth_chainId"}]`,
		`[{"jsonrpc":"2.0","method":"eth_chainId","params":1},{"jsonrpc":"2.0","method":5}]`,
		`{"jsonrpc":"2.0","method":"eth_subscribe","params":{"a":1}}`,
		`{"jsonrpc":"2.0","method":"eth_subscribe","params":[1]}`,
		// a notification without "jsonrpc" is an invalid request: answered, id null
		`{"method":"eth_chainId","params":[]}`,
		`{"method":"eth_chainId","params":"x"}`,
		`[{"method":"eth_chainId"}]`,
		`[{"method":"eth_chainId"},{"jsonrpc":"2.0","id":15,"method":"eth_chainId"}]`,
	} {
		raw := node.Raw(t, body)
		want := answerShape(t, raw)
		if got := answerShape(t, postBody(t, gw.URL, body)); got != want {
			t.Errorf("POST %s:\n got %s\nwant %s", body, got, want)
		}
		want = wsShape(t, direct, body, len(raw) > 0)
		if got := wsShape(t, ws, body, len(raw) > 0); got != want {
			t.Errorf("websocket %s:\n got %s\nwant %s", body, got, want)
		}
	}
}

// wsShape sends body, then a probe call, and returns the shape of body's answer, or
// "nothing" when the probe's answer comes and none was expected (answered says whether
// the node answers body over HTTP). An answer not expected shows, at the latest, as the
// next body's.
func wsShape(t *testing.T, c *wsTestClient, body string, answered bool) string {
	t.Helper()
	c.mustSend(body)
	c.mustSend(`{"jsonrpc":"2.0","id":"probe","method":"eth_chainId"}`)
	got, probed := "", false
	for !probed || (answered && got == "") {
		b := c.nextAnswer()
		if strings.Contains(string(b), `"probe"`) {
			probed = true
			continue
		}
		got = answerShape(t, b)
	}
	if got == "" {
		return "nothing"
	}
	return got
}

// answerShape is an answer (or a batch's) without its error messages: ids, results and
// error codes.
func answerShape(t *testing.T, b []byte) string {
	t.Helper()
	if len(b) == 0 {
		return "nothing"
	}
	type shape struct {
		ID     json.RawMessage `json:"id"`
		Result json.RawMessage `json:"result,omitempty"`
		Error  *struct {
			Code int `json:"code"`
		} `json:"error,omitempty"`
	}
	var many []shape
	if err := json.Unmarshal(b, &many); err != nil {
		var one shape
		if err := json.Unmarshal(b, &one); err != nil {
			t.Fatalf("answer %s: %v", b, err)
		}
		many = []shape{one}
	}
	out, _ := json.Marshal(many)
	return string(out)
}

func postBody(t *testing.T, url, body string) []byte {
	t.Helper()
	status, _, got := post(t, url, body, nil)
	if status != http.StatusOK {
		t.Fatalf("POST %s: HTTP %d %s", body, status, got)
	}
	return []byte(got)
}
