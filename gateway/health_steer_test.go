package gateway

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// Issue 19, F1: what a client asks for is never held against an upstream. Answers
// over the byte budget, execution that takes as long as the client makes it (answered
// slowly, or past the deadline), and a batch whose answer is too large: none of them
// bans a primary or marks it slow, and ordinary reads sent right after all land on
// the primaries. Bans here last 30 s, so one would still stand for the reads.
func TestClientCannotBanUpstreams(t *testing.T) {
	const budget = 64 << 10
	big := `"0x` + strings.Repeat("ab", budget) + `"` // twice the budget
	third := `"0x` + strings.Repeat("cd", budget/5) + `"`
	respond := func(r fakeRequest) fakeAnswer {
		switch r.Method {
		case "eth_getLogs":
			return fakeAnswer{Result: `[` + big + `]`}
		case "eth_call":
			return fakeAnswer{Result: third} // under the budget; three of them are not
		case "eth_estimateGas":
			if strings.Contains(string(r.Params), `"0xdead"`) {
				return fakeAnswer{Stall: true} // past the deadline
			}
			// The node's execution time: the client's choice, well past -slow-min.
			time.Sleep(1200 * time.Millisecond)
			return fakeAnswer{Result: `"0x5208"`}
		}
		return fakeAnswer{}
	}
	overBudget := func(_ int, ans []byte) bool { return strings.Contains(string(ans), "-32005") }
	isError := func(_ int, ans []byte) bool { return strings.Contains(string(ans), `"error"`) }
	answered := func(code int, ans []byte) bool { return code == 200 && strings.Contains(string(ans), `"0x5208"`) }
	type call struct {
		body  string
		check func(code int, ans []byte) bool
	}
	repeat := func(n int, format string, check func(int, []byte) bool) []call {
		var out []call
		for i := range n {
			out = append(out, call{fmt.Sprintf(format, i), check})
		}
		return out
	}
	getLogs := repeat(10, `{"jsonrpc":"2.0","id":%d,"method":"eth_getLogs","params":[{"fromBlock":"0x1","toBlock":"0x10"}]}`, overBudget)
	cases := []struct {
		name  string
		calls []call
		ws    bool // the calls over /socket2socket (the upstreams' Mux), else POST /
	}{
		{"eth_getLogs answers over the byte budget", getLogs, false},
		{"eth_getLogs answers over the byte budget, over websockets", getLogs, true},
		{"slow eth_estimateGas", repeat(4, `{"jsonrpc":"2.0","id":%d,"method":"eth_estimateGas","params":[{"to":"0x01"}]}`, answered), false},
		{"eth_estimateGas past the deadline", repeat(4,
			`{"jsonrpc":"2.0","id":%d,"method":"eth_estimateGas","params":[{"to":"0xdead"}]}`, isError), false},
		{"batches of eth_call answering over the budget", repeat(10, `[`+
			`{"jsonrpc":"2.0","id":%d,"method":"eth_call","params":[{"to":"0x01"},"latest"]},`+
			`{"jsonrpc":"2.0","id":2,"method":"eth_call","params":[{"to":"0x02"},"latest"]},`+
			`{"jsonrpc":"2.0","id":3,"method":"eth_call","params":[{"to":"0x03"},"latest"]}]`, overBudget), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, b, c := startFakeUpstream(t, fakeRespond(respond)), startFakeUpstream(t, fakeRespond(respond)),
				startFakeUpstream(t, fakeRespond(respond))
			gw := multiGateway(t, []upstreamDef{{"a", a, "primary", tc.ws}, {"b", b, "primary", tc.ws}, {"c", c, "fallback", tc.ws}},
				"-max-response-body", fmt.Sprint(budget), "-slow-min", "400ms", "-upstream-timeout", "3s",
				"-ban-min", "30s", "-ban-max", "60s")
			if tc.ws {
				ws := dialWS(t, gw.WSURL, nil)
				for _, cl := range tc.calls {
					if ans := ws.call(cl.body); !cl.check(200, ans) {
						t.Errorf("%s: %.200s", cl.body, ans)
					}
				}
			}
			var wg sync.WaitGroup
			for _, cl := range tc.calls {
				if tc.ws {
					break
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					code, ans, err := tryDo("POST", gw.URL+"/", cl.body)
					if err != nil || !cl.check(code, ans) {
						t.Errorf("%s: %d %.200s %v", cl.body, code, ans, err)
					}
				}()
			}
			wg.Wait()
			// Reviews (every 50 ms) judge latency: let several run. The idle fallback is
			// probed from the review loop every probe interval, so its probes count
			// reviews (unless it is banned itself: then the checks below say so).
			probes := c.count("eth_blockNumber")
			waitFor(t, "three more probes of the fallback", func() bool {
				return c.count("eth_blockNumber") >= probes+3 || gw.state(t, "c").State == "banned"
			})

			for _, f := range []*fakeUpstream{a, b, c} {
				f.reset()
			}
			for i := range 40 {
				code, ans := do(t, "POST", gw.URL+"/",
					fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"eth_getBalance","params":["0x01","latest"]}`, i))
				if code != 200 || !strings.Contains(string(ans), `"result"`) {
					t.Fatalf("read %d: %d %s", i, code, ans)
				}
			}
			onA, onB, onC := a.count("eth_getBalance"), b.count("eth_getBalance"), c.count("eth_getBalance")
			if onA+onB != 40 || onC != 0 {
				t.Errorf("40 reads after the hostile calls: a %d, b %d, fallback %d; want all on the primaries", onA, onB, onC)
			}
			for _, name := range []string{"a", "b", "c"} {
				if st := gw.state(t, name); st.State != "healthy" || st.Bans != 0 {
					t.Errorf("upstream %s: %s (%s), %d bans, last error %q: a client's calls marked it",
						name, st.State, st.Reason, st.Bans, st.LastError)
				}
			}
		})
	}
}

// Issue 19, F7: only methods on the gateway's list of reads are retried or hedged.
// Bundles, private and conditional transactions and any method the gateway does not
// know reach one upstream once, single or in a batch, over HTTP and websockets, even
// when that attempt fails or is slow.
func TestUnknownMethodsSentOnce(t *testing.T) {
	methods := []string{"eth_sendPrivateTransaction", "eth_sendBundle", "eth_sendRawTransactionConditional",
		"mev_sendBundle", "acme_placeOrder"}
	isTested := func(m string) bool {
		for _, x := range methods {
			if m == x {
				return true
			}
		}
		return false
	}
	// Slow (past the hedge wait) and then failed: an HTTP 500 without a JSON-RPC body,
	// or over a websocket an answer cut short (malformed JSON-RPC).
	respond := func(r fakeRequest) fakeAnswer {
		if !isTested(r.Method) {
			return fakeAnswer{}
		}
		time.Sleep(150 * time.Millisecond) // the upstream's slowness that a hedge would race
		if r.Transport == "ws" {
			return fakeAnswer{Body: `{"jsonrpc":"2.0","id":` + string(r.ID) + `,"result":`}
		}
		return fakeAnswer{Status: 500, Body: "boom"}
	}
	a, b := startFakeUpstream(t, fakeRespond(respond)), startFakeUpstream(t, fakeRespond(respond))
	gw := multiGateway(t, []upstreamDef{{"a", a, "primary", true}, {"b", b, "primary", true}},
		"-retries", "3", "-hedge-quantile", "0.5", "-hedge-max-extra", "1", "-ban-failures", "1000",
		"-ban-min-requests", "100000", "-upstream-timeout", "5s")
	ws := dialWS(t, gw.WSURL, nil)

	for _, m := range methods {
		single := `{"jsonrpc":"2.0","id":7,"method":"` + m + `","params":[{"tx":"0x02"}]}`
		batch := `[` + single + `,{"jsonrpc":"2.0","id":8,"method":"eth_chainId"}]`
		for _, tc := range []struct {
			name string
			send func() []byte
		}{
			{"http single", func() []byte { _, ans := do(t, "POST", gw.URL+"/", single); return ans }},
			{"http batch", func() []byte { _, ans := do(t, "POST", gw.URL+"/", batch); return ans }},
			{"ws single", func() []byte { return ws.call(single) }},
			{"ws batch", func() []byte { return ws.call(batch) }},
		} {
			a.reset()
			b.reset()
			ans := tc.send()
			if !strings.Contains(string(ans), `"error"`) {
				t.Errorf("%s %s: the failure is not passed on: %s", m, tc.name, ans)
			}
			if got := a.count(m) + b.count(m); got != 1 {
				t.Errorf("%s %s: reached the upstreams %d times (a %d, b %d), want exactly once",
					m, tc.name, got, a.count(m), b.count(m))
			}
		}
	}
}
