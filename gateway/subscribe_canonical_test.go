package gateway

import (
	"strings"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/internal/rpcspy"
	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
)

// Clients that spell one subscription differently (JSON escapes, a logs filter's keys in
// another case, hex in upper case) share one upstream subscription and one gateway id:
// counted at the node's door.
func TestEscapedSubscriptionsShareOneUpstream(t *testing.T) {
	node := testnode.Start(t)
	spy := rpcspy.Start(t, node.HTTPURL, node.WSURL)
	gw := startGateway(t, "-upstream-http", spy.URL, "-upstream-ws", spy.WSURL, "-cache=false")
	gw.waitUpstreams(t)
	const addr = "0x00000000000000000000000000000000000abcde"
	cases := []struct {
		name      string
		spellings []string
	}{
		{"newHeads", []string{`["newHeads"]`, `["new\u0048eads"]`, `["\u006eew\u0048\u0065ads"]`}},
		{"logs", []string{
			`["logs",{"address":"` + addr + `"}]`,
			`["l\u006fgs",{"ADDRESS":"` + strings.ToUpper(addr) + `"}]`,
			`["logs",{"addr\u0065ss":"0x` + strings.ToUpper(addr[2:]) + `","extra":1}]`,
		}},
	}
	for _, tc := range cases {
		t0 := time.Now()
		var gwID string
		for i, p := range tc.spellings {
			c := dialWS(t, gw.WSURL, nil)
			a := decodeAnswer(t, c.call(`{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":`+p+`}`))
			if a.Error != nil {
				t.Fatalf("%s spelled %s: %+v", tc.name, p, a.Error)
			}
			if i == 0 {
				gwID = string(a.Result)
			} else if string(a.Result) != gwID {
				t.Errorf("%s spelled %s: subscription %s, want the shared %s", tc.name, p, a.Result, gwID)
			}
		}
		n := 0
		for _, c := range spy.CallsSince(t0) {
			if c.Transport == rpcspy.WS && c.Method == "eth_subscribe" {
				n++
			}
		}
		// newHeads may share the head tracker's subscription (0 new); never one per spelling.
		if n > 1 {
			t.Errorf("%s: %d upstream eth_subscribe for %d spellings of one subscription, want at most 1",
				tc.name, n, len(tc.spellings))
		}
	}
}
