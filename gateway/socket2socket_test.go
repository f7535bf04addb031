package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/upstream"
)

// Calls and batches through /socket2socket answer exactly what the node answers, with
// the client's ids echoed byte for byte.
func TestSocket2SocketMatchesNode(t *testing.T) {
	e := startS2S(t, nil, nil)
	c := dialS2S(t, e.url, nil)
	for _, tc := range []struct{ id, method, params string }{
		{`1`, "eth_chainId", `[]`},
		{`"abc"`, "eth_getBlockByNumber", `["0x0",false]`},
		{`123456789012345678901234567890`, "eth_getBlockByNumber", `["0x0",true]`},
		{`1.0`, "net_version", `[]`},
		{`null`, "eth_getBalance", `["0x000000000000000000000000000000000000dEaD","0x0"]`},
		{`-5`, "eth_getBlockTransactionCountByNumber", `["0x0"]`},
	} {
		req := `{"jsonrpc":"2.0","id":` + tc.id + `,"method":"` + tc.method + `","params":` + tc.params + `}`
		got := c.call(req)
		want := e.node.Raw(t, `{"jsonrpc":"2.0","id":`+tc.id+`,"method":"`+tc.method+`","params":`+tc.params+`}`)
		if strings.TrimSpace(string(got)) != strings.TrimSpace(string(want)) {
			t.Fatalf("%s:\n got %s\nwant %s", tc.method, got, want)
		}
	}
	batch := `[{"jsonrpc":"2.0","id":"x","method":"eth_chainId"},{"jsonrpc":"2.0","id":2,"method":"eth_getBlockByNumber","params":["0x0",false]},{"jsonrpc":"2.0","id":3,"method":"no_such_method"}]`
	var got, want []json.RawMessage
	if err := json.Unmarshal(c.call(batch), &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(e.node.Raw(t, batch), &want); err != nil {
		t.Fatal(err)
	}
	if !sameElements(got, want) {
		t.Fatalf("batch:\n got %s\nwant %s", got, want)
	}
}

// sameElements compares batch answers as sets: element order is free.
func sameElements(a, b []json.RawMessage) bool {
	if len(a) != len(b) {
		return false
	}
	seen := make(map[string]int)
	for _, x := range a {
		seen[string(x)]++
	}
	for _, x := range b {
		if seen[string(x)]--; seen[string(x)] < 0 {
			return false
		}
	}
	return true
}

// Input the gateway answers itself: bad JSON (the connection stays open, unlike on
// geth), denied methods (also spelled with escapes), invalid elements, batch limits.
func TestSocket2SocketLocalAnswers(t *testing.T) {
	e := startS2S(t, nil, func(c *SocketConfig) { c.MaxBatch = 3 })
	c := dialS2S(t, e.url, nil)
	f := func(req, want string) {
		t.Helper()
		if got := string(c.call(req)); got != want {
			t.Fatalf("%s:\n got %s\nwant %s", req, got, want)
		}
	}
	f(`{"id":1,`, `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error: body is not valid JSON"}}`)
	f(`hello`, `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error: body is not valid JSON"}}`)
	f(`42`, `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request: want a JSON-RPC 2.0 object or a non-empty array of them"}}`)
	f(`{"jsonrpc":"2.0","id":7,"method":"admin_peers"}`, `{"jsonrpc":"2.0","id":7,"error":{"code":-32601,"message":"the method does not exist or is not available"}}`)
	f(`{"jsonrpc":"2.0","id":8,"method":"admin\u005fpeers"}`, `{"jsonrpc":"2.0","id":8,"error":{"code":-32601,"message":"the method does not exist or is not available"}}`)
	f(`{"jsonrpc":"2.0","id":9}`, `{"jsonrpc":"2.0","id":9,"error":{"code":-32600,"message":"invalid request: want a JSON-RPC 2.0 object or a non-empty array of them"}}`)
	f(`[]`, `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request: empty batch"}}`)
	f(`[1,2,3,4]`, `{"jsonrpc":"2.0","id":null,"error":{"code":-32005,"message":"batch too large"}}`)
	f(`[{"jsonrpc":"2.0","id":1,"method":"debug_x"},5]`,
		`[{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"the method does not exist or is not available"}},{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request: want a JSON-RPC 2.0 object or a non-empty array of them"}}]`)
	// Mixed: local answers and the node's answers in one batch.
	got := c.call(`[{"jsonrpc":"2.0","id":1,"method":"debug_x"},{"jsonrpc":"2.0","id":2,"method":"eth_chainId"},{"jsonrpc":"2.0","method":"eth_chainId"}]`)
	var els []json.RawMessage
	if err := json.Unmarshal(got, &els); err != nil || len(els) != 2 || !strings.Contains(string(got), `"id":2,"result":"0x539"`) {
		t.Fatalf("mixed batch: %s", got)
	}
	// Only notifications: nothing comes back; the next call is answered normally.
	c.send(`{"jsonrpc":"2.0","method":"eth_chainId"}`)
	f(`{"jsonrpc":"2.0","id":"after","method":"eth_chainId"}`, `{"jsonrpc":"2.0","id":"after","result":"0x539"}`)
}

// Many clients, all using the same few ids, each checking every answer is its own.
func TestSocket2SocketCollidingIDsManyClients(t *testing.T) {
	e := startS2S(t, nil, nil)
	// The node is the oracle: distinct inputs with distinct known answers.
	const inputs = 16
	want := make([]string, inputs)
	for i := range want {
		want[i] = string(e.node.Call(t, "web3_sha3", fmt.Sprintf("0x%04x", i)))
	}
	const clients, perClient = 40, 60
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for k := 0; k < clients; k++ {
		c := dialS2S(t, e.url, nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Pipelined: send everything, then read; answers may come in any order.
			expect := make(map[string]string)
			for i := 0; i < perClient; i++ {
				in := (i + k) % inputs
				id := fmt.Sprintf(`"%d-%d"`, k, i%4) // collides across clients and within
				if i%3 == 0 {
					id = fmt.Sprint(i % 4)
				}
				c.send(fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"method":"web3_sha3","params":["0x%04x"]}`, id, in))
				expect[fmt.Sprintf(`%s|%s`, id, want[in])] += "x"
			}
			for i := 0; i < perClient; i++ {
				var a rpcAnswer
				select {
				case b := <-c.msgs:
					if err := json.Unmarshal(b, &a); err != nil {
						errs <- err
						return
					}
				case <-time.After(s2sWait):
					errs <- errors.New("answer missing")
					return
				}
				k := fmt.Sprintf(`%s|%s`, a.ID, a.Result)
				if expect[k] == "" {
					errs <- fmt.Errorf("unexpected answer id %s result %s", a.ID, a.Result)
					return
				}
				expect[k] = expect[k][1:]
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// newHeads through the gateway: heads arrive on the gateway's id, eth_unsubscribe ends
// them; two clients share one upstream subscription.
func TestSocket2SocketSubscribeNewHeads(t *testing.T) {
	e := startS2S(t, nil, nil)
	a, b := dialS2S(t, e.url, nil), dialS2S(t, e.url, nil)
	subA := decodeAnswer(t, a.call(`{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]}`))
	subB := decodeAnswer(t, b.call(`{"jsonrpc":"2.0","id":"s","method":"eth_subscribe","params":["newHeads"]}`))
	if subA.Error != nil || string(subB.ID) != `"s"` || len(subA.Result) < 4 {
		t.Fatalf("subscribe: %+v %+v", subA, subB)
	}
	var id string
	_ = json.Unmarshal(subA.Result, &id)
	for _, c := range []*wsTestClient{a, b} {
		for i := 0; i < 2; i++ {
			n := decodeAnswer(t, c.next())
			if n.Method != "eth_subscription" || n.Params.Subscription != id || !strings.Contains(string(n.Params.Result), `"parentHash"`) {
				t.Fatalf("notification %+v", n)
			}
		}
	}
	if got := string(a.call(`{"jsonrpc":"2.0","id":2,"method":"eth_unsubscribe","params":["` + id + `"]}`)); got != `{"jsonrpc":"2.0","id":2,"result":true}` {
		t.Fatalf("unsubscribe: %s", got)
	}
	if got := string(a.call(`{"jsonrpc":"2.0","id":3,"method":"eth_unsubscribe","params":["` + id + `"]}`)); got != `{"jsonrpc":"2.0","id":3,"result":false}` {
		t.Fatalf("second unsubscribe: %s", got)
	}
	// b still receives heads; after a's unsubscribe answer a gets none.
	decodeAnswer(t, b.next())
	decodeAnswer(t, b.next())
	select {
	case m := <-a.msgs:
		t.Fatalf("unsubscribed client got %s", m)
	default:
	}
}

// A client that does not read is closed with 1008 once its queue overflows; another
// client is served all along.
func TestSocket2SocketSlowClientDropped(t *testing.T) {
	e := startS2S(t, nil, func(c *SocketConfig) { c.QueueSize = 8; c.MaxInFlight = 1 << 20 })
	dropped := wsSlowClientsDrops.Get()
	slow, _, err := websocket.DefaultDialer.Dial(e.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	// Flood with large answers and never read: the TCP buffers fill, then the queue.
	req := []byte(`{"jsonrpc":"2.0","id":1,"method":"eth_getBlockByNumber","params":["0x0",true]}`)
	fast := dialS2S(t, e.url, nil)
	for i := 0; i < 20000 && wsSlowClientsDrops.Get() == dropped; i++ {
		if err := slow.WriteMessage(websocket.TextMessage, req); err != nil {
			break // closed by the gateway already
		}
		if i%500 == 0 {
			if got := decodeAnswer(t, fast.call(`{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}`)); string(got.Result) != `"0x539"` {
				t.Fatalf("fast client: %+v", got)
			}
		}
	}
	if wsSlowClientsDrops.Get() == dropped {
		t.Fatal("slow client never dropped")
	}
	// Reading now yields what was written, then the 1008 close.
	_ = slow.SetReadDeadline(time.Now().Add(s2sWait))
	for {
		_, _, err := slow.ReadMessage()
		if err == nil {
			continue
		}
		if !websocket.IsCloseError(err, websocket.ClosePolicyViolation) {
			t.Fatalf("slow client closed with %v, want 1008", err)
		}
		break
	}
	if got := decodeAnswer(t, fast.call(`{"jsonrpc":"2.0","id":2,"method":"eth_chainId"}`)); string(got.Result) != `"0x539"` {
		t.Fatalf("fast client after drop: %+v", got)
	}
}

// An upstream that accepts requests and never answers keeps them in flight.
func startSilentUpstream(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := websocket.FastHTTPUpgrader{}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		_ = up.Upgrade(ctx, func(c *websocket.Conn) {
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					return
				}
			}
		})
	}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return "ws://" + ln.Addr().String()
}

func startS2SOn(t testing.TB, upstreamURL string, mod func(*SocketConfig)) *s2sEnv {
	t.Helper()
	m := upstream.NewMux(upstream.MuxConfig{URL: upstreamURL, Conns: 1, RequestTimeout: time.Minute})
	m.Start()
	if err := m.WaitReady(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	cfg := SocketConfig{Mux: m, Denied: newDenyList([]string{"admin_"}).denied}
	if mod != nil {
		mod(&cfg)
	}
	e := &s2sEnv{mux: m, h: NewSocket2Socket(cfg)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: e.h.Serve}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown(); e.h.Close(); m.Close() })
	e.url = "ws://" + ln.Addr().String() + "/socket2socket"
	return e
}

func TestSocket2SocketInFlightLimit(t *testing.T) {
	e := startS2SOn(t, startSilentUpstream(t), func(c *SocketConfig) { c.MaxInFlight = 2 })
	c := dialS2S(t, e.url, nil)
	c.send(`{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}`)
	c.send(`[{"jsonrpc":"2.0","id":2,"method":"eth_chainId"}]`)
	want := `{"jsonrpc":"2.0","id":3,"error":{"code":-32005,"message":"too many requests in flight on this connection"}}`
	if got := string(c.call(`{"jsonrpc":"2.0","id":3,"method":"eth_chainId"}`)); got != want {
		t.Fatalf("third call: %s", got)
	}
	want = `{"jsonrpc":"2.0","id":null,"error":{"code":-32005,"message":"too many requests in flight on this connection"}}`
	if got := string(c.call(`[{"jsonrpc":"2.0","id":4,"method":"eth_chainId"}]`)); got != want {
		t.Fatalf("batch over the limit: %s", got)
	}
	// Notifications and local answers do not count.
	if got := string(c.call(`{"jsonrpc":"2.0","id":5,"method":"admin_x"}`)); !strings.Contains(got, "-32601") {
		t.Fatalf("denied: %s", got)
	}
}

func TestSocket2SocketMessageTooLarge(t *testing.T) {
	e := startS2SOn(t, startSilentUpstream(t), func(c *SocketConfig) { c.MaxMessageBytes = 1024 })
	c := dialS2S(t, e.url, nil)
	c.send(`{"jsonrpc":"2.0","id":1,"method":"eth_call","params":["` + strings.Repeat("a", 2048) + `"]}`)
	select {
	case m := <-c.msgs:
		t.Fatalf("answered %s", m)
	case <-c.done:
	case <-time.After(s2sWait):
		t.Fatal("not closed")
	}
	if err := c.closeErr(); !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
		t.Fatalf("closed with %v, want 1009", err)
	}
}

func TestSocket2SocketOriginPolicy(t *testing.T) {
	e := startS2S(t, nil, func(c *SocketConfig) { c.AllowedOrigins = []string{"https://app.example"} })
	_, resp, err := websocket.DefaultDialer.Dial(e.url, http.Header{"Origin": {"https://evil.example"}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign origin: %v %v", err, resp)
	}
	_ = resp.Body.Close()
	c := dialS2S(t, e.url, http.Header{"Origin": {"https://app.example"}})
	if a := decodeAnswer(t, c.call(`{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}`)); string(a.Result) != `"0x539"` {
		t.Fatalf("%+v", a)
	}
}

func TestSocket2SocketPerClientMode(t *testing.T) {
	e := startS2S(t, nil, func(c *SocketConfig) { c.PerClient = true })
	c := dialS2S(t, e.url, nil)
	if a := decodeAnswer(t, c.call(`{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}`)); string(a.Result) != `"0x539"` {
		t.Fatalf("%+v", a)
	}
	sub := decodeAnswer(t, c.call(`{"jsonrpc":"2.0","id":2,"method":"eth_subscribe","params":["newHeads"]}`))
	if n := decodeAnswer(t, c.next()); n.Method != "eth_subscription" || `"`+n.Params.Subscription+`"` != string(sub.Result) {
		t.Fatalf("notification %+v for %s", n, sub.Result)
	}
}

// Close ends every client handler and goroutine.
func TestSocket2SocketCloseEndsClients(t *testing.T) {
	before := runtime.NumGoroutine()
	e := startS2S(t, nil, nil)
	var cs []*websocket.Conn
	for i := 0; i < 20; i++ {
		c, _, err := websocket.DefaultDialer.Dial(e.url, nil)
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
		_ = c.WriteMessage(websocket.TextMessage, []byte(`{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]}`))
	}
	// Clients answer the close frame as they read it, as real clients keep reading; Close
	// waits for those answers.
	closed := make(chan struct{})
	go func() { e.h.Close(); close(closed) }()
	for _, c := range cs {
		_ = c.SetReadDeadline(time.Now().Add(s2sWait))
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				if !websocket.IsCloseError(err, websocket.CloseGoingAway) {
					t.Fatalf("closed with %v, want 1001", err)
				}
				break
			}
		}
		_ = c.Close()
	}
	select {
	case <-closed:
	case <-time.After(s2sWait):
		t.Fatal("Close did not return")
	}
	e.mux.Close()
	deadline := time.Now().Add(s2sWait)
	for runtime.NumGoroutine() > before+8 { // the fasthttp server's own workers remain
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
	}
}
