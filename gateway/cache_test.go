package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
)

// get returns status, X-Cache and body.
func getCached(t testing.TB, method, url, body string) (int, string, string) {
	t.Helper()
	var req *http.Request
	var err error
	if body == "" {
		req, err = http.NewRequest(method, url, nil)
	} else {
		req, err = http.NewRequest(method, url, strings.NewReader(body))
	}
	if err != nil {
		t.Fatal(err)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sb strings.Builder
	if _, err := fmt.Fprint(&sb, readAll(t, resp)); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("X-Cache"), sb.String()
}

func readAll(t testing.TB, resp *http.Response) string {
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String()
		}
	}
}

// waitHead waits until the gateway has seen head n.
func waitHead(t testing.TB, gw *testGateway, n uint64) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !gw.srv.defaultNetwork().Heads.Seen() || gw.srv.defaultNetwork().Heads.Number() < n {
		if time.Now().After(deadline) {
			t.Fatalf("gateway did not see head %d within 60s (at %d)", n, gw.srv.defaultNetwork().Heads.Number())
		}
		time.Sleep(5 * time.Millisecond) // waiting on the node's block production
	}
}

func TestCacheRulesAgainstNode(t *testing.T) {
	node := testnode.Start(t, testnode.Period(0))
	gw := startGateway(t, "-upstream-http", node.HTTPURL, "-upstream-ws", node.WSURL, "-cache-depth", "2")
	gw.waitUpstreams(t)
	_, b1 := node.SendTx(t)
	waitHead(t, gw, 1)

	t.Run("a repeat between heads is a hit, a new head invalidates", func(t *testing.T) {
		// Each check counts only when the gateway and the node were at one head that did
		// not move while it ran: geth --dev at period 0 now and then seals an empty block
		// after a transaction's (node_restart_test.go), and a head moving under a check
		// rightly makes a miss or another number. Such a check is made again, 5 at most.
		heads := gw.srv.defaultNetwork().Heads
		moved := func(h uint64) bool { return heads.Number() != h || node.BlockNumber(t) != h }
		for _, prefix := range []string{"", "/ws"} {
			for try := 1; ; try++ {
				h := heads.Number()
				_, xc, first := getCached(t, "GET", gw.URL+prefix+"/blocknumber", "")
				want := string(node.Raw(t, rpcBody("eth_blockNumber", "[]")))
				_, xcAgain, again := getCached(t, "GET", gw.URL+prefix+"/blocknumber", "")
				if moved(h) && try < 5 {
					continue
				}
				if first != want {
					t.Fatalf("%s: %s, node says %s (X-Cache %s)", prefix, first, want, xc)
				}
				if xcAgain != "HIT" || again != first {
					t.Fatalf("%s: repeat: X-Cache %q %s", prefix, xcAgain, again)
				}
				break
			}
		}
		for try := 1; ; try++ { // each try on a new head of its own transaction
			before := heads.Number()
			node.SendTx(t)
			waitHead(t, gw, before+1)
			h := heads.Number()
			_, xc, after := getCached(t, "GET", gw.URL+"/blocknumber", "")
			want := string(node.Raw(t, rpcBody("eth_blockNumber", "[]")))
			if moved(h) && try < 5 {
				continue
			}
			if xc != "MISS" || after != want {
				t.Fatalf("after a new head: X-Cache %q %s, node says %s", xc, after, want)
			}
			break
		}
	})

	t.Run("pending, errors, null and writes are never cached", func(t *testing.T) {
		never := []struct{ method, path, body string }{
			{"POST", "/blockbynumber", `{"block":"pending"}`},
			{"POST", "/blockbynumber", `{"block":"0xfffff"}`},                                             // not produced yet: null
			{"POST", "/", rpcBody("eth_getBlockByNumber", `["0x01",false]`)},                              // the node's error
			{"POST", "/", rpcBody("eth_getTransactionByHash", `["0x`+strings.Repeat("0", 64)+`"]`)},       // unknown: null
			{"POST", "/", `{"jsonrpc":"2.0","id":5,"method":"eth_sendRawTransaction","params":["0x00"]}`}, // a write
		}
		for _, c := range never {
			for i := range 3 {
				_, xc, body := getCached(t, c.method, gw.URL+c.path, c.body)
				if xc != "MISS" {
					t.Fatalf("%s %s try %d: X-Cache %q: %s", c.path, c.body, i, xc, body)
				}
			}
		}
		// Two identical sends are two transactions.
		var accounts []string
		_ = json.Unmarshal(node.Call(t, "eth_accounts"), &accounts)
		send := `{"jsonrpc":"2.0","id":1,"method":"eth_sendTransaction","params":[{"from":"` + accounts[0] + `","to":"0x000000000000000000000000000000000000dEaD","value":"0x2"}]}`
		_, _, h1 := getCached(t, "POST", gw.URL+"/", send)
		_, _, h2 := getCached(t, "POST", gw.URL+"/", send)
		if h1 == h2 || !strings.Contains(h1, `"result":"0x`) {
			t.Fatalf("eth_sendTransaction twice: %s and %s", h1, h2)
		}
	})

	t.Run("a deep block is immutable and survives new heads", func(t *testing.T) {
		for range 3 {
			node.SendTx(t)
		}
		waitHead(t, gw, 4)
		n, _ := strconv.ParseUint(strings.TrimPrefix(b1, "0x"), 16, 64)
		body := fmt.Sprintf(`{"block":%d,"txdetails":true}`, n)
		want := string(node.Raw(t, rpcBody("eth_getBlockByNumber", `["`+b1+`",true]`)))
		_, _, first := getCached(t, "POST", gw.URL+"/blockbynumber", body)
		before := gw.srv.defaultNetwork().Heads.Number()
		node.SendTx(t)
		waitHead(t, gw, before+1)
		_, xc, again := getCached(t, "POST", gw.URL+"/blockbynumber", body)
		if first != want || again != want || xc != "HIT" {
			t.Fatalf("deep block: X-Cache %q\nfirst %.100s\nagain %.100s\nnode  %.100s", xc, first, again, want)
		}
		// The same block through JSON-RPC gets the caller's id spliced in.
		_, xc, rpc := getCached(t, "POST", gw.URL+"/", `{"jsonrpc":"2.0","id":"mine","method":"eth_getBlockByNumber","params":["`+b1+`",true]}`)
		if !strings.HasPrefix(rpc, `{"jsonrpc":"2.0","id":"mine",`) || strings.TrimPrefix(rpc, `{"jsonrpc":"2.0","id":"mine",`) != strings.TrimPrefix(want, `{"jsonrpc":"2.0","id":1,`) {
			t.Fatalf("rpc (X-Cache %s): %.120s", xc, rpc)
		}
	})
}

// With a block a second, concurrent readers never get a cached head older than the
// head the gateway had seen when they asked.
func TestLatestNeverOlderThanSeenHead(t *testing.T) {
	node := testnode.Start(t, testnode.Period(1))
	gw := startGateway(t, "-upstream-http", node.HTTPURL, "-upstream-ws", node.WSURL)
	waitHead(t, gw, 1)
	stopAt := gw.srv.defaultNetwork().Heads.Number() + 3 // span at least three new heads
	var wg sync.WaitGroup
	var checked, hits atomic.Int64
	errs := make(chan string, 100)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; gw.srv.defaultNetwork().Heads.Number() < stopAt && i < 100000; i++ {
				seen := gw.srv.defaultNetwork().Heads.Number()
				path, body := "/blocknumber", ""
				if w%2 == 1 {
					path, body = "/blockbynumber", `{"block":"latest"}`
				}
				method := "GET"
				if body != "" {
					method = "POST"
				}
				_, xc, got := getCached(t, method, gw.URL+path, body)
				var resp struct {
					Result json.RawMessage `json:"result"`
				}
				if err := json.Unmarshal([]byte(got), &resp); err != nil {
					errs <- got
					return
				}
				num := string(resp.Result)
				if path != "/blocknumber" {
					var blk struct{ Number string }
					_ = json.Unmarshal(resp.Result, &blk)
					num = `"` + blk.Number + `"`
				}
				n, err := strconv.ParseUint(strings.Trim(num, `"0x`), 16, 64)
				if err != nil && strings.Trim(num, `"`) != "0x0" {
					errs <- "unparsable " + got
					return
				}
				if n < seen {
					errs <- fmt.Sprintf("%s answered block %d (X-Cache %s) after the gateway had seen head %d", path, n, xc, seen)
				}
				checked.Add(1)
				if xc == "HIT" {
					hits.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if hits.Load() == 0 {
		t.Fatalf("%d checks and no cache hit: the test did not exercise the cache", checked.Load())
	}
	t.Logf("%d answers checked across three heads, %d cache hits", checked.Load(), hits.Load())
}

// Identical concurrent calls share one upstream request; a write is never shared.
func TestCoalescing(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	arrived := make(chan struct{}, 100)
	fake := startFakeUpstream(t, fakeRespond(func(r fakeRequest) fakeAnswer {
		switch r.Method {
		case "eth_gasPrice":
			arrived <- struct{}{}
			<-release
			return fakeAnswer{Result: `"0x3b9aca00"`}
		case "eth_sendRawTransaction":
			return fakeAnswer{Result: `"0xabc"`}
		}
		return fakeAnswer{}
	}))
	// After the fake's: cleanups run last first, and the fake's shutdown waits for the
	// calls it holds (a failure here hung CI for 17 minutes).
	t.Cleanup(func() { once.Do(func() { close(release) }) }) // never leave the fake blocked
	// The flight lasts as long as the leader's call: with the default 10 s upstream
	// timeout a loaded CI machine spawning the followers saw it end first, and the late
	// ones start a second flight.
	gw := startGateway(t, "-upstream-http", fake.HTTPURL, "-upstream-ws", "off", "-upstream-timeout", "2m")
	gw.waitUpstreams(t) // a first head arriving mid-test would start a new epoch: a second flight
	const n = 50
	var wg sync.WaitGroup
	results := make(chan string, n)
	wg.Add(1)
	get := func() {
		defer wg.Done()
		_, b, err := tryDo("GET", gw.URL+"/gasprice", "")
		if err != nil {
			results <- err.Error()
			return
		}
		results <- string(b)
	}
	go get() // the leader
	<-arrived
	const coalesced = `gateway_cache_requests_total{result="coalesced"}`
	for range n - 1 {
		wg.Add(1)
		go get()
	}
	waitFor(t, "every follower waiting on the flight", func() bool { return gw.metric(t, coalesced) >= n-1 })
	once.Do(func() { close(release) })
	wg.Wait()
	close(results)
	for b := range results {
		if b != `{"jsonrpc":"2.0","id":1,"result":"0x3b9aca00"}` {
			t.Fatalf("answer %s", b)
		}
	}
	if got := fake.count("eth_gasPrice"); got != 1 {
		t.Fatalf("%d concurrent /gasprice made %d upstream calls, want 1", n, got)
	}
	for range 5 {
		getCached(t, "POST", gw.URL+"/", `{"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":["0x01"]}`)
	}
	if got := fake.count("eth_sendRawTransaction"); got != 5 {
		t.Fatalf("5 eth_sendRawTransaction reached the upstream %d times", got)
	}
}

func TestCacheDisabled(t *testing.T) {
	fake := startFakeUpstream(t)
	gw := startGateway(t, "-upstream-http", fake.HTTPURL, "-upstream-ws", "off", "-cache=false")
	before := fake.count("eth_gasPrice")
	for range 3 {
		if _, xc, _ := getCached(t, "GET", gw.URL+"/gasprice", ""); xc != "" {
			t.Fatalf("X-Cache %q with the cache off", xc)
		}
	}
	if got := fake.count("eth_gasPrice") - before; got != 3 {
		t.Fatalf("3 requests, %d upstream calls", got)
	}
}

// Batch elements go through the cache one by one: a cacheable element is stored and
// served to later batches and single calls with their own ids; a write never is.
func TestBatchElementsThroughTheCache(t *testing.T) {
	fake := startFakeUpstream(t)
	gw := startGateway(t, "-upstream-http", fake.HTTPURL, "-upstream-ws", "off")
	hash := "0x" + strings.Repeat("ab", 32)
	batch := func(a, b string) string {
		return `[{"jsonrpc":"2.0","id":` + a + `,"method":"eth_getBlockByHash","params":["` + hash + `",false]},` +
			`{"jsonrpc":"2.0","id":` + b + `,"method":"eth_sendRawTransaction","params":["0x01"]}]`
	}
	for _, ids := range [][2]string{{`"a"`, `"b"`}, {`1`, `2`}} {
		code, body := do(t, "POST", gw.URL+"/", batch(ids[0], ids[1]))
		want := `[{"jsonrpc":"2.0","id":` + ids[0] + `,"result":"0x1"},{"jsonrpc":"2.0","id":` + ids[1] + `,"result":"0x1"}]`
		if code != 200 || string(body) != want {
			t.Fatalf("batch: %d %s, want %s", code, body, want)
		}
	}
	_, body := do(t, "POST", gw.URL+"/", `{"jsonrpc":"2.0","id":"z","method":"eth_getBlockByHash","params":["`+hash+`",false]}`)
	if string(body) != `{"jsonrpc":"2.0","id":"z","result":"0x1"}` {
		t.Fatalf("single call after the batches: %s", body)
	}
	if got := fake.count("eth_getBlockByHash"); got != 1 {
		t.Fatalf("eth_getBlockByHash reached the upstream %d times, want 1", got)
	}
	if got := fake.count("eth_sendRawTransaction"); got != 2 {
		t.Fatalf("eth_sendRawTransaction reached the upstream %d times, want 2", got)
	}
}

// A batch's answer is bounded in bytes like an upstream's (-max-response-body), also
// when every element is a cache hit and no upstream bound applies: past the limit each
// element gets an error with its id, in request order, and the gateway keeps serving.
func TestBatchAnswerBoundedInBytes(t *testing.T) {
	fake := startFakeUpstream(t)
	fake.head.Store(5000)
	const limit = 4096
	gw := startGateway(t, "-upstream-http", fake.HTTPURL, "-upstream-ws", "off", "-max-response-body", strconv.Itoa(limit))
	waitFor(t, "the head", func() bool { return gw.srv.defaultNetwork().Heads.Number() >= 5000 })
	call := func(id, n int) string {
		return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"eth_getBlockByNumber","params":["0x%x",false]}`, id, n)
	}
	var els []string
	for n := 1; n <= 40; n++ {
		if code, body := do(t, "POST", gw.URL+"/", call(n, n)); code != 200 || !strings.Contains(string(body), `"number"`) {
			t.Fatalf("block %d: %d %s", n, code, body)
		}
		els = append(els, call(n, n))
	}
	before := fake.count("eth_getBlockByNumber")
	code, body := do(t, "POST", gw.URL+"/", "["+strings.Join(els, ",")+"]")
	if code != 200 {
		t.Fatalf("batch of cached blocks: %d %s", code, body)
	}
	if fake.count("eth_getBlockByNumber") != before {
		t.Fatal("the batch was not answered from the cache")
	}
	var answers []rpcAnswer
	if err := json.Unmarshal(body, &answers); err != nil || len(answers) != 40 {
		t.Fatalf("batch answer (%d bytes): %v", len(body), err)
	}
	served := 0
	for i, a := range answers {
		if string(a.ID) != strconv.Itoa(i+1) {
			t.Fatalf("element %d has id %s", i, a.ID)
		}
		switch {
		case a.Error == nil && served == i:
			served++
		case a.Error != nil && a.Error.Code == -32005 && strings.Contains(a.Error.Message, "batch answer too large"):
		default:
			t.Fatalf("element %d: %+v (after %d served)", i, a, served)
		}
	}
	if served == 0 || served == 40 {
		t.Fatalf("%d of 40 served within %d bytes", served, limit)
	}
	// The answers served, and nothing more than one error per refused element, fit.
	if max := limit + (40-served)*200; len(body) > max {
		t.Fatalf("batch answer of %d bytes, over %d", len(body), max)
	}
	if code, body := do(t, "POST", gw.URL+"/", call(1, 1)); code != 200 || !strings.Contains(string(body), `"number":"0x1"`) {
		t.Fatalf("after the batch: %d %s", code, body)
	}
}
