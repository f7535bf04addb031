package rpcspy

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/infura-gateway/infura-gateway/gateway/internal/loadgen"
	"github.com/infura-gateway/infura-gateway/gateway/internal/subrec"
	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
)

func post(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

// Every call through the spy, HTTP and websocket, batches per element, is counted, and
// the answers are the node's own.
func TestSpyCounts(t *testing.T) {
	node := testnode.Start(t, testnode.Period(0))
	spy := Start(t, node.HTTPURL, node.WSURL)

	load := loadgen.Start(t, loadgen.Config{URL: spy.URL, Rate: 300, Workers: 2})
	load.WaitRequests(t, 100, time.Minute)
	r := load.Stop()
	if err := r.Check(); err != nil {
		t.Fatal(err)
	}
	if got := spy.Count(""); got != r.Requests+1 { // + eth_accounts at Start
		t.Fatalf("spy counted %d calls for %d requests + 1: %s", got, r.Requests, MethodsOf(spy.Calls()))
	}
	if got := spy.Count("eth_blockNumber"); got != r.ByKind[loadgen.ReqBlockNumber].Count {
		t.Fatalf("eth_blockNumber: spy %d, load %d", got, r.ByKind[loadgen.ReqBlockNumber].Count)
	}

	want := node.Raw(t, `[{"jsonrpc":"2.0","id":1,"method":"eth_chainId"},{"jsonrpc":"2.0","id":2,"method":"net_version"}]`)
	spy.Reset()
	start := time.Now()
	if status, got := post(t, spy.URL, `[{"jsonrpc":"2.0","id":1,"method":"eth_chainId"},{"jsonrpc":"2.0","id":2,"method":"net_version"}]`); status != 200 || got != string(want) {
		t.Fatalf("batch through the spy: %d %s, node %s", status, got, want)
	}
	if calls := spy.CallsSince(start); len(calls) != 2 || calls[0].Method != "eth_chainId" || calls[1].Method != "net_version" || calls[0].Transport != HTTP {
		t.Fatalf("batch calls %+v", calls)
	}

	rec := subrec.Dial(t, spy.WSURL)
	heads := rec.NewHeads(t)
	h := node.BlockNumber(t)
	node.SendTx(t) // Period 0: a block per transaction
	heads.WaitHead(t, h+1, time.Minute)
	if err := heads.CheckHeadsOnChain(node.HTTPURL); err != nil {
		t.Fatal(err)
	}
	ws := 0
	for _, c := range spy.Calls() {
		if c.Transport == WS {
			ws++
			if c.Method != "eth_subscribe" {
				t.Fatalf("websocket call %+v", c)
			}
		}
	}
	if ws != 1 {
		t.Fatalf("%d websocket calls: %s", ws, MethodsOf(spy.Calls()))
	}
}

// Faults answer in the node's place, with the caller's ids, over both transports.
func TestSpyFaults(t *testing.T) {
	node := testnode.Start(t, testnode.Period(0))
	spy := Start(t, node.HTTPURL, node.WSURL)
	spy.SetFault(func(method string) *Fault {
		switch method {
		case "eth_chainId":
			return &Fault{Status: http.StatusTooManyRequests}
		case "eth_blockNumber":
			return &Fault{Result: json.RawMessage(`"0x0"`)}
		case "eth_gasPrice":
			return &Fault{Error: json.RawMessage(`{"code":-32000,"message":"header not found"}`)}
		case "net_version":
			return &Fault{Close: true}
		}
		return nil
	})
	for _, c := range []struct{ body, status, answer string }{
		{`{"jsonrpc":"2.0","id":"a","method":"eth_chainId"}`, "429", `{"jsonrpc":"2.0","id":"a","error":{"code":-32005,"message":"rate limited (rpcspy fault)"}}`},
		{`{"jsonrpc":"2.0","id":7,"method":"eth_blockNumber"}`, "200", `{"jsonrpc":"2.0","id":7,"result":"0x0"}`},
		{`{"jsonrpc":"2.0","id":8,"method":"eth_gasPrice"}`, "200", `{"jsonrpc":"2.0","id":8,"error":{"code":-32000,"message":"header not found"}}`},
		{`[{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"},{"jsonrpc":"2.0","id":2,"method":"eth_accounts"}]`, "200",
			`[{"jsonrpc":"2.0","id":1,"result":"0x0"},{"jsonrpc":"2.0","id":2,"result":"0x0"}]`},
	} {
		status, got := post(t, spy.URL, c.body)
		if strconv.Itoa(status) != c.status || got != c.answer {
			t.Fatalf("%s: %d %s, want %s %s", c.body, status, got, c.status, c.answer)
		}
	}
	// Not faulted: forwarded.
	if status, got := post(t, spy.URL, `{"jsonrpc":"2.0","id":1,"method":"eth_accounts"}`); status != 200 || !strings.Contains(got, `"result":["0x`) {
		t.Fatalf("eth_accounts: %d %s", status, got)
	}

	ws, _, err := websocket.DefaultDialer.Dial(spy.WSURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	for _, c := range []struct{ req, answer string }{
		{`{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}`, `{"jsonrpc":"2.0","id":1,"error":{"code":-32005,"message":"rate limited (rpcspy fault)"}}`},
		{`{"jsonrpc":"2.0","id":2,"method":"eth_blockNumber"}`, `{"jsonrpc":"2.0","id":2,"result":"0x0"}`},
		{`{"jsonrpc":"2.0","id":3,"method":"web3_clientVersion"}`, `Geth/`},
	} {
		if err := ws.WriteMessage(websocket.TextMessage, []byte(c.req)); err != nil {
			t.Fatal(err)
		}
		_ = ws.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, msg, err := ws.ReadMessage()
		if err != nil || !bytes.Contains(msg, []byte(c.answer)) {
			t.Fatalf("%s: %s %v, want %s", c.req, msg, err, c.answer)
		}
	}
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"jsonrpc":"2.0","id":4,"method":"net_version"}`)); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, msg, err := ws.ReadMessage(); err == nil {
		t.Fatalf("a Close fault answered %s", msg)
	}
	faulted := 0
	for _, c := range spy.Calls() {
		if c.Faulted {
			faulted++
		}
	}
	if faulted != 8 { // 4 HTTP requests (5 calls: a batch is faulted whole) and 3 websocket calls
		t.Fatalf("%d faulted calls: %+v", faulted, spy.Calls())
	}
	spy.SetFault(nil)
	want := string(node.Raw(t, `{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}`))
	if status, got := post(t, spy.URL, `{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}`); status != 200 || got != want {
		t.Fatalf("after SetFault(nil): %d %q", status, got)
	}
}

// A call the node does not answer is recorded as failed, and its client's connection
// closed; calls the node answered, and calls a Reset dropped, are not marked.
func TestSpyMarksCallsTheNodeFailed(t *testing.T) {
	node := testnode.Start(t, testnode.Period(0))
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close() // nothing listens at its address any more
	for _, tc := range []struct {
		name     string
		upstream string
		failed   bool
	}{{"node answers", node.HTTPURL, false}, {"node gone", gone.URL, true}} {
		t.Run(tc.name, func(t *testing.T) {
			spy := Start(t, tc.upstream, "")
			_, _ = http.Post(spy.URL, "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}`))
			resp, err := http.Post(spy.URL, "application/json", strings.NewReader(`[{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"},{"jsonrpc":"2.0","id":2,"method":"eth_chainId"}]`))
			if err == nil {
				resp.Body.Close()
			}
			if (err != nil) != tc.failed {
				t.Fatalf("the client's error: %v, want one: %v", err, tc.failed)
			}
			calls := spy.Calls()
			if len(calls) != 3 {
				t.Fatalf("calls %+v", calls)
			}
			for _, c := range calls {
				if c.Failed != tc.failed {
					t.Fatalf("call %+v: failed %v, want %v", c, c.Failed, tc.failed)
				}
			}
		})
	}
	t.Run("reset between a call and its failure", func(t *testing.T) {
		spy := Start(t, gone.URL, "")
		_, from, to := spy.record(HTTP, []byte(`{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}`))
		spy.Reset()
		_, _, _ = spy.record(HTTP, []byte(`{"jsonrpc":"2.0","id":2,"method":"eth_blockNumber"}`))
		spy.failed(from, to)
		if calls := spy.Calls(); len(calls) != 1 || calls[0].Failed {
			t.Fatalf("a call after the Reset marked by the failure of one before it: %+v", calls)
		}
	})
}
