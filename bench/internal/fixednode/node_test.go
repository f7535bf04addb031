package fixednode

import (
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

func TestIDEcho(t *testing.T) {
	n := New(0x10)
	f := func(req, want string) {
		t.Helper()
		got := string(n.Process(nil, []byte(req), nil))
		if got != want {
			t.Fatalf("Process(%s)\n got %s\nwant %s", req, got, want)
		}
	}
	f(`{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}`,
		`{"jsonrpc":"2.0","id":1,"result":"0x10"}`)
	// Ids are echoed byte for byte: big numbers, fractions, strings with
	// escapes, null.
	f(`{"jsonrpc":"2.0","id":123456789012345678901234567890,"method":"eth_blockNumber"}`,
		`{"jsonrpc":"2.0","id":123456789012345678901234567890,"result":"0x10"}`)
	f(`{"jsonrpc":"2.0","id":1.0,"method":"eth_chainId"}`, `{"jsonrpc":"2.0","id":1.0,"result":"0x1"}`)
	f(`{"jsonrpc":"2.0","method":"eth_gasPrice","id":"a\"b}]"}`, `{"jsonrpc":"2.0","id":"a\"b}]","result":"0x3b9aca00"}`)
	f(` { "id" : null , "method" : "eth_blockNumber" } `, `{"jsonrpc":"2.0","id":null,"result":"0x10"}`)
	// A request without id is a notification: no reply.
	f(`{"jsonrpc":"2.0","method":"eth_blockNumber"}`, ``)
	f(`{"jsonrpc":"2.0","id":7,"method":"eth_nope"}`,
		`{"jsonrpc":"2.0","id":7,"error":{"code":-32601,"message":"the method does not exist/is not available"}}`)
	f(`{"jsonrpc":"2.0","id":7,"method":"eth_subscribe","params":["newHeads"]}`,
		`{"jsonrpc":"2.0","id":7,"error":{"code":-32601,"message":"notifications not supported"}}`)
	f(`{"id":`, `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}`)
	f(`[]`, `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"empty batch"}}`)
	f(`[{"jsonrpc":"2.0","id":"x","method":"eth_blockNumber"},{"jsonrpc":"2.0","method":"eth_chainId"},{"jsonrpc":"2.0","id":18446744073709551616,"method":"eth_chainId"},5]`,
		`[{"jsonrpc":"2.0","id":"x","result":"0x10"},{"jsonrpc":"2.0","id":18446744073709551616,"result":"0x1"},`+
			`{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request"}}]`)
	f(`[{"jsonrpc":"2.0","method":"eth_chainId"}]`, ``)
	f(`{"jsonrpc":"2.0","id":2,"method":"eth_getBlockByNumber","params":["0x11",false]}`, `{"jsonrpc":"2.0","id":2,"result":null}`)
}

func TestBlockIsValidJSON(t *testing.T) {
	n := New(100)
	for _, req := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"eth_getBlockByNumber","params":["latest",false]}`,
		`{"jsonrpc":"2.0","id":1,"method":"eth_getBlockByNumber","params":["0x64",true]}`,
		`{"jsonrpc":"2.0","id":1,"method":"eth_getTransactionByBlockNumberAndIndex","params":["latest","0x0"]}`,
	} {
		var v struct {
			Result map[string]any `json:"result"`
		}
		out := n.Process(nil, []byte(req), nil)
		if err := json.Unmarshal(out, &v); err != nil {
			t.Fatalf("%s: %v", req, err)
		}
		if v.Result["blockNumber"] == nil && v.Result["number"] != "0x64" {
			t.Fatalf("%s: unexpected result %v", req, v.Result["number"])
		}
	}
	n.Advance()
	if got := string(n.Process(nil, []byte(`{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"}`), nil)); !strings.Contains(got, `"0x65"`) {
		t.Fatalf("head did not advance: %s", got)
	}
	if c := n.Counts(); c.Heads != 1 || c.Methods["eth_getBlockByNumber"] != 2 || c.Methods["eth_blockNumber"] != 1 {
		t.Fatalf("counts: %+v", c)
	}
	for range 3 {
		n.Process(nil, []byte(`{"jsonrpc":"2.0","id":1,"method":"eth_gasPrice"}`), nil)
	}
	n.Advance()
	n.Advance()
	if got := n.Counts().GasPricePerHead; len(got) != 3 || got[0] != 0 || got[1] != 3 || got[2] != 0 {
		t.Fatalf("gas price per head: %v", got)
	}
}

// The eth_blockNumber path is the benchmark floor: it must not allocate,
// neither in Process nor through the fasthttp handler.
func TestBlockNumberZeroAllocs(t *testing.T) {
	n := New(21_000_000)
	req := []byte(`{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}`)
	buf := make([]byte, 0, 256)
	if a := testing.AllocsPerRun(1000, func() { buf = n.Process(buf[:0], req, nil) }); a != 0 {
		t.Fatalf("Process allocates %v times per request", a)
	}
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod("POST")
	ctx.Request.SetRequestURI("/")
	ctx.Request.SetBody(req)
	n.ServeHTTP(&ctx) // warm the buffer pool and the response buffers
	a := testing.AllocsPerRun(1000, func() {
		ctx.Response.Reset()
		n.ServeHTTP(&ctx)
	})
	if a != 0 && !raceEnabled {
		t.Fatalf("ServeHTTP allocates %v times per request", a)
	}
	if got := string(ctx.Response.Body()); got != `{"jsonrpc":"2.0","id":1,"result":"0x1406f40"}` {
		t.Fatalf("body %s", got)
	}
}

func BenchmarkServeHTTPBlockNumber(b *testing.B) {
	n := New(21_000_000)
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod("POST")
	ctx.Request.SetRequestURI("/")
	ctx.Request.SetBody([]byte(`{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}`))
	b.ReportAllocs()
	for b.Loop() {
		ctx.Response.Reset()
		n.ServeHTTP(&ctx)
	}
}

// TestWebsocketSubscribe runs the node on an in-memory listener and checks
// request/reply, the subscribe reply preceding the first notification,
// head notifications, and unsubscribe.
func TestWebsocketSubscribe(t *testing.T) {
	n := New(1)
	ln := fasthttputil.NewInmemoryListener()
	defer ln.Close()
	go func() { _ = n.Server().Serve(ln) }()

	d := websocket.Dialer{NetDial: func(_, _ string) (net.Conn, error) { return ln.Dial() }, HandshakeTimeout: 2 * time.Second}
	c, _, err := d.Dial("ws://fixednode/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	roundTrip := func(req string) string {
		t.Helper()
		if err := c.WriteMessage(websocket.TextMessage, []byte(req)); err != nil {
			t.Fatal(err)
		}
		_, msg, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		return string(msg)
	}
	if got := roundTrip(`{"jsonrpc":"2.0","id":"q","method":"eth_blockNumber"}`); got != `{"jsonrpc":"2.0","id":"q","result":"0x1"}` {
		t.Fatalf("blockNumber over ws: %s", got)
	}
	sub := roundTrip(`{"jsonrpc":"2.0","id":9,"method":"eth_subscribe","params":["newHeads"]}`)
	if sub != `{"jsonrpc":"2.0","id":9,"result":"0x0000000000000001"}` {
		t.Fatalf("subscribe: %s", sub)
	}
	n.Advance()
	_, note, err := c.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Method string
		Params struct {
			Subscription string
			Result       struct{ Number string }
		}
	}
	if err := json.Unmarshal(note, &v); err != nil || v.Method != "eth_subscription" ||
		v.Params.Subscription != "0x0000000000000001" || v.Params.Result.Number != "0x2" {
		t.Fatalf("notification %s (%v)", note, err)
	}
	if got := roundTrip(`{"jsonrpc":"2.0","id":10,"method":"eth_unsubscribe","params":["0x0000000000000001"]}`); got != `{"jsonrpc":"2.0","id":10,"result":true}` {
		t.Fatalf("unsubscribe: %s", got)
	}
	n.Advance()
	// No notification may follow an unsubscribe: the next message is the
	// reply to this request.
	if got := roundTrip(`{"jsonrpc":"2.0","id":11,"method":"eth_blockNumber"}`); got != `{"jsonrpc":"2.0","id":11,"result":"0x3"}` {
		t.Fatalf("after unsubscribe: %s", got)
	}
}
