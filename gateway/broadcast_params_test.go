package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
)

// eth_sendRawTransaction takes the raw transaction alone, as geth checks: with more it
// is refused with geth's own error, before and after the transaction was accepted
// (never answered from its dedupe record), and nothing more reaches the node.
func TestBroadcastRawTxTakesOneParam(t *testing.T) {
	node := testnode.Start(t, testnode.Period(0))
	path := writeFile(t, t.TempDir(), "gateway.yaml", fmt.Sprintf(
		"upstreams:\n  - name: a\n    http: %s\n    ws: %s\nbroadcast: {targets: all}\n", node.HTTPURL, node.WSURL))
	gw := startGateway(t, "-config", path, "-cache=false")
	gw.waitUpstreams(t)
	signed := node.SignTransfer(t, map[string]any{"gasPrice": "0x2540be400"})
	type answer struct {
		Result string `json:"result"`
		Error  *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	send := func(t *testing.T, params string) (int, answer) {
		code, body := do(t, "POST", gw.URL+"/", `{"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":`+params+`}`)
		var a answer
		if err := json.Unmarshal(body, &a); err != nil {
			t.Fatalf("answer %s: %v", body, err)
		}
		return code, a
	}
	extras := []struct {
		name  string
		extra any
	}{
		{"a string", "extra"},
		{"null", nil},
		{"an object", map[string]any{"maxBlockNumber": "0x10"}},
	}
	refused := func(t *testing.T) {
		for _, c := range extras {
			t.Run(c.name, func(t *testing.T) {
				_, err := node.CallErr("eth_sendRawTransaction", signed.Raw, c.extra)
				var want *testnode.RPCError
				if !errors.As(err, &want) {
					t.Fatalf("geth answered %v, want its refusal", err)
				}
				p, _ := json.Marshal([]any{signed.Raw, c.extra})
				code, got := send(t, string(p))
				if code != 200 || got.Error == nil || got.Error.Code != want.Code || got.Error.Message != want.Message {
					t.Fatalf("the gateway answered %d %+v, geth %d %q", code, got, want.Code, want.Message)
				}
			})
		}
	}
	t.Run("before the send", refused)
	if _, got := send(t, `["`+signed.Raw+`"]`); !strings.EqualFold(got.Result, signed.Hash) {
		t.Fatalf("send: %+v, want %s", got, signed.Hash)
	}
	t.Run("after the send", refused)
	for _, r := range []string{"rejected", "known", "failed"} {
		if v := seriesValue(gw, `gateway_broadcast_targets_total{upstream="a",result="`+r+`"}`); v != 0 {
			t.Errorf("%v sends %s: a send with extra params reached the node", v, r)
		}
	}
	if v := seriesValue(gw, `gateway_broadcast_targets_total{upstream="a",result="accepted"}`); v != 1 {
		t.Errorf("%v sends accepted, want the one", v)
	}
}

// A configured send that takes more params is deduplicated only against a send of the
// same method with the same params: a call with other options (or another method) is
// broadcast, never answered from another call's record.
func TestBroadcastDedupeKeyCoversParams(t *testing.T) {
	a := startFakeUpstream(t, fakeRespond(func(r fakeRequest) fakeAnswer {
		if strings.HasPrefix(r.Method, "eth_sendRawTransaction") {
			return honest(r)
		}
		return fakeAnswer{}
	}))
	path := writeFile(t, t.TempDir(), "gateway.yaml", fmt.Sprintf("upstreams:\n  - name: a\n    http: %s\n    ws: %s\n"+
		"broadcast:\n  methods: [eth_sendRawTransaction, eth_sendRawTransactionConditional]\n", a.HTTPURL, a.WSURL))
	gw := startGateway(t, append([]string{"-config", path, "-cache=false"}, fastHealth...)...)
	gw.waitUpstreams(t)
	raw, hash := rawTx()
	const cond = "eth_sendRawTransactionConditional"
	steps := []struct {
		method, extra string // extra: the params after the raw transaction
		deduped       bool
	}{
		{cond, `,{"blockNumberMax":"0x10"}`, false},
		{cond, ` , { "blockNumberMax" : "0x10" } `, true}, // the same params, spaced otherwise
		{cond, `,{"blockNumberMax":"0x20"}`, false},
		{cond, ``, false},
		{cond, ``, true},
		{"eth_sendRawTransaction", ``, false},
		{"eth_sendRawTransaction", ``, true},
		{cond, `,{"blockNumberMax":"0x20"}`, true},
	}
	sent := 0
	for i, s := range steps {
		deduped := gw.metric(t, "gateway_broadcast_deduped_total")
		_, body := do(t, "POST", gw.URL+"/", `{"jsonrpc":"2.0","id":1,"method":"`+s.method+`","params":["`+raw+`"`+s.extra+`]}`)
		if want := `{"jsonrpc":"2.0","id":1,"result":"` + hash + `"}`; string(body) != want {
			t.Fatalf("step %d (%s%s): %s, want %s", i, s.method, s.extra, body, want)
		}
		if !s.deduped {
			sent++
		}
		if got := gw.metric(t, "gateway_broadcast_deduped_total") - deduped; (got == 1) != s.deduped {
			t.Errorf("step %d (%s%s): deduped %v, want %v", i, s.method, s.extra, got, s.deduped)
		}
		if n := sendsAny(a, raw); n != sent {
			t.Errorf("step %d (%s%s): the upstream received %d sends, want %d", i, s.method, s.extra, n, sent)
		}
	}
}

// sendsAny counts the sends of raw, by any method, a fake received.
func sendsAny(f *fakeUpstream, raw string) int {
	n := 0
	for _, r := range f.requests() {
		if strings.HasPrefix(r.Method, "eth_send") && strings.Contains(string(r.Params), raw) {
			n++
		}
	}
	return n
}
