package gateway

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
)

// wsCallCodes are the code labels a test reads of gateway_ws_calls_total.
var wsCallCodes = []string{"200", "400", "413", "429", "502", "503", "504", "other"}

// wsCalls reads gateway_ws_calls_total by code, and the duration histogram's count.
func wsCalls(t testing.TB, gw *testGateway) (map[string]float64, float64) {
	t.Helper()
	got := map[string]float64{}
	for _, code := range wsCallCodes {
		got[code] = gw.metric(t, `gateway_ws_calls_total{code="`+code+`"}`)
	}
	return got, gw.metric(t, "gateway_ws_call_duration_seconds_count")
}

// /socket2socket calls count one by one in gateway_ws_calls_total (by the status the
// same answer gets over HTTP) and in gateway_ws_call_duration_seconds: calls, batches
// (one each), refusals, upstream failures; subscription notifications do not count.
func TestSocket2SocketCallsCounted(t *testing.T) {
	for _, tc := range []struct {
		name string
		// start returns the gateway; the node's (geth --dev) or a fault a node cannot
		// make on demand (an upstream that never answers).
		start     func(t *testing.T) *testGateway
		calls     []string
		subscribe bool // then eth_subscribe newHeads, wait for notifications, unsubscribe
		want      map[string]float64
		durations float64 // calls in the histogram (eth_subscribe is not: the hub answers it)
	}{
		{
			name: "node answers, bad input, denied method, batch",
			start: func(t *testing.T) *testGateway {
				_, gw := startNodeGateway(t, nil, "-max-batch", "3")
				return gw
			},
			calls: []string{
				`{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}`,
				`{"jsonrpc":"2.0","id":2,"method":"eth_getBlockByNumber","params":["0x0",false]}`,
				`[{"jsonrpc":"2.0","id":3,"method":"eth_chainId"},{"jsonrpc":"2.0","id":4,"method":"net_version"}]`,
				`{"jsonrpc":"2.0","id":5,"method":"admin_peers"}`, // -32601 answers 200 over HTTP too
				`{"id":1,`,  // parse error: 400
				`[1,2,3,4]`, // batch over -max-batch: 413
			},
			subscribe: true,
			// 4 calls + eth_subscribe + eth_unsubscribe.
			want:      map[string]float64{"200": 6, "400": 1, "413": 1},
			durations: 7,
		},
		{
			name: "upstream never answers: each call a 504",
			start: func(t *testing.T) *testGateway {
				_, gw := startSilentGateway(t, "-upstream-timeout", "300ms")
				return gw
			},
			calls: []string{
				`{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["0x000000000000000000000000000000000000dEaD","latest"]}`,
				`{"jsonrpc":"2.0","id":2,"method":"eth_getBalance","params":["0x000000000000000000000000000000000000dEaD","latest"]}`,
				`{"jsonrpc":"2.0","id":3,"method":"eth_getBalance","params":["0x000000000000000000000000000000000000dEaD","latest"]}`,
			},
			want:      map[string]float64{"504": 3},
			durations: 3,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gw := tc.start(t)
			before, _ := wsCalls(t, gw) // a gateway's own probes must not count
			for code, v := range before {
				if v != 0 {
					t.Fatalf("before any call: code %s = %v", code, v)
				}
			}
			c := dialWS(t, gw.WSURL, nil)
			for _, req := range tc.calls {
				if ans := c.call(req); len(ans) == 0 {
					t.Fatalf("%s: no answer", req)
				}
			}
			if tc.subscribe {
				sub := decodeAnswer(t, c.call(`{"jsonrpc":"2.0","id":"s","method":"eth_subscribe","params":["newHeads"]}`))
				if sub.Error != nil || len(sub.Result) < 4 {
					t.Fatalf("subscribe: %+v", sub)
				}
				for range 3 { // geth --dev makes a block a second
					if n := decodeAnswer(t, c.next()); n.Method != "eth_subscription" {
						t.Fatalf("notification: %+v", n)
					}
				}
				if got := string(c.call(`{"jsonrpc":"2.0","id":"u","method":"eth_unsubscribe","params":[` + string(sub.Result) + `]}`)); !strings.Contains(got, `"result":true`) {
					t.Fatalf("unsubscribe: %s", got)
				}
			}
			// Counted just after the answer is queued: wait for the totals, then
			// check nothing else (notifications) counted.
			total := 0.0
			for _, v := range tc.want {
				total += v
			}
			waitFor(t, "the calls counted", func() bool {
				got, d := wsCalls(t, gw)
				sum := 0.0
				for _, v := range got {
					sum += v
				}
				return sum >= total && d >= tc.durations
			})
			got, d := wsCalls(t, gw)
			for _, code := range wsCallCodes {
				if got[code] != tc.want[code] {
					t.Errorf("gateway_ws_calls_total{code=%q} = %v, want %v (all: %v)", code, got[code], tc.want[code], got)
				}
			}
			if d != tc.durations {
				t.Errorf("gateway_ws_call_duration_seconds_count = %v, want %v", d, tc.durations)
			}
			// The latency SLO reads the 0.8192 s bucket, as of gateway_request_duration_seconds.
			var b bytes.Buffer
			gw.srv.reg.WritePrometheus(&b)
			if !strings.Contains(b.String(), `gateway_ws_call_duration_seconds_bucket{network="default",le="0.8192"}`) {
				t.Error(`no gateway_ws_call_duration_seconds_bucket{le="0.8192"}`)
			}
		})
	}
}

// With several networks, a network's websocket calls count in its own series (its
// registry view's network label): a failing network burns its own budget only.
func TestSocket2SocketCallsCountedPerNetwork(t *testing.T) {
	a, b := testnode.Start(t), testnode.Start(t, testnode.ChainID(31337))
	gw := startGateway(t, "-config", writeFile(t, t.TempDir(), "networks.yaml", twoNetworkFile(a, b, "")))
	gw.waitUpstreams(t)
	c := dialWS(t, strings.Replace(gw.WSURL, "/socket2socket", "/a/socket2socket", 1), nil)
	for i := range 3 {
		if got := decodeAnswer(t, c.call(`{"jsonrpc":"2.0","id":`+strconv.Itoa(i)+`,"method":"eth_chainId"}`)); string(got.Result) != `"0x539"` {
			t.Fatalf("network a: %+v", got)
		}
	}
	waitFor(t, "network a's calls counted", func() bool {
		return gw.metric(t, `gateway_ws_calls_total{network="a",code="200"}`) == 3 &&
			gw.metric(t, `gateway_ws_call_duration_seconds_count{network="a"}`) == 3
	})
	if n := gw.metric(t, `gateway_ws_calls_total{network="b",code="200"}`); n != 0 {
		t.Errorf("network b counted %v calls made on network a", n)
	}
}
