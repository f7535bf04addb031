package gateway

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/fasthttp/websocket"

	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
)

// cappedLogs makes a fake whose chain's head is head answer eth_getLogs as a provider
// that caps the block range at limit does: over it, the provider's error text
// (github.com/INFURA/infura/issues/237); within it, the fakes' one log per block.
func cappedLogs(limit, head uint64) func(fakeRequest) fakeAnswer {
	block := func(v string) uint64 {
		switch v {
		case "earliest":
			return 0
		case "", "latest", "pending", "safe", "finalized":
			return head
		}
		n, _ := strconv.ParseUint(strings.TrimPrefix(v, "0x"), 16, 64)
		return n
	}
	return func(r fakeRequest) fakeAnswer {
		if r.Method != "eth_getLogs" {
			return fakeAnswer{}
		}
		var p []struct{ FromBlock, ToBlock string }
		_ = json.Unmarshal(r.Params, &p)
		if len(p) == 1 {
			from, to := block(p[0].FromBlock), block(p[0].ToBlock)
			if to >= from && to-from+1 > limit {
				return fakeAnswer{Body: `{"jsonrpc":"2.0","id":` + string(r.ID) +
					`,"error":{"code":-32602,"message":"range ` + strconv.FormatUint(to-from+1, 10) + ` exceeds limit of ` +
					strconv.FormatUint(limit, 10) + `"}}`}
			}
		}
		return fakeAnswer{}
	}
}

// referenceLogs is what a node without a cap answers to eth_getLogs over [from, to].
func referenceLogs(id string, from, to uint64) string {
	params := fmt.Sprintf(`[{"fromBlock":"0x%x","toBlock":"0x%x"}]`, from, to)
	return fakeResult(fakeRequest{Method: "eth_getLogs", ID: json.RawMessage(id), Params: json.RawMessage(params)}, "", to)
}

// eth_getLogs over 20,224 blocks from an upstream capped at 2,000 blocks, through every
// transport: the answer is the uncapped node's, byte for byte. The cap is learned from
// the provider's error text (no configuration), and the failing chunk bisected.
func TestGetLogsOverAnyRangeAllTransports(t *testing.T) {
	const head = 20223
	fake := startFakeUpstream(t, fakeRespond(cappedLogs(2000, head)))
	fake.head.Store(head)
	gw := startGateway(t, fake.args("-upstream-timeout", "60s")...) // the race detector slows the fake's 20,224 logs
	gw.waitUpstreams(t)
	waitFor(t, "the served head", func() bool { return gw.srv.nets.List()[0].Router.ServedHead() == head })
	query := func(id string) string {
		return `{"jsonrpc":"2.0","id":` + id + `,"method":"eth_getLogs","params":[{"fromBlock":"earliest","toBlock":"latest"}]}`
	}
	cases := []struct {
		name string
		send func(t *testing.T) string // the answer to query("7")
	}{
		{"POST /", func(t *testing.T) string {
			_, body := do(t, "POST", gw.URL+"/", query("7"))
			return string(body)
		}},
		{"batch", func(t *testing.T) string {
			_, body := do(t, "POST", gw.URL+"/", "["+query("7")+`,{"jsonrpc":"2.0","id":8,"method":"eth_chainId"}]`)
			var els []json.RawMessage
			if err := json.Unmarshal(body, &els); err != nil || len(els) != 2 {
				t.Fatalf("batch answer %.300s: %v", body, err)
			}
			return string(els[0])
		}},
		{"/socket2socket", func(t *testing.T) string {
			c, _, err := websocket.DefaultDialer.Dial(gw.WSURL, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.WriteMessage(websocket.TextMessage, []byte(query("7"))); err != nil {
				t.Fatal(err)
			}
			_, msg, err := c.ReadMessage()
			if err != nil {
				t.Fatal(err)
			}
			return string(msg)
		}},
	}
	want := referenceLogs("7", 0, head)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.send(t)
			if got != want {
				t.Fatalf("answer is not the uncapped node's: %d bytes, want %d; starts %.300s", len(got), len(want), got)
			}
		})
	}
	if v := gw.metric(t, "gateway_logs_learned_max_range"); v != 2000 {
		t.Fatalf("learned cap %v, want 2000", v)
	}
}

// The configuration: an upstream's kind presets its cap (alchemy: 2,000 blocks), so no
// chunk is refused; a plan's logs_max_range refuses a larger query, naming the limit,
// without an upstream call.
func TestGetLogsKindPresetAndPlanMaxRange(t *testing.T) {
	const head = 20223
	fake := startFakeUpstream(t, fakeRespond(cappedLogs(2000, head)))
	fake.head.Store(head)
	file := fmt.Sprintf(`
upstreams:
  - {name: alchemy-a, http: %q, ws: %q, kind: alchemy}
plans:
  small: {logs_max_range: 10000}
anonymous: {plan: small}
`, fake.HTTPURL, fake.WSURL)
	gw := startGateway(t, "-config", writeFile(t, t.TempDir(), "gateway.yaml", file), "-upstream-timeout", "60s")
	gw.waitUpstreams(t)
	waitFor(t, "the served head", func() bool { return gw.srv.nets.List()[0].Router.ServedHead() == head })
	cases := []struct {
		name      string
		params    string
		want      string // the whole answer; empty: an error naming the plan's limit
		wantCalls int
	}{
		{"within the plan", `[{"fromBlock":"0x0","toBlock":"0x270f"}]`, referenceLogs("1", 0, 9999), 5},
		{"over the plan", `[{"fromBlock":"0x0","toBlock":"latest"}]`, "", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake.reset()
			_, body := do(t, "POST", gw.URL+"/", `{"jsonrpc":"2.0","id":1,"method":"eth_getLogs","params":`+tc.params+`}`)
			if tc.want == "" {
				if !strings.Contains(string(body), `"code":-32005`) || !strings.Contains(string(body), "20224 blocks asked") ||
					!strings.Contains(string(body), "at most 10000 (logs_max_range)") {
					t.Fatalf("got %s; want -32005 naming the plan's limit", body)
				}
			} else if string(body) != tc.want {
				t.Fatalf("answer differs: %.300s", body)
			}
			if n := fake.count("eth_getLogs"); n != tc.wantCalls {
				t.Fatalf("%d upstream eth_getLogs calls, want %d (chunks of the kind's 2,000 blocks, none refused)", n, tc.wantCalls)
			}
		})
	}
}

// Against a real node: geth's logs of a dozen blocks, asked through the gateway split in
// chunks of two blocks (and bisected on nothing), are geth's own answer to the whole
// range byte for byte, over POST / and /socket2socket; a blockHash query goes whole; a
// range past the head gets geth's own refusal (its blocks past the served head are the
// node's to answer).
func TestGetLogsSplitEqualsGeth(t *testing.T) {
	node := testnode.Start(t, testnode.Period(0))
	emitter := node.DeployEmitter(t)
	var last uint64
	for range 12 {
		_, last = node.Emit(t, emitter)
	}
	file := fmt.Sprintf("upstreams:\n  - {name: geth, http: %q, ws: %q}\nlogs: {split_range: 2, parallel: 3}\n", node.HTTPURL, node.WSURL)
	gw := startGateway(t, "-config", writeFile(t, t.TempDir(), "gateway.yaml", file))
	gw.waitUpstreams(t)
	waitFor(t, "the served head", func() bool { return gw.srv.nets.List()[0].Router.ServedHead() >= last })
	var blk struct{ Hash string }
	if err := json.Unmarshal(node.Call(t, "eth_getBlockByNumber", fmt.Sprintf("0x%x", last), false), &blk); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, params string
		split        bool
	}{
		{"earliest to latest", fmt.Sprintf(`[{"fromBlock":"earliest","toBlock":"latest","address":%q}]`, emitter), true},
		{"every log", fmt.Sprintf(`[{"fromBlock":"0x1","toBlock":"0x%x"}]`, last), true},
		{"topics", fmt.Sprintf(`[{"fromBlock":"0x0","toBlock":"latest","topics":[%q]}]`, testnode.EmitterTopic), true},
		{"blockHash", fmt.Sprintf(`[{"blockHash":%q}]`, blk.Hash), false},
		{"past the head", fmt.Sprintf(`[{"fromBlock":"0x1","toBlock":"0x%x"}]`, last+1000), true},
		// geth refuses pending logs: so does the gateway, split or not.
		{"to pending", `[{"fromBlock":"0x1","toBlock":"pending"}]`, true},
		{"from pending", fmt.Sprintf(`[{"fromBlock":"pending","toBlock":"0x%x"}]`, last+1000), false},
		// Bounds geth refuses go to it whole and get its own refusal: 2^64-1 is past int64
		// (not "pending", which the gateway's chunks spell so), and leading zeros are not hex
		// geth reads.
		{"to 2^64-1", `[{"fromBlock":"0x1","toBlock":"0xffffffffffffffff"}]`, false},
		{"to 2^63", `[{"fromBlock":"0x1","toBlock":"0x8000000000000000"}]`, false},
		{"from leading zero", `[{"fromBlock":"0x01","toBlock":"latest"}]`, false},
		{"to leading zero", fmt.Sprintf(`[{"fromBlock":"0x1","toBlock":"0x0%x"}]`, last), false},
	}
	ws, _, err := websocket.DefaultDialer.Dial(gw.WSURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := `{"jsonrpc":"2.0","id":1,"method":"eth_getLogs","params":` + tc.params + `}`
			want := string(node.Raw(t, req))
			if !strings.Contains(want, `"result":[{`) && !strings.Contains(want, "beyond current head") &&
				!strings.Contains(want, "pending logs are not supported") && !strings.Contains(want, "invalid argument 0") {
				t.Fatalf("geth found no logs: %s", want)
			}
			before := gw.metric(t, "gateway_logs_upstream_calls_total")
			_, body := do(t, "POST", gw.URL+"/", req)
			if strings.TrimSpace(string(body)) != strings.TrimSpace(want) {
				t.Fatalf("POST /: %.300s\nwant %.300s", body, want)
			}
			if calls := gw.metric(t, "gateway_logs_upstream_calls_total") - before; tc.split != (calls > 1) {
				t.Fatalf("%v chunk calls; split %v", calls, tc.split)
			}
			if err := ws.WriteMessage(websocket.TextMessage, []byte(req)); err != nil {
				t.Fatal(err)
			}
			_, msg, err := ws.ReadMessage()
			if err != nil {
				t.Fatal(err)
			}
			if strings.TrimSpace(string(msg)) != strings.TrimSpace(want) {
				t.Fatalf("/socket2socket: %.300s\nwant %.300s", msg, want)
			}
		})
	}
}

// A reload's logs: settings apply to the networks that stay: the same query is split by
// the new split_range.
func TestGetLogsSettingsFollowReload(t *testing.T) {
	const head = 20223
	fake := startFakeUpstream(t)
	fake.head.Store(head)
	dir := t.TempDir()
	file := func(split int) string {
		return fmt.Sprintf("upstreams:\n  - {name: a, http: %q, ws: %q}\nlogs: {split_range: %d}\n", fake.HTTPURL, fake.WSURL, split)
	}
	path := writeFile(t, dir, "gateway.yaml", file(1000))
	gw := startGateway(t, "-config", path, "-cache=false", "-upstream-timeout", "60s")
	gw.waitUpstreams(t)
	cases := []struct{ split, wantCalls int }{{1000, 5}, {2500, 2}, {1000, 5}}
	for _, tc := range cases {
		writeFile(t, dir, "gateway.yaml", file(tc.split))
		if err := gw.srv.ReloadConfig(); err != nil {
			t.Fatal(err)
		}
		fake.reset()
		_, body := do(t, "POST", gw.URL+"/", `{"jsonrpc":"2.0","id":1,"method":"eth_getLogs","params":[{"fromBlock":"0x0","toBlock":"0x1387"}]}`)
		if string(body) != referenceLogs("1", 0, 4999) {
			t.Fatalf("split_range %d: answer differs: %.300s", tc.split, body)
		}
		if n := fake.count("eth_getLogs"); n != tc.wantCalls {
			t.Fatalf("split_range %d: %d upstream calls, want %d", tc.split, n, tc.wantCalls)
		}
	}
}

// A query within one chunk goes on as any call (the cache stage, one upstream call);
// when the node refuses it for a cap the gateway did not know, the splitter learns the
// cap from the text and answers in chunks after all: the client sees the uncapped
// answer, never the cap error.
func TestGetLogsSmallQueryFallsBackOnACap(t *testing.T) {
	const head = 20223
	fake := startFakeUpstream(t, fakeRespond(cappedLogs(1000, head)))
	fake.head.Store(head)
	gw := startGateway(t, fake.args("-cache=false")...)
	gw.waitUpstreams(t)
	waitFor(t, "the served head", func() bool { return gw.srv.nets.List()[0].Router.ServedHead() == head })
	calls := func() int {
		n := 0
		for _, r := range fake.requests() {
			if r.Method == "eth_getLogs" {
				n++
			}
		}
		return n
	}
	ask := func(from, to uint64) string {
		_, body := do(t, "POST", gw.URL+"/", fmt.Sprintf(
			`{"jsonrpc":"2.0","id":7,"method":"eth_getLogs","params":[{"fromBlock":"0x%x","toBlock":"0x%x"}]}`, from, to))
		return string(body)
	}
	// 500 blocks: within every cap, one call, as before the splitter.
	if got, want := ask(100, 599), referenceLogs("7", 100, 599); got != want {
		t.Fatalf("500 blocks: %.200s, want the node's answer", got)
	}
	if n := calls(); n != 1 {
		t.Fatalf("500 blocks took %d upstream calls, want 1", n)
	}
	// 5,000 blocks: one chunk of the default split range, but over the node's cap of
	// 1,000: refused once, then split at the cap the text names.
	if got, want := ask(10000, 14999), referenceLogs("7", 10000, 14999); got != want {
		t.Fatalf("5,000 blocks over a 1,000-block cap: %.200s, want the uncapped answer", got)
	}
	if n := calls() - 1; n != 1+5 {
		t.Fatalf("5,000 blocks took %d upstream calls, want 6 (the refused one, then 5 chunks)", n)
	}
	// The cap is learned: the next wide query is split at once.
	before := calls()
	if got, want := ask(1000, 2999), referenceLogs("7", 1000, 2999); got != want {
		t.Fatalf("2,000 blocks after learning: %.200s", got)
	}
	if n := calls() - before; n != 2 {
		t.Fatalf("2,000 blocks after learning the cap took %d calls, want 2", n)
	}
}
