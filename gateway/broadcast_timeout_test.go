package gateway

import (
	"fmt"
	"strings"
	"testing"
)

// TestBroadcastTimeoutOverUnavailable: when no target accepts a send, one that timed out
// is what the client hears (504, "upstream timed out": it may have the transaction,
// retry), not another target's refused connection. Before, the first failure to come
// back won: a target down at once answered 502 "upstream unavailable" for a send that
// reached the node, which a resend then found "already known".
func TestBroadcastTimeoutOverUnavailable(t *testing.T) {
	raw, _ := rawTx()
	stall := func(fakeRequest) fakeAnswer { return fakeAnswer{Stall: true} }
	broken := func(fakeRequest) fakeAnswer { return fakeAnswer{Status: 500, Body: "boom"} }
	a, b, relay := startFakeUpstream(t, sendAnswer(stall)), startFakeUpstream(t, sendAnswer(broken)), startFakeUpstream(t, sendAnswer(broken))
	gw := startGateway(t, append([]string{"-config", broadcastConfig(t, a, b, relay), "-upstream-timeout", "1s"}, fastHealth...)...)
	gw.waitUpstreams(t)
	code, body := do(t, "POST", gw.URL+"/", fmt.Sprintf(`{"jsonrpc":"2.0","id":3,"method":"eth_sendRawTransaction","params":["%s"]}`, raw))
	if code != 504 || !strings.Contains(string(body), "upstream timed out") || !strings.Contains(string(body), `"id":3`) {
		t.Fatalf("answer %d %s, want 504 upstream timed out with the client's id", code, body)
	}
}
