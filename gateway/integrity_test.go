package gateway

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
)

// liarAnswers makes a fake answer for another block than asked (by number), another
// transaction's receipt, and logs outside the asked range; everything else as the
// fakes' chain says.
func liarAnswers(r fakeRequest) fakeAnswer {
	var p []json.RawMessage
	_ = json.Unmarshal(r.Params, &p)
	switch r.Method {
	case "eth_getBlockByNumber":
		var tag string
		if len(p) > 0 {
			_ = json.Unmarshal(p[0], &tag)
		}
		if n, err := strconv.ParseUint(strings.TrimPrefix(tag, "0x"), 16, 64); err == nil && strings.HasPrefix(tag, "0x") {
			return fakeAnswer{Result: fakeBlock(n + 1)}
		}
	case "eth_getTransactionReceipt":
		return fakeAnswer{Result: `{"transactionHash":"` + fakeHash(99) + `","status":"0x1"}`}
	case "eth_getLogs":
		return fakeAnswer{Result: `[` + fakeLog(1) + `]`}
	}
	return fakeAnswer{}
}

// honestAnswers is the fakes' chain, with the receipt asked for.
func honestAnswers(r fakeRequest) fakeAnswer {
	if r.Method == "eth_getTransactionReceipt" {
		var p []string
		_ = json.Unmarshal(r.Params, &p)
		return fakeAnswer{Result: `{"transactionHash":"` + p[0] + `","status":"0x1"}`}
	}
	return fakeAnswer{}
}

// An upstream answering the wrong block, another receipt or logs outside the range is
// never returned nor cached while another upstream answers right: over POST /, the
// REST route, a batch and /socket2socket; /status counts its wrong answers.
func TestWrongAnswerNeverServedNorCached(t *testing.T) {
	liar := startFakeUpstream(t, fakeRespond(liarAnswers))
	honest := startFakeUpstream(t, fakeRespond(honestAnswers))
	file := fmt.Sprintf(`upstreams:
  - {name: liar, http: %q, ws: %q, weight: 100}
  - {name: honest, http: %q, ws: %q}
`, liar.HTTPURL, liar.WSURL, honest.HTTPURL, honest.WSURL)
	gw := startGateway(t, "-config", writeFile(t, t.TempDir(), "up.yaml", file), "-cache-depth", "2")
	gw.waitUpstreams(t)
	block5 := `{"jsonrpc":"2.0","id":1,"result":` + fakeBlock(5) + `}`
	logs := `{"jsonrpc":"2.0","id":1,"result":[` + fakeLog(4) + `,` + fakeLog(5) + `]}`
	ws := dialWS(t, gw.WSURL, nil)
	// Each try asks a receipt and a batched block not asked before: an answer the cache
	// holds reaches no upstream, and the router picks the liar for most calls, not for
	// every one (weights and latency), so each check gets several first attempts.
	for i := range 4 {
		hash := fakeHash(uint64(3 + i))
		receipt := `{"jsonrpc":"2.0","id":1,"result":{"transactionHash":"` + hash + `","status":"0x1"}}`
		for _, c := range []struct{ name, path, body, want string }{
			{"block over POST /", "/", rpcBody("eth_getBlockByNumber", `["0x5",false]`), block5},
			{"block over /blockbynumber", "/blockbynumber", `{"block":5}`, block5},
			{"receipt", "/", rpcBody("eth_getTransactionReceipt", `["`+hash+`"]`), receipt},
			{"logs", "/", rpcBody("eth_getLogs", `[{"fromBlock":"0x4","toBlock":"0x5"}]`), logs},
		} {
			code, xc, body := getCached(t, "POST", gw.URL+c.path, c.body)
			if code != 200 || body != c.want {
				t.Fatalf("%s, try %d (X-Cache %s): %d %s\nwant %s", c.name, i, xc, code, body, c.want)
			}
			if c.path == "/" {
				if got := string(ws.call(c.body)); got != c.want {
					t.Fatalf("%s over /socket2socket, try %d: %s\nwant %s", c.name, i, got, c.want)
				}
			}
		}
		batch := `[` + rpcBody("eth_getBlockByNumber", fmt.Sprintf(`["0x%x",false]`, 6+i)) + `,` + rpcBody("eth_chainId", `[]`) + `]`
		if _, _, body := getCached(t, "POST", gw.URL+"/", batch); !strings.Contains(body, fakeBlock(uint64(6+i))) {
			t.Fatalf("batch, try %d: %s\nwant block %d", i, body, 6+i)
		}
	}
	if _, xc, body := getCached(t, "POST", gw.URL+"/blockbynumber", `{"block":5}`); xc != "HIT" || body != block5 {
		t.Fatalf("block 5 again: X-Cache %s %s; want the right block from the cache", xc, body)
	}
	_, page := do(t, "GET", gw.AdminURL+"/status", "")
	var st struct {
		Upstreams []struct {
			Name         string
			WrongAnswers map[string]uint64 `json:"wrong_answers"`
		}
	}
	if err := json.Unmarshal(page, &st); err != nil {
		t.Fatal(err)
	}
	for _, u := range st.Upstreams {
		switch {
		case u.Name == "liar" && (u.WrongAnswers["block_number"] == 0 || u.WrongAnswers["receipt_hash"] == 0 || u.WrongAnswers["logs"] == 0):
			t.Fatalf("/status: the liar's wrong answers %v; want block_number, receipt_hash and logs counted\n%s", u.WrongAnswers, page)
		case u.Name == "honest" && len(u.WrongAnswers) != 0:
			t.Fatalf("/status: the honest upstream has wrong answers %v", u.WrongAnswers)
		}
	}
	if v := gw.metric(t, `gateway_upstream_wrong_answers_total{upstream="liar",check="block_number"}`); v == 0 {
		t.Fatal("gateway_upstream_wrong_answers_total{upstream=liar,check=block_number} is 0")
	}
}

// Real geth answers pass every check unchanged: blocks, headers, transactions,
// receipts and logs by number, by hash and by range, each answered as the node
// answers it, and no wrong answer counted.
func TestIntegrityPassesRealNodeAnswers(t *testing.T) {
	node := testnode.Start(t, testnode.Period(0))
	gw := startGateway(t, "-upstream-http", node.HTTPURL, "-upstream-ws", node.WSURL, "-cache=false")
	gw.waitUpstreams(t)
	emitter := node.DeployEmitter(t)
	tx, b := node.Emit(t, emitter)
	node.SendTx(t)
	waitHead(t, gw, b+1)
	num := testnode.Quantity(b)
	hash := node.BlockHash(t, b)
	calls := []struct{ method, params string }{
		{"eth_getBlockByNumber", `["` + num + `",false]`},
		{"eth_getBlockByNumber", `["` + num + `",true]`},
		{"eth_getBlockByNumber", `["earliest",false]`},
		{"eth_getBlockByHash", `["` + hash + `",true]`},
		{"eth_getBlockByHash", `["` + strings.ToUpper(hash[:2]) + hash[2:] + `",false]`},
		{"eth_getTransactionByHash", `["` + tx + `"]`},
		{"eth_getTransactionReceipt", `["` + tx + `"]`},
		{"eth_getTransactionByBlockNumberAndIndex", `["` + num + `","0x0"]`},
		{"eth_getTransactionByBlockHashAndIndex", `["` + hash + `","0x0"]`},
		{"eth_getBlockReceipts", `["` + num + `"]`},
		{"eth_getBlockReceipts", `["` + hash + `"]`},
		{"eth_getLogs", `[{"fromBlock":"` + testnode.Quantity(b-1) + `","toBlock":"` + num + `"}]`},
		{"eth_getLogs", `[{"fromBlock":"` + num + `","toBlock":"` + num + `","address":"` + emitter + `"}]`},
		{"eth_getLogs", `[{"blockHash":"` + hash + `"}]`},
		{"eth_getLogs", `[{"fromBlock":"0x0","toBlock":"latest"}]`},
	}
	for _, c := range calls {
		body := rpcBody(c.method, c.params)
		want := string(node.Raw(t, body))
		code, _, got := post(t, gw.URL+"/", body, nil)
		if code != 200 || got != want {
			t.Fatalf("%s %s: %d %.300s\nnode: %.300s", c.method, c.params, code, got, want)
		}
		if c.method != "eth_getLogs" && strings.Contains(got, `"result":null`) {
			t.Fatalf("%s %s: null: the test proves nothing", c.method, c.params)
		}
		if c.method == "eth_getLogs" && strings.Contains(got, `"result":[]`) {
			t.Fatalf("%s %s: no logs: the test proves nothing", c.method, c.params)
		}
	}
	for _, check := range []string{"block_number", "block_hash", "tx_hash", "receipt_hash", "logs"} {
		if v := gw.metric(t, `gateway_upstream_wrong_answers_total{upstream="default",check="`+check+`"}`); v != 0 {
			t.Fatalf("wrong_answers{check=%s} = %v against real geth", check, v)
		}
	}
}

// Consensus 2 of 3 with one liar, configured in the file: POST /, a batch and
// /socket2socket get the majority's answer; the liar is counted and its weight
// lowered on /status. A network asking 2 of 2 that disagree answers -32000.
func TestConsensusThroughTheGateway(t *testing.T) {
	balance := func(v string) func(fakeRequest) fakeAnswer {
		return func(r fakeRequest) fakeAnswer {
			if r.Method == "eth_getBalance" {
				return fakeAnswer{Result: v}
			}
			return fakeAnswer{}
		}
	}
	a, b := startFakeUpstream(t, fakeRespond(balance(`"0x1"`))), startFakeUpstream(t, fakeRespond(balance(`"0x1"`)))
	liar := startFakeUpstream(t, fakeRespond(balance(`"0x2"`)))
	file := fmt.Sprintf(`networks:
  - name: three
    chain_id: 1
    default: true
    upstreams:
      - {name: a, http: %q, ws: %q}
      - {name: b, http: %q, ws: %q}
      - {name: liar, http: %q, ws: %q}
    consensus: {methods: [eth_getBalance], upstreams: 3, agree: 2, timeout: 5s}
  - name: two
    chain_id: 1
    upstreams:
      - {name: a, http: %q}
      - {name: liar, http: %q}
    consensus: {methods: [eth_getBalance], upstreams: 2, agree: 2}
`, a.HTTPURL, a.WSURL, b.HTTPURL, b.WSURL, liar.HTTPURL, liar.WSURL, a.HTTPURL, liar.HTTPURL)
	gw := startGateway(t, "-config", writeFile(t, t.TempDir(), "consensus.yaml", file), "-cache=false")
	gw.waitUpstreams(t)
	call := rpcBody("eth_getBalance", `["0x0000000000000000000000000000000000000001","latest"]`)
	want := `{"jsonrpc":"2.0","id":1,"result":"0x1"}`
	ws := dialWS(t, gw.WSURL, nil)
	for i := range 5 {
		if code, _, body := post(t, gw.URL+"/", call, nil); code != 200 || body != want {
			t.Fatalf("POST / %d: %d %s; want the majority's answer", i, code, body)
		}
		if got := string(ws.call(call)); got != want {
			t.Fatalf("/socket2socket %d: %s; want the majority's answer", i, got)
		}
		if _, _, body := post(t, gw.URL+"/", `[`+call+`]`, nil); body != `[`+want+`]` {
			t.Fatalf("batch %d: %s; want the majority's answer", i, body)
		}
	}
	waitFor(t, "the liar's weight lowered on /status", func() bool {
		_, page := do(t, "GET", gw.AdminURL+"/status", "")
		var st struct {
			Networks []struct {
				Name      string
				Upstreams []struct {
					Name          string
					WrongAnswers  map[string]uint64 `json:"wrong_answers"`
					WeightLowered bool              `json:"weight_lowered"`
				}
			}
		}
		if err := json.Unmarshal(page, &st); err != nil {
			t.Fatal(err)
		}
		for _, n := range st.Networks {
			for _, u := range n.Upstreams {
				if n.Name == "three" && u.Name == "liar" {
					return u.WeightLowered && u.WrongAnswers["consensus"] >= 10
				}
			}
		}
		return false
	})
	code, _, body := post(t, gw.URL+"/two/", call, nil)
	if !strings.Contains(body, `"code":-32000`) || !strings.Contains(body, "upstreams disagree") {
		t.Fatalf("2 of 2 disagreeing: %d %s; want -32000 upstreams disagree", code, body)
	}
}
