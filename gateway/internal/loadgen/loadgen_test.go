package loadgen

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
	"github.com/infura-gateway/infura-gateway/gateway/internal/toxiproxy"
)

// Real-time order: only a request sent after another's answer arrived must not see a
// lower head; overlapping requests may.
func TestRegressions(t *testing.T) {
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	r := &Report{Heads: []Head{
		{Sent: at(0), Received: at(10), Number: 5, Source: SourceBlockNumber},
		{Sent: at(5), Received: at(30), Number: 4, Source: SourceBlockNumber},  // overlaps the first: fine
		{Sent: at(20), Received: at(25), Number: 6, Source: SourceLatestBlock}, // after the first: fine
		{Sent: at(40), Received: at(45), Number: 5, Source: SourceBlockNumber}, // after 6 (latest) was received
		{Sent: at(50), Received: at(55), Number: 4, Source: SourceBlockNumber}, // after 5 was received
	}}
	if g := r.Regressions(SourceBlockNumber); len(g) != 1 || g[0].After.Number != 4 || g[0].Before.Number != 5 {
		t.Fatalf("eth_blockNumber regressions: %v", g)
	}
	if g := r.Regressions(SourceLatestBlock); len(g) != 0 {
		t.Fatalf("latest regressions: %v", g)
	}
	if g := r.Regressions(SourceAny); len(g) != 2 || g[0].Before.Number != 6 || g[0].After.Number != 5 {
		t.Fatalf("any-source regressions: %v", g)
	}
	if lo, hi := r.HeadRange(SourceAny); lo != 4 || hi != 6 {
		t.Fatalf("HeadRange = %d, %d", lo, hi)
	}
	if err := r.Check(); err == nil {
		t.Fatal("Check passed a regression")
	}
}

// A test double answers each kind of request wrongly in its own way; every failure is
// recorded with the right kind, and the right answers are not.
func TestClassification(t *testing.T) {
	var flip atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			ID     json.RawMessage
			Method string
			Params []json.RawMessage
		}
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &req); err != nil {
			http.Error(w, "bad", http.StatusBadRequest)
			return
		}
		result := func(v string) {
			_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":`+string(req.ID)+`,"result":`+v+`}`)
		}
		switch req.Method {
		case "eth_accounts":
			result(`["0x00000000000000000000000000000000000000aa"]`)
		case "eth_blockNumber":
			result(`"0x10"`)
		case "eth_chainId":
			http.Error(w, `{"jsonrpc":"2.0","id":1,"error":{"code":-32005,"message":"slow down"}}`, http.StatusTooManyRequests)
		case "eth_getBalance":
			_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":`+string(req.ID)+`,"error":{"code":-32000,"message":"nope"}}`)
		case "eth_call":
			_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":"other","result":"0x"}`)
		case "eth_getBlockByNumber":
			if string(req.Params[0]) != `"latest"` {
				result(`null`)
			} else if flip.Add(1)%2 == 0 {
				result(`{"number":"0x10","hash":"0xaa"}`)
			} else {
				result(`{"number":"0x10","hash":"0xbb"}`)
			}
		}
	}))
	defer srv.Close()
	load := Start(t, Config{URL: srv.URL, Rate: 500, Workers: 2, Mix: Mix{1, 1, 1, 1, 1, 1}})
	load.WaitRequests(t, 300, 60*time.Second)
	r := load.Stop()
	byReq := map[string]map[ErrorKind]int{}
	for _, e := range r.Errors {
		if byReq[e.Request] == nil {
			byReq[e.Request] = map[ErrorKind]int{}
		}
		byReq[e.Request][e.Kind]++
		if e.Kind == KindHTTP && e.Status != http.StatusTooManyRequests || e.Kind == KindRPC && e.Code != -32000 {
			t.Errorf("error %s", e)
		}
	}
	want := map[string]ErrorKind{ReqChainID: KindHTTP, ReqBalance: KindRPC, ReqCall: KindBadAnswer, ReqOldBlock: KindNullBlock}
	for req, kind := range want {
		if len(byReq[req]) != 1 || byReq[req][kind] != r.ByKind[req].Count || r.ByKind[req].Count == 0 {
			t.Errorf("%s: errors %v of %d requests, want all %s", req, byReq[req], r.ByKind[req].Count, kind)
		}
	}
	// Block 16 comes with two hashes in turn: the answers that disagree with the first
	// one are mismatches.
	if n := byReq[ReqLatestBlock][KindMismatch]; len(byReq[ReqLatestBlock]) != 1 || n == 0 || n == r.ByKind[ReqLatestBlock].Count {
		t.Errorf("latest block: errors %v of %d requests, want about half mismatches", byReq[ReqLatestBlock], r.ByKind[ReqLatestBlock].Count)
	}
	if byReq[ReqBlockNumber] != nil || r.ByKind[ReqBlockNumber].Count == 0 {
		t.Errorf("eth_blockNumber: errors %v of %d", byReq[ReqBlockNumber], r.ByKind[ReqBlockNumber].Count)
	}
	if int64(len(r.Errors)) != load.Failures() || int64(r.Requests) != load.Requests() {
		t.Errorf("report %d/%d, counters %d/%d", len(r.Errors), r.Requests, load.Failures(), load.Requests())
	}
	t.Log(r)
}

// Against a real geth, over HTTP and over websockets: every kind of read succeeds, the
// head moves and never goes backwards, latencies are recorded.
func TestLoadAgainstGeth(t *testing.T) {
	node := testnode.Start(t)
	httpLoad := Start(t, Config{URL: node.HTTPURL, Rate: 150, Workers: 3, ChainID: "0x539"})
	wsLoad := Start(t, Config{URL: node.WSURL, Rate: 150, Workers: 3, ChainID: "0x539"})
	h := node.BlockNumber(t)
	node.WaitBlock(t, h+3)
	httpLoad.WaitRequests(t, 200, 60*time.Second)
	wsLoad.WaitRequests(t, 200, 60*time.Second)
	for _, r := range []*Report{httpLoad.Stop(), wsLoad.Stop()} {
		t.Log(r)
		if err := r.Check(); err != nil {
			t.Fatalf("%s: %v", r.URL, err)
		}
		if g := r.Regressions(SourceAny); len(g) > 0 {
			t.Fatalf("%s: %v", r.URL, g[0])
		}
		for _, k := range []string{ReqBlockNumber, ReqLatestBlock, ReqOldBlock, ReqBalance, ReqChainID, ReqCall} {
			if r.ByKind[k].Count == 0 || r.ByKind[k].P50 <= 0 {
				t.Fatalf("%s: %s %v", r.URL, k, r.ByKind[k])
			}
		}
		if lo, hi := r.HeadRange(SourceBlockNumber); hi < lo+2 {
			t.Fatalf("%s: heads %d..%d over three blocks", r.URL, lo, hi)
		}
	}
}

// Through toxiproxy: latency shows in the latencies without errors; a proxy down makes
// refused or broken requests, and only while it is down; a blackhole makes timeouts;
// after each fault the load recovers by itself.
func TestLoadThroughFaults(t *testing.T) {
	node := testnode.Start(t)
	u := toxiproxy.Start(t).NewUpstream(t, "node", node.HTTPURL, node.WSURL)
	cfg := Config{Rate: 100, Workers: 2, Timeout: 2 * time.Second}
	cfg.URL = u.HTTPURL
	httpLoad := Start(t, cfg)
	cfg.URL = u.WSURL
	wsLoad := Start(t, cfg)
	loads := []*Load{httpLoad, wsLoad}
	each := func(n int64) {
		t.Helper()
		for _, l := range loads {
			l.WaitRequests(t, n, 60*time.Second)
		}
	}
	each(50)

	u.Latency(300, 0)
	each(20)
	u.Clear()
	calm := time.Now()
	each(50)

	// A fault starts during the API call that injects it (Down closes connections
	// before it returns): take its time before the call, and a recovery's after.
	down := time.Now()
	u.Down()
	// Every worker fails at least once, so none keeps a connection Down cut for later.
	for _, l := range loads {
		for _, w := range l.workers {
			deadline := time.Now().Add(60 * time.Second)
			for w.failed.Load() == 0 {
				if time.Now().After(deadline) {
					t.Fatalf("worker %d: no failure while the upstream is down", w.id)
				}
				time.Sleep(10 * time.Millisecond) // polling the workers' progress
			}
		}
	}
	u.Up()
	up := time.Now()
	each(50)

	blackhole := time.Now()
	u.Timeout(0)
	each(4) // timeouts complete requests too, after 2 s each
	u.Clear()
	healed := time.Now()
	each(50)

	for _, l := range loads {
		r := l.Stop()
		t.Log(r)
		if r.ByKind[ReqBlockNumber].Max < 300*time.Millisecond {
			t.Errorf("%s: slowest eth_blockNumber %v under a 300 ms latency", r.URL, r.ByKind[ReqBlockNumber].Max)
		}
		if e := r.ErrorsBetween(r.Start, calm); len(e) > 0 {
			t.Errorf("%s: errors before the upstream went down: %v", r.URL, e[0])
		}
		for _, e := range r.ErrorsBetween(up, blackhole) {
			// A request sent a moment before the blackhole and still in flight when it
			// began is caught by it: a timeout, through the blackhole's start.
			if e.Kind == KindTimeout && e.At.Add(e.Took).After(blackhole) {
				continue
			}
			t.Errorf("%s: errors after the upstream came back: %v", r.URL, e)
			break
		}
		if e := r.ErrorsBetween(healed, r.End); len(e) > 0 {
			t.Errorf("%s: errors after the blackhole was cleared: %v", r.URL, e[0])
		}
		for _, e := range r.ErrorsBetween(calm, up) {
			if e.At.Add(e.Took).Before(down) || e.Kind != KindRefused && e.Kind != KindTransport {
				t.Errorf("%s: while down: %s", r.URL, e)
			}
		}
		timeouts := 0
		for _, e := range r.ErrorsBetween(blackhole, healed) {
			switch e.Kind {
			case KindTimeout:
				timeouts++
				if e.Took < 2*time.Second {
					t.Errorf("%s: timed out after %v", r.URL, e.Took)
				}
			case KindTransport: // in flight when Clear closed the blackholed connections
			default:
				t.Errorf("%s: in the blackhole: %s", r.URL, e)
			}
		}
		if timeouts == 0 {
			t.Errorf("%s: no timeouts in the blackhole", r.URL)
		}
		if g := r.Regressions(SourceAny); len(g) > 0 {
			t.Errorf("%s: %v", r.URL, g[0])
		}
	}
}
