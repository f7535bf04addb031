package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
)

// startNodeGateway starts a geth --dev node (or uses node) and a gateway in front of it.
func startNodeGateway(t testing.TB, node *testnode.Node, args ...string) (*testnode.Node, *testGateway) {
	t.Helper()
	if node == nil {
		node = testnode.Start(t)
	}
	gw := startGateway(t, append([]string{"-upstream-http", node.HTTPURL, "-upstream-ws", node.WSURL, "-cache=false"}, args...)...)
	gw.waitUpstreams(t)
	return node, gw
}

// Calls and batches through /socket2socket answer exactly what the node answers, with
// the client's ids echoed byte for byte and batch answers in request order.
func TestSocket2SocketMatchesNode(t *testing.T) {
	node, gw := startNodeGateway(t, nil)
	c := dialWS(t, gw.WSURL, nil)
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
		want := node.Raw(t, req)
		if strings.TrimSpace(string(got)) != strings.TrimSpace(string(want)) {
			t.Fatalf("%s:\n got %s\nwant %s", tc.method, got, want)
		}
	}
	batch := `[{"jsonrpc":"2.0","id":"x","method":"eth_chainId"},{"jsonrpc":"2.0","id":2,"method":"eth_getBlockByNumber","params":["0x0",false]},{"jsonrpc":"2.0","id":3,"method":"no_such_method"}]`
	if got, want := c.call(batch), node.Raw(t, batch); strings.TrimSpace(string(got)) != strings.TrimSpace(string(want)) {
		t.Fatalf("batch:\n got %s\nwant %s", got, want)
	}
}

// Input the gateway answers itself: bad JSON (the connection stays open, unlike on
// geth), denied methods (also spelled with escapes), invalid elements, batch limits;
// local answers keep their place in a batch.
func TestSocket2SocketLocalAnswers(t *testing.T) {
	_, gw := startNodeGateway(t, nil, "-max-batch", "3")
	c := dialWS(t, gw.WSURL, nil)
	f := func(req, want string) {
		t.Helper()
		if got := string(c.call(req)); got != want {
			t.Fatalf("%s:\n got %s\nwant %s", req, got, want)
		}
	}
	const denied = `"error":{"code":-32601,"message":"the method does not exist or is not available"}`
	f(`{"id":1,`, `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error: body is not valid JSON"}}`)
	f(`hello`, `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error: body is not valid JSON"}}`)
	f(`42`, `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request: want a JSON-RPC 2.0 object or a non-empty array of them"}}`)
	f(`{"jsonrpc":"2.0","id":7,"method":"admin_peers"}`, `{"jsonrpc":"2.0","id":7,`+denied+`}`)
	f(`{"jsonrpc":"2.0","id":8,"method":"admin\u005fpeers"}`, `{"jsonrpc":"2.0","id":8,`+denied+`}`)
	f(`{"jsonrpc":"2.0","id":9}`, `{"jsonrpc":"2.0","id":9,"error":{"code":-32600,"message":"invalid request: \"method\" must be a string of 1 to 128 letters, digits and underscores"}}`)
	f(`[]`, `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request: empty batch"}}`)
	f(`[1,2,3,4]`, `{"jsonrpc":"2.0","id":null,"error":{"code":-32005,"message":"batch too large: more than 3 requests"}}`)
	f(`[{"jsonrpc":"2.0","id":1,"method":"debug_x"},5]`,
		`[{"jsonrpc":"2.0","id":1,`+denied+`},{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request: want a JSON-RPC 2.0 object or a non-empty array of them"}}]`)
	// Local answers and the node's in one batch, in request order; the notification
	// gets nothing.
	f(`[{"jsonrpc":"2.0","id":1,"method":"debug_x"},{"jsonrpc":"2.0","id":2,"method":"eth_chainId"},{"jsonrpc":"2.0","method":"eth_chainId"}]`,
		`[{"jsonrpc":"2.0","id":1,`+denied+`},{"jsonrpc":"2.0","id":2,"result":"0x539"}]`)
	f(`[{"jsonrpc":"2.0","id":2,"method":"eth_chainId"},{"jsonrpc":"2.0","id":1,"method":"debug_x"}]`,
		`[{"jsonrpc":"2.0","id":2,"result":"0x539"},{"jsonrpc":"2.0","id":1,`+denied+`}]`)
	// Subscriptions inside a batch are refused per element.
	if got := string(c.call(`[{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]}]`)); !strings.Contains(got, `"id":1,"error":{"code":-32601`) {
		t.Fatalf("subscribe in a batch: %s", got)
	}
	// Only notifications: nothing comes back; the next call is answered normally.
	c.mustSend(`{"jsonrpc":"2.0","method":"eth_chainId"}`)
	f(`{"jsonrpc":"2.0","id":"after","method":"eth_chainId"}`, `{"jsonrpc":"2.0","id":"after","result":"0x539"}`)
}

// Many clients, all using the same few ids, each checking every answer is its own.
func TestSocket2SocketCollidingIDsManyClients(t *testing.T) {
	node, gw := startNodeGateway(t, nil)
	// The node is the oracle: distinct inputs with distinct known answers.
	const inputs = 16
	want := make([]string, inputs)
	for i := range want {
		want[i] = string(node.Call(t, "web3_sha3", fmt.Sprintf("0x%04x", i)))
	}
	const clients, perClient = 40, 60
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for k := 0; k < clients; k++ {
		c := dialWS(t, gw.WSURL, nil)
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
				if err := c.send(fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"method":"web3_sha3","params":["0x%04x"]}`, id, in)); err != nil {
					errs <- err
					return
				}
				expect[fmt.Sprintf(`%s|%s`, id, want[in])] += "x"
			}
			for i := 0; i < perClient; i++ {
				b, err := c.recv()
				if err != nil {
					errs <- err
					return
				}
				var a rpcAnswer
				if err := json.Unmarshal(b, &a); err != nil {
					errs <- err
					return
				}
				key := fmt.Sprintf(`%s|%s`, a.ID, a.Result)
				if expect[key] == "" {
					errs <- fmt.Errorf("unexpected answer %s", b)
					return
				}
				expect[key] = expect[key][1:]
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
	_, gw := startNodeGateway(t, nil)
	a, b := dialWS(t, gw.WSURL, nil), dialWS(t, gw.WSURL, nil)
	subA := decodeAnswer(t, a.call(`{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]}`))
	subB := decodeAnswer(t, b.call(`{"jsonrpc":"2.0","id":"s","method":"eth_subscribe","params":[ "newHeads" ]}`))
	if subA.Error != nil || string(subB.ID) != `"s"` || len(subA.Result) < 4 || string(subA.Result) != string(subB.Result) {
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
	// As geth: an id that is no longer the client's is "subscription not found".
	if got := string(a.call(`{"jsonrpc":"2.0","id":3,"method":"eth_unsubscribe","params":["` + id + `"]}`)); got != `{"jsonrpc":"2.0","id":3,"error":{"code":-32000,"message":"subscription not found"}}` {
		t.Fatalf("second unsubscribe: %s", got)
	}
	// A subscription id is a string: anything else is invalid params, as geth answers.
	for i, params := range []string{`[123]`, `[]`, `[null]`, `{}`, `[{"id":"x"}]`} {
		got := string(a.call(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"eth_unsubscribe","params":%s}`, 10+i, params)))
		if want := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"error":{"code":-32602,`, 10+i); !strings.HasPrefix(got, want) {
			t.Fatalf("unsubscribe %s: %s", params, got)
		}
	}
	if got := string(a.call(`{"jsonrpc":"2.0","id":4,"method":"eth_unsubscribe","params":["0x` + strings.Repeat("ab", 100) + `"]}`)); got != `{"jsonrpc":"2.0","id":4,"error":{"code":-32000,"message":"subscription not found"}}` {
		t.Fatalf("unsubscribe of a long id: %s", got)
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

// A client that sends and never reads: its reads pause once the answers it is owed
// fill its queue (backpressure), and it is closed once a write to it has waited
// -ws-client-write-timeout, counted as a slow client; the heap stays bounded by the
// queue; another client is served all along.
func TestSocket2SocketSlowClientDropped(t *testing.T) {
	_, gw := startNodeGateway(t, nil, "-ws-client-queue", "8", "-ws-max-in-flight", "100000", "-ws-max-pending-bytes", "1000000000",
		"-ws-client-write-timeout", "2s")
	const dropped = "gateway_ws_slow_clients_dropped_total"
	slow, _, err := websocket.DefaultDialer.Dial(gw.WSURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	// Flood with large answers and never read: the TCP buffers fill, then the queue,
	// then the gateway reads no further and this client's writes block in turn.
	req := []byte(`{"jsonrpc":"2.0","id":1,"method":"eth_getBlockByNumber","params":["0x0",true]}`)
	fast := dialWS(t, gw.WSURL, nil)
	go func() {
		for i := 0; i < 200000; i++ {
			if slow.WriteMessage(websocket.TextMessage, req) != nil {
				return // closed by the gateway, or by the test's end
			}
		}
	}()
	for i := 0; gw.metric(t, dropped) == 0; i++ {
		if got := decodeAnswer(t, fast.call(`{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}`)); string(got.Result) != `"0x539"` {
			t.Fatalf("fast client: %+v", got)
		}
		if i > 0 && gw.metric(t, "gateway_ws_client_reads_paused_total") == 0 {
			t.Fatal("the slow client's reads never paused")
		}
	}
	// The connection is closed: reading yields what was written, then an error.
	_ = slow.SetReadDeadline(time.Now().Add(wsWait))
	for {
		if _, _, err := slow.ReadMessage(); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("the slow client's connection was not closed")
			}
			break
		}
	}
	if got := decodeAnswer(t, fast.call(`{"jsonrpc":"2.0","id":2,"method":"eth_chainId"}`)); string(got.Result) != `"0x539"` {
		t.Fatalf("fast client after drop: %+v", got)
	}
}

// A client that sends many requests without waiting and reads as fast as it can gets
// every answer on a connection that stays open: its reads pause while the answers it
// is owed fill its queue. Before, its reader ran on, the requests past the in-flight
// limit were refused (-32005), each refusal one more queued answer, and the client was
// closed with 1008 "outbound queue full" (the audit: 2,000 eth_chainId, closed after
// 490 answers; ethers' Promise.all over a WebSocketProvider does this).
func TestSocket2SocketPipelinedClientServed(t *testing.T) {
	_, gw := startNodeGateway(t, nil)
	conn, _, err := websocket.DefaultDialer.Dial(gw.WSURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const n = 2000
	methods := []string{`"eth_chainId"`, `"eth_blockNumber"`, `"eth_getBlockByNumber","params":["0x0",true]`}
	go func() {
		for i := range n {
			msg := `{"jsonrpc":"2.0","id":` + strconv.Itoa(i) + `,"method":` + methods[i%len(methods)] + `}`
			if conn.WriteMessage(websocket.TextMessage, []byte(msg)) != nil {
				return
			}
		}
	}()
	seen := make([]bool, n)
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Minute))
	for got := 0; got < n; got++ {
		_, msg, err := conn.ReadMessage()
		if err != nil {
			t.Fatalf("after %d of %d answers: %v", got, n, err)
		}
		var a struct {
			ID    int
			Error *struct{ Message string }
		}
		if err := json.Unmarshal(msg, &a); err != nil || a.Error != nil || a.ID < 0 || a.ID >= n || seen[a.ID] {
			t.Fatalf("answer %d: %.200s", got, msg)
		}
		seen[a.ID] = true
	}
}

// startSilentGateway is a gateway in front of an upstream that takes requests and never
// answers them: calls stay in flight.
func startSilentGateway(t testing.TB, args ...string) (*fakeUpstream, *testGateway) {
	t.Helper()
	fake := startFakeUpstream(t, fakeRespond(func(r fakeRequest) fakeAnswer {
		return fakeAnswer{Stall: r.Transport == "ws"}
	}))
	gw := startGateway(t, fake.args(append([]string{"-cache=false", "-upstream-timeout", "1m"}, args...)...)...)
	gw.waitUpstreams(t)
	return fake, gw
}

// Calls in flight are capped per connection: notifications and batch elements count.
func TestSocket2SocketInFlightLimit(t *testing.T) {
	_, gw := startSilentGateway(t, "-ws-max-in-flight", "3")
	c := dialWS(t, gw.WSURL, nil)
	c.mustSend(`{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}`)
	c.mustSend(`{"jsonrpc":"2.0","method":"eth_chainId"}`) // a notification: in flight until answered
	c.mustSend(`[{"jsonrpc":"2.0","id":2,"method":"eth_chainId"}]`)
	want := `{"jsonrpc":"2.0","id":3,"error":{"code":-32005,"message":"too many requests in flight on this connection"}}`
	if got := string(c.call(`{"jsonrpc":"2.0","id":3,"method":"eth_chainId"}`)); got != want {
		t.Fatalf("fourth call: %s", got)
	}
	want = `{"jsonrpc":"2.0","id":null,"error":{"code":-32005,"message":"too many requests in flight on this connection"}}`
	if got := string(c.call(`[{"jsonrpc":"2.0","id":4,"method":"eth_chainId"}]`)); got != want {
		t.Fatalf("batch over the limit: %s", got)
	}
	// Local answers do not count.
	if got := string(c.call(`{"jsonrpc":"2.0","id":5,"method":"admin_x"}`)); !strings.Contains(got, "-32601") {
		t.Fatalf("denied: %s", got)
	}
}

// A batch that could never be admitted (more elements than -max-batch, or than the
// connection may have in flight) is refused as too large, on an idle connection, with a
// message naming the limit: not as an in-flight limit a client would retry.
func TestSocket2SocketBatchTooLarge(t *testing.T) {
	_, gw := startSilentGateway(t, "-ws-max-in-flight", "4", "-max-batch", "6")
	c := dialWS(t, gw.WSURL, nil)
	batch := func(n int) string {
		var b strings.Builder
		b.WriteByte('[')
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"jsonrpc":"2.0","id":%d,"method":"eth_chainId"}`, i)
		}
		return b.String() + "]"
	}
	for _, tc := range []struct {
		n    int
		want string
	}{
		{5, `{"jsonrpc":"2.0","id":null,"error":{"code":-32005,"message":"batch too large: more than 4 requests, the most one websocket connection may have in flight; split it or send it over HTTP"}}`},
		{7, `{"jsonrpc":"2.0","id":null,"error":{"code":-32005,"message":"batch too large: more than 6 requests"}}`},
		{40, `{"jsonrpc":"2.0","id":null,"error":{"code":-32005,"message":"batch too large: more than 6 requests"}}`},
	} {
		if got := string(c.call(batch(tc.n))); got != tc.want {
			t.Errorf("batch of %d: %s", tc.n, got)
		}
	}
}

// A websocket handshake over HTTP/1.0 is refused with 400 in JSON: the upgrade needs
// HTTP/1.1 (RFC 6455 4.1), and fasthttp would close a 1.0 connection after a 101.
func TestSocket2SocketHandshakeNeedsHTTP11(t *testing.T) {
	_, gw := startSilentGateway(t)
	conn, err := net.Dial("tcp", strings.TrimPrefix(gw.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(wsWait))
	_, err = conn.Write([]byte("GET /socket2socket HTTP/1.0\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, _ := readAtLeastHeader(conn, buf)
	if got := string(buf[:n]); !strings.Contains(got, " 400 ") || !strings.Contains(got, "needs HTTP/1.1") {
		t.Fatalf("HTTP/1.0 upgrade: %q", got)
	}
}

func TestSocket2SocketMessageTooLarge(t *testing.T) {
	_, gw := startSilentGateway(t, "-max-request-body", "1024", "-ws-max-pending-bytes", "1024", "-max-pending-bytes", "1024")
	c := dialWS(t, gw.WSURL, nil)
	c.mustSend(`{"jsonrpc":"2.0","id":1,"method":"eth_call","params":["` + strings.Repeat("a", 2048) + `"]}`)
	if err := c.expectClose(); !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
		t.Fatalf("closed with %v, want 1009", err)
	}
}

func TestSocket2SocketOriginPolicy(t *testing.T) {
	_, gw := startNodeGateway(t, nil, "-ws-allowed-origins", "https://app.example")
	_, resp, err := websocket.DefaultDialer.Dial(gw.WSURL, http.Header{"Origin": {"https://evil.example"}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign origin: %v %v", err, resp)
	}
	_ = resp.Body.Close()
	// Refused handshakes answer in JSON like every other error.
	httpURL := "http" + strings.TrimPrefix(gw.WSURL, "ws")
	for _, h := range []struct {
		name, origin string
		status       int
		msg          string
		lower        bool // the header's name sent as "origin", as written: the check must still find it
	}{
		{"plain GET", "", 400, "'upgrade' token not found", false},
		{"foreign origin", "https://evil.example", 403, "origin not allowed", false},
		{"foreign origin, lower-case name", "https://evil.example", 403, "origin not allowed", true},
	} {
		req, _ := http.NewRequest("GET", httpURL, nil)
		if h.origin != "" {
			req.Header.Set("Origin", h.origin)
			if h.lower {
				delete(req.Header, "Origin")
				req.Header["origin"] = []string{h.origin} // not canonicalized: written as it is
			}
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", "websocket")
			req.Header.Set("Sec-WebSocket-Version", "13")
			req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != h.status || !strings.HasPrefix(string(body), `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,`) ||
			!strings.Contains(string(body), h.msg) || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("%s: %d %s %s", h.name, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	}
	c := dialWS(t, gw.WSURL, http.Header{"Origin": {"https://app.example"}})
	if a := decodeAnswer(t, c.call(`{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}`)); string(a.Result) != `"0x539"` {
		t.Fatalf("%+v", a)
	}
}

func TestSocket2SocketPerClientMode(t *testing.T) {
	_, gw := startNodeGateway(t, nil, "-ws-per-client")
	c := dialWS(t, gw.WSURL, nil)
	if a := decodeAnswer(t, c.call(`{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}`)); string(a.Result) != `"0x539"` {
		t.Fatalf("%+v", a)
	}
	sub := decodeAnswer(t, c.call(`{"jsonrpc":"2.0","id":2,"method":"eth_subscribe","params":["newHeads"]}`))
	if n := decodeAnswer(t, c.next()); n.Method != "eth_subscription" || `"`+n.Params.Subscription+`"` != string(sub.Result) {
		t.Fatalf("notification %+v for %s", n, sub.Result)
	}
}

// Shutdown closes every client with 1001 and ends every goroutine of the gateway.
func TestSocket2SocketCloseEndsClients(t *testing.T) {
	node := testnode.Start(t)
	before := runtime.NumGoroutine()
	_, gw := startNodeGateway(t, node)
	var cs []*websocket.Conn
	for i := 0; i < 20; i++ {
		c, _, err := websocket.DefaultDialer.Dial(gw.WSURL, nil)
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
		_ = c.WriteMessage(websocket.TextMessage, []byte(`{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]}`))
	}
	// Clients answer the close frame as they read it, as real clients keep reading;
	// shutdown waits for those answers.
	closed := make(chan error, 1)
	go func() { closed <- gw.srv.Shutdown(context.Background()) }()
	for _, c := range cs {
		_ = c.SetReadDeadline(time.Now().Add(wsWait))
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
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(wsWait):
		t.Fatal("Shutdown did not return")
	}
	waitFor(t, "the gateway's goroutines to end", func() bool { return runtime.NumGoroutine() <= before+8 })
}
