package upstream

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// resultFake is an HTTP node answering every call, single or in a batch, with the
// result of its method in results ("0x1" for another method).
type resultFake struct {
	url     string
	calls   atomic.Int64
	results atomic.Pointer[map[string]string]
}

func newResultFake(t *testing.T, results map[string]string) *resultFake {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &resultFake{url: "http://" + ln.Addr().String()}
	f.results.Store(&results)
	answer := func(m json.RawMessage) string {
		var req struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		_ = json.Unmarshal(m, &req)
		res, ok := (*f.results.Load())[req.Method]
		if !ok {
			res = `"0x1"`
		}
		return `{"jsonrpc":"2.0","id":` + string(req.ID) + `,"result":` + res + `}`
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		var batch []json.RawMessage
		if json.Unmarshal(body, &batch) != nil {
			_, _ = io.WriteString(w, answer(body))
			return
		}
		out := make([]string, len(batch))
		for i, m := range batch {
			out[i] = answer(m)
		}
		_, _ = io.WriteString(w, "["+strings.Join(out, ",")+"]")
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return f
}

const (
	hashA = `"0xaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"`
	hashB = `"0xbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"`
	// hashAUpper is hashA as a node may spell it: hex compares without regard to case.
	hashAUpper = `"0xAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"`
)

// integrityCases: a call, the answer of an upstream that answers something else than
// was asked, and the right answer.
var integrityCases = []struct {
	name, method, params string
	check                string // the wrong_answers label the liar is counted under
	wrong, right         string // results
}{
	{"block of another number", "eth_getBlockByNumber", `["0x10",false]`, "block_number",
		`{"number":"0x11","hash":` + hashB + `}`, `{"number":"0x10","hash":` + hashA + `}`},
	{"block of another hash", "eth_getBlockByHash", `[` + hashA + `,false]`, "block_hash",
		`{"number":"0x10","hash":` + hashB + `}`, `{"number":"0x10","hash":` + hashAUpper + `}`},
	{"receipt of another transaction", "eth_getTransactionReceipt", `[` + hashA + `]`, "receipt_hash",
		`{"transactionHash":` + hashB + `,"status":"0x1"}`, `{"transactionHash":` + hashA + `,"status":"0x1"}`},
	{"transaction of another hash", "eth_getTransactionByHash", `[` + hashA + `]`, "tx_hash",
		`{"hash":` + hashB + `,"nonce":"0x0"}`, `{"hash":` + hashA + `,"nonce":"0x0"}`},
	{"transaction in another block", "eth_getTransactionByBlockNumberAndIndex", `["0x10","0x0"]`, "block_number",
		`{"blockNumber":"0x9","hash":` + hashA + `}`, `{"blockNumber":"0x10","hash":` + hashA + `}`},
	{"transaction in a block of another hash", "eth_getTransactionByBlockHashAndIndex", `[` + hashA + `,"0x0"]`, "block_hash",
		`{"blockHash":` + hashB + `}`, `{"blockHash":` + hashA + `}`},
	{"block receipts, one of another block", "eth_getBlockReceipts", `["0x10"]`, "block_number",
		`[{"blockNumber":"0x10"},{"blockNumber":"0x11"}]`, `[{"blockNumber":"0x10"},{"blockNumber":"0x10"}]`},
	{"block receipts by hash, one of another block", "eth_getBlockReceipts", `[{"blockHash":` + hashA + `}]`, "block_hash",
		`[{"blockHash":` + hashA + `},{"blockHash":` + hashB + `}]`, `[{"blockHash":` + hashA + `}]`},
	{"logs above the range", "eth_getLogs", `[{"fromBlock":"0x10","toBlock":"0x20"}]`, "logs",
		`[{"blockNumber":"0x10"},{"blockNumber":"0x21"}]`, `[{"blockNumber":"0x10"},{"blockNumber":"0x20"}]`},
	{"logs below the range", "eth_getLogs", `[{"fromBlock":"0x10","toBlock":"latest"}]`, "logs",
		`[{"blockNumber":"0xf"}]`, `[{"blockNumber":"0x10"},{"blockNumber":"0x99"}]`},
	{"logs of another block hash", "eth_getLogs", `[{"blockHash":` + hashA + `}]`, "logs",
		`[{"blockHash":` + hashA + `},{"blockHash":` + hashB + `}]`, `[{"blockHash":` + hashAUpper + `}]`},
}

func answerWith(result string) *providerAnswer {
	return &providerAnswer{200, nil, `{"jsonrpc":"2.0","id":@ID@,"result":` + result + `}`}
}

// wrongAnswers reads u's wrong_answers series of check from the router's registry.
func wrongAnswers(r *Router, upstream, check string) string {
	var b bytes.Buffer
	r.cfg.Registry.WritePrometheus(&b)
	series := `gateway_upstream_wrong_answers_total{upstream="` + upstream + `",check="` + check + `"} `
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.HasPrefix(l, series) {
			return strings.TrimPrefix(l, series)
		}
	}
	return "absent"
}

// An upstream that answers for another block, transaction or range than asked is
// never the answer while another upstream answers right: the call goes on to it, and
// the liar is counted and charged a failure. Single calls and batches alike.
func TestWrongAnswerNeverReturned(t *testing.T) {
	for _, c := range integrityCases {
		t.Run(c.name, func(t *testing.T) {
			liar := newResultFake(t, map[string]string{c.method: c.wrong})
			honest := newResultFake(t, map[string]string{c.method: c.right})
			// The liar is picked first (its weight makes its score the best).
			r := testRouter(t, Spec{Name: "liar", HTTPURL: liar.url, Weight: 1000}, Spec{Name: "honest", HTTPURL: honest.url})
			want := `{"jsonrpc":"2.0","id":7,"result":` + c.right + `}`
			for i := range 5 {
				ans, err := r.call(nil, request(c.method, c.params), []byte("7"), time.Now().Add(5*time.Second), TransportHTTP)
				if err != nil || string(ans) != want {
					t.Fatalf("call %d: %s %v; want the honest upstream's answer %s", i, ans, err, want)
				}
			}
			b := &Batch{}
			b.Add(request(c.method, c.params), []byte("8"))
			b.Add(request("eth_chainId", `[]`), []byte("9"))
			if err := r.callBatch(b, time.Now().Add(5*time.Second), TransportHTTP); err != nil {
				t.Fatalf("batch: %v", err)
			}
			if ans, e := b.Answer(0); e != nil || string(ans) != `{"jsonrpc":"2.0","id":8,"result":`+c.right+`}` {
				t.Fatalf("batch element: %s %v; want the honest upstream's answer", ans, e)
			}
			if liar.calls.Load() == 0 {
				t.Fatal("the liar was never asked: the test proves nothing")
			}
			if n := wrongAnswers(r, "liar", c.check); n == "absent" || n == "0" {
				t.Fatalf("wrong_answers{upstream=liar,check=%s} = %s, want > 0", c.check, n)
			}
			if n := wrongAnswers(r, "honest", c.check); n != "0" {
				t.Fatalf("wrong_answers{upstream=honest,check=%s} = %s, want 0", c.check, n)
			}
		})
	}
}

// With only the liar configured the call fails with a clear error: a wrong answer is
// never an answer.
func TestWrongAnswerAloneIsAnError(t *testing.T) {
	c := integrityCases[0]
	liar := newFakeProvider(t, answerWith(c.wrong))
	r := testRouter(t, Spec{Name: "liar", HTTPURL: liar.url})
	ans, err := r.call(nil, request(c.method, c.params), []byte("7"), time.Now().Add(5*time.Second), TransportHTTP)
	if err == nil || len(ans) != 0 || !strings.Contains(err.Error(), "another block") {
		t.Fatalf("got %s %v; want the wrong-answer error", ans, err)
	}
}

// Right answers, and answers the checks cannot judge (tags, nulls from an upstream at
// the head, absent members), pass as they are.
func TestIntegrityNoFalsePositive(t *testing.T) {
	cases := []struct{ method, params, result string }{
		{"eth_getBlockByNumber", `["latest",false]`, `{"number":"0x99"}`},
		{"eth_getBlockByNumber", `["earliest",false]`, `{"number":"0x0"}`},
		{"eth_getBlockByNumber", `["0x10",false]`, `null`},
		{"eth_getBlockByHash", `[` + hashA + `,true]`, `null`},
		{"eth_getTransactionReceipt", `[` + hashA + `]`, `null`},
		{"eth_getLogs", `[{"fromBlock":"latest"}]`, `[{"blockNumber":"0x1"}]`},
		{"eth_getLogs", `[{"fromBlock":"0x10","toBlock":"0x20"}]`, `[]`},
		{"eth_getBlockReceipts", `["latest"]`, `[{"blockNumber":"0x5"}]`},
		{"eth_getBalance", `["0x01","0x10"]`, `"0x5"`},
	}
	for _, c := range cases {
		p := newFakeProvider(t, answerWith(c.result))
		r := testRouter(t, Spec{Name: "one", HTTPURL: p.url})
		want := `{"jsonrpc":"2.0","id":7,"result":` + c.result + `}`
		ans, err := r.call(nil, request(c.method, c.params), []byte("7"), time.Now().Add(5*time.Second), TransportHTTP)
		if err != nil || string(ans) != want {
			t.Fatalf("%s %s: %s %v; want %s", c.method, c.params, ans, err, want)
		}
	}
}

// A null for a block the served head says exists, from an upstream whose own head is
// below it, is missing data: the call goes on to an upstream that has the block.
func TestNullFromLaggingUpstreamRetried(t *testing.T) {
	for _, c := range []struct{ method, params, right string }{
		{"eth_getBlockByNumber", `["0x10",false]`, `{"number":"0x10"}`},
		{"eth_getTransactionByBlockNumberAndIndex", `["0x10","0x0"]`, `{"blockNumber":"0x10"}`},
		{"eth_getBlockReceipts", `["0x10"]`, `[]`},
	} {
		t.Run(c.method, func(t *testing.T) {
			lagging := newFakeProvider(t, answerWith(`null`))
			synced := newFakeProvider(t, answerWith(c.right))
			// A healthy primary a little behind is preferred to a fallback that has the
			// block (pick's healthyLimits): the lagging one is asked first.
			r := testRouter(t, Spec{Name: "lagging", HTTPURL: lagging.url},
				Spec{Name: "synced", HTTPURL: synced.url, Tier: TierFallback})
			r.observeHead(byName(r, "lagging"), header(0x5))
			byName(r, "synced").health.setHead(0x20, time.Now())
			r.served.Store(0x20)
			want := `{"jsonrpc":"2.0","id":7,"result":` + c.right + `}`
			for i := range 3 {
				ans, err := r.call(nil, request(c.method, c.params), []byte("7"), time.Now().Add(5*time.Second), TransportHTTP)
				if err != nil || string(ans) != want {
					t.Fatalf("call %d: %s %v; want the synced upstream's answer", i, ans, err)
				}
			}
			if lagging.calls.Load() == 0 {
				t.Fatal("the lagging upstream was never asked: the test proves nothing")
			}
		})
	}
}
