package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
)

// A real geth --dev takes a signed transaction broadcast through the gateway to two of
// its upstreams (the same node under two names: one accepts it, the other says it
// already knows it), and the hash the gateway computed and answered is geth's, for a
// legacy transaction and for typed ones (access list, dynamic fee).
func TestBroadcastRealNode(t *testing.T) {
	node := testnode.Start(t, testnode.Period(0)) // blocks only on transactions
	path := writeFile(t, t.TempDir(), "gateway.yaml", fmt.Sprintf(
		"upstreams:\n  - name: a\n    http: %s\n    ws: %s\n  - name: b\n    http: %s\n    send_only: true\nbroadcast: {targets: [a, b]}\n",
		node.HTTPURL, node.WSURL, node.HTTPURL))
	gw := startGateway(t, "-config", path, "-cache=false")
	gw.waitUpstreams(t)

	cases := []struct {
		name string
		fee  map[string]any
	}{
		{"legacy", map[string]any{"gasPrice": "0x2540be400"}},
		{"access list (type 1)", map[string]any{"gasPrice": "0x2540be400", "accessList": []any{}}},
		{"dynamic fee (type 2)", map[string]any{"maxFeePerGas": "0x2540be400", "maxPriorityFeePerGas": "0x1"}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			signed := node.SignTransfer(t, c.fee)
			if want := fmt.Sprintf("0x%x", i); signed.Type != want {
				t.Fatalf("signed a transaction of type %s, want %s", signed.Type, want)
			}
			_, body := do(t, "POST", gw.URL+"/", `{"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":["`+signed.Raw+`"]}`)
			var ans struct {
				Result string          `json:"result"`
				Error  json.RawMessage `json:"error"`
			}
			if err := json.Unmarshal(body, &ans); err != nil || ans.Result == "" {
				t.Fatalf("send: %s", body)
			}
			if !strings.EqualFold(ans.Result, signed.Hash) {
				t.Fatalf("the gateway answered %s, geth names the transaction %s", ans.Result, signed.Hash)
			}
			var got struct {
				Hash string `json:"hash"`
			}
			waitFor(t, "geth knowing the transaction", func() bool {
				res, err := node.CallErr("eth_getTransactionByHash", ans.Result)
				return err == nil && json.Unmarshal(res, &got) == nil && strings.EqualFold(got.Hash, ans.Result)
			})
		})
	}
	// Each transaction reached both names once: one took it, the other knew it.
	defer func() {
		if t.Failed() {
			var b bytes.Buffer
			gw.srv.reg.WritePrometheus(&b)
			for _, l := range strings.Split(b.String(), "\n") {
				if strings.Contains(l, "broadcast") {
					t.Log(l)
				}
			}
			t.Log(gw.log.String())
		}
	}()
	waitFor(t, "every target's answer counted", func() bool {
		n := 0.0
		for _, u := range []string{"a", "b"} {
			for _, r := range []string{"accepted", "known"} {
				n += seriesValue(gw, `gateway_broadcast_targets_total{upstream="`+u+`",result="`+r+`"}`)
			}
		}
		return n == 2*float64(len(cases))
	})
	for _, u := range []string{"a", "b"} {
		for _, r := range []string{"rejected", "wrong_hash", "failed"} {
			if v := seriesValue(gw, `gateway_broadcast_targets_total{upstream="`+u+`",result="`+r+`"}`); v != 0 {
				t.Errorf("%s: %v %s", u, v, r)
			}
		}
	}
}
