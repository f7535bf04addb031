package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/gateway/pipeline"
)

// fakeUpstream is the gateway tests' one in-process upstream, for what a real node
// cannot be made to do (stalls, status codes, oversized or malformed answers) and for
// watching exactly what the gateway sends. It speaks JSON-RPC over HTTP (POST on any
// path) and over websocket (an upgrade on any path).
//
// Every request is decoded as a Go upstream decodes it, with encoding/json (keys
// matched without regard to case, the last of duplicates wins), and recorded. Answers
// come from the respond function (default: result "0x1", the id as decoded), so a test
// sees what a client could make such an upstream do.
type fakeUpstream struct {
	HTTPURL, WSURL string

	respond atomic.Pointer[func(fakeRequest) fakeAnswer]
	fixed   []byte // HTTP answers these bytes, nothing decoded or recorded (allocation-free)
	release chan struct{}
	head    atomic.Uint64 // the chain head the fake reports (blocks 0..head exist)
	down    atomic.Bool   // cuts every connection and refuses new ones, as a crashed node would

	mu      sync.Mutex
	reqs    []fakeRequest
	auth    string
	traced  []fakeTraced // the trace headers of the HTTP requests that carried an X-Request-Id
	subSeq  int
	subs    map[string]*fakeConn
	subIDs  map[string]string // the latest upstream subscription id by params
	conns   map[*fakeConn]struct{}
	wsConns atomic.Int64
}

// fakeTraced is what an HTTP request to the fake said for tracing.
type fakeTraced struct{ RequestID, Parent string }

// tracedAs returns the trace headers of the requests that carried X-Request-Id id.
func (f *fakeUpstream) tracedAs(id string) []fakeTraced {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []fakeTraced
	for _, t := range f.traced {
		if t.RequestID == id {
			out = append(out, t)
		}
	}
	return out
}

// fakeRequest is one request as the fake decoded it.
type fakeRequest struct {
	Transport string // "http" or "ws"
	Raw       string // the request object's bytes as received
	ID        json.RawMessage
	Method    string
	Params    json.RawMessage
	// Keys are the object's member names other than exactly jsonrpc, id, method and
	// params; the gateway's envelope has none.
	Keys []string
}

// fakeAnswer is what the fake does with one request.
type fakeAnswer struct {
	Status int    // HTTP status of the exchange (HTTP only; default 200)
	Body   string // the raw answer; default {"jsonrpc":"2.0","id":<id>,"result":<Result>}
	Result string // default "0x1"
	Stall  bool   // never answer (until the test ends)
	// Stream, when set, is the HTTP answer's body, sent chunked as it is read (a
	// reader that blocks holds the answer half sent).
	Stream io.Reader
}

type fakeConn struct {
	c  *websocket.Conn
	mu sync.Mutex // one writer at a time
}

func (fc *fakeConn) write(msg []byte) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	_ = fc.c.WriteMessage(websocket.TextMessage, msg)
}

// fakeOption configures a fake before it starts.
type fakeOption func(*fakeUpstream)

// fakeFixed makes HTTP answer body to everything without decoding: for benchmarks and
// allocation counts, where the fake must allocate nothing itself.
func fakeFixed(body string) fakeOption { return func(f *fakeUpstream) { f.fixed = []byte(body) } }

// fakeRespond sets how the fake answers.
func fakeRespond(fn func(fakeRequest) fakeAnswer) fakeOption {
	return func(f *fakeUpstream) { f.respond.Store(&fn) }
}

func startFakeUpstream(t testing.TB, opts ...fakeOption) *fakeUpstream {
	t.Helper()
	f := &fakeUpstream{release: make(chan struct{}), subs: map[string]*fakeConn{}, subIDs: map[string]string{},
		conns: map[*fakeConn]struct{}{}}
	f.head.Store(0x10)
	for _, o := range opts {
		o(f)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := websocket.FastHTTPUpgrader{CheckOrigin: func(*fasthttp.RequestCtx) bool { return true }}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if f.fixed != nil {
			ctx.Response.Header.SetContentTypeBytes(pipeline.ContentTypeJSON)
			ctx.Response.SetBodyRaw(f.fixed)
			return
		}
		if f.down.Load() {
			_ = ctx.Conn().Close()
			return
		}
		f.mu.Lock()
		f.auth = string(ctx.Request.Header.Peek("Authorization"))
		if id := ctx.Request.Header.Peek("X-Request-Id"); len(id) > 0 {
			f.traced = append(f.traced, fakeTraced{RequestID: string(id), Parent: string(ctx.Request.Header.Peek("Traceparent"))})
		}
		f.mu.Unlock()
		if websocket.FastHTTPIsWebSocketUpgrade(ctx) {
			_ = up.Upgrade(ctx, f.serveWS)
			return
		}
		f.serveHTTP(ctx)
	}, MaxRequestBodySize: 64 << 20}
	done := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(done) }()
	t.Cleanup(func() {
		close(f.release)
		f.dropAll()
		_ = srv.Shutdown()
		<-done
	})
	f.HTTPURL = "http://" + ln.Addr().String()
	f.WSURL = "ws://" + ln.Addr().String()
	return f
}

// decode reads one request object as encoding/json does and records it.
func (f *fakeUpstream) decode(transport string, raw []byte) fakeRequest {
	r := fakeRequest{Transport: transport, Raw: string(raw)}
	var env struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
		Params json.RawMessage `json:"params"`
	}
	_ = json.Unmarshal(raw, &env)
	r.ID, r.Method, r.Params = env.ID, env.Method, env.Params
	var all map[string]json.RawMessage
	_ = json.Unmarshal(raw, &all)
	for k := range all {
		switch k {
		case "jsonrpc", "id", "method", "params":
		default:
			r.Keys = append(r.Keys, k)
		}
	}
	f.mu.Lock()
	f.reqs = append(f.reqs, r)
	f.mu.Unlock()
	return r
}

func (f *fakeUpstream) answer(r fakeRequest) fakeAnswer {
	if p := f.respond.Load(); p != nil {
		a := (*p)(r)
		if a.Body == "" && !a.Stall {
			a.Body = fakeResult(r, a.Result, f.head.Load())
		}
		return a
	}
	return fakeAnswer{Body: fakeResult(r, "", f.head.Load())}
}

// fakeBlock is block n of the fakes' chain (every fake has the same one): a header with
// a hash derived from n, and the fields a block has beyond a header.
func fakeBlock(n uint64) string {
	return fmt.Sprintf(`{"number":"0x%x","hash":"%s","parentHash":"%s","transactions":[],"size":"0x220"}`,
		n, fakeHash(n), fakeHash(n-1))
}

func fakeHeader(n uint64) string {
	return fmt.Sprintf(`{"number":"0x%x","hash":"%s","parentHash":"%s"}`, n, fakeHash(n), fakeHash(n-1))
}

func fakeHash(n uint64) string { return fmt.Sprintf("0x%064x", 0xb10c0000+n) }

// fakeLog is the one log of block n.
func fakeLog(n uint64) string {
	return fmt.Sprintf(`{"address":"0x00000000000000000000000000000000000000aa","topics":["0x%064x"],"data":"0x",`+
		`"blockNumber":"0x%x","blockHash":"%s","transactionHash":"0x%064x","transactionIndex":"0x0","logIndex":"0x0","removed":false}`,
		7, n, fakeHash(n), n)
}

// setDown cuts the fake off (true) or brings it back.
func (f *fakeUpstream) setDown(down bool) {
	f.down.Store(down)
	if down {
		f.dropAll()
	}
}

// pushHead moves the fake's head to n and notifies its newHeads subscribers.
func (f *fakeUpstream) pushHead(n uint64) {
	f.head.Store(n)
	f.mu.Lock()
	var subs []string
	var logSubs []string
	for params, sub := range f.subIDs {
		switch {
		case params == `["newHeads"]`:
			subs = append(subs, sub)
		case strings.HasPrefix(params, `["logs"`):
			logSubs = append(logSubs, sub)
		}
	}
	f.mu.Unlock()
	for _, sub := range subs {
		f.notify(sub, fakeHeader(n))
	}
	for _, sub := range logSubs {
		f.notify(sub, fakeLog(n))
	}
}

// fakeResult is the answer to r with result (default "0x1"; blocks and the block number
// of a chain whose head is head).
func fakeResult(r fakeRequest, result string, head uint64) string {
	if result == "" {
		result = `"0x1"`
		switch r.Method {
		case "eth_blockNumber":
			result = fmt.Sprintf(`"0x%x"`, head)
		case "eth_getLogs":
			var p []struct{ FromBlock, ToBlock string }
			_ = json.Unmarshal(r.Params, &p)
			var logs []string
			if len(p) == 1 {
				from, _ := strconv.ParseUint(strings.TrimPrefix(p[0].FromBlock, "0x"), 16, 64)
				to, _ := strconv.ParseUint(strings.TrimPrefix(p[0].ToBlock, "0x"), 16, 64)
				for n := from; n <= min(to, head); n++ {
					logs = append(logs, fakeLog(n))
				}
			}
			result = "[" + strings.Join(logs, ",") + "]"
		case "eth_getBlockByNumber":
			var p []json.RawMessage
			_ = json.Unmarshal(r.Params, &p)
			var tag string
			if len(p) > 0 {
				_ = json.Unmarshal(p[0], &tag)
			}
			n, err := strconv.ParseUint(strings.TrimPrefix(tag, "0x"), 16, 64)
			switch {
			case tag == "latest":
				result = fakeBlock(head)
			case err == nil && n <= head:
				result = fakeBlock(n)
			case err == nil:
				result = "null"
			}
		}
	}
	id := string(r.ID)
	if id == "" {
		id = "null"
	}
	return `{"jsonrpc":"2.0","id":` + id + `,"result":` + result + `}`
}

func (f *fakeUpstream) serveHTTP(ctx *fasthttp.RequestCtx) {
	body := ctx.PostBody()
	ctx.Response.Header.SetContentTypeBytes(pipeline.ContentTypeJSON)
	if len(body) > 0 && body[0] == '[' {
		var elems []json.RawMessage
		_ = json.Unmarshal(body, &elems)
		var out bytes.Buffer
		out.WriteByte('[')
		for i, el := range elems {
			a := f.answer(f.decode("http", el))
			if a.Stall {
				<-f.release
				return
			}
			if a.Status != 0 && a.Status != 200 {
				ctx.SetStatusCode(a.Status)
				ctx.SetBodyString(a.Body)
				return
			}
			if i > 0 {
				out.WriteByte(',')
			}
			out.WriteString(a.Body)
		}
		out.WriteByte(']')
		ctx.SetBody(out.Bytes())
		return
	}
	a := f.answer(f.decode("http", body))
	if a.Stall {
		<-f.release
		return
	}
	if a.Status != 0 {
		ctx.SetStatusCode(a.Status)
	}
	if a.Stream != nil {
		ctx.SetBodyStream(a.Stream, -1)
		return
	}
	ctx.SetBodyString(a.Body)
}

func (f *fakeUpstream) serveWS(c *websocket.Conn) {
	fc := &fakeConn{c: c}
	f.mu.Lock()
	f.conns[fc] = struct{}{}
	f.mu.Unlock()
	f.wsConns.Add(1)
	defer func() {
		f.wsConns.Add(-1)
		f.mu.Lock()
		delete(f.conns, fc)
		for k, v := range f.subs {
			if v == fc {
				delete(f.subs, k)
			}
		}
		f.mu.Unlock()
		_ = c.Close()
	}()
	c.SetReadLimit(64 << 20)
	for {
		_, msg, err := c.ReadMessage()
		if err != nil {
			return
		}
		r := f.decode("ws", msg)
		var a fakeAnswer
		switch r.Method {
		case "eth_subscribe":
			f.mu.Lock()
			f.subSeq++
			sub := "0xf" + strconv.Itoa(f.subSeq)
			f.subs[sub] = fc
			f.subIDs[string(r.Params)] = sub
			f.mu.Unlock()
			a = fakeAnswer{Body: fakeResult(r, `"`+sub+`"`, 0)}
		case "eth_unsubscribe":
			var p []string
			_ = json.Unmarshal(r.Params, &p)
			f.mu.Lock()
			if len(p) == 1 {
				delete(f.subs, p[0])
			}
			f.mu.Unlock()
			a = fakeAnswer{Body: fakeResult(r, "true", 0)}
		default:
			a = f.answer(r)
		}
		if !a.Stall {
			fc.write([]byte(a.Body))
		}
	}
}

// notify sends a notification of upstream subscription sub; false when nobody holds it.
func (f *fakeUpstream) notify(sub, result string) bool {
	f.mu.Lock()
	fc := f.subs[sub]
	f.mu.Unlock()
	if fc == nil {
		return false
	}
	fc.write([]byte(`{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":"` + sub + `","result":` + result + `}}`))
	return true
}

// subscriptionFor returns the upstream id of the latest subscription with params.
func (f *fakeUpstream) subscriptionFor(params string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.subIDs[params]
}

// subscriptions returns the upstream subscriptions held now.
func (f *fakeUpstream) subscriptions() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs)
}

// dropAll closes every websocket, as a crashed node would.
func (f *fakeUpstream) dropAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for fc := range f.conns {
		_ = fc.c.NetConn().Close()
	}
}

// requests returns what the fake received so far.
func (f *fakeUpstream) requests() []fakeRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeRequest(nil), f.reqs...)
}

// count returns how many requests of method the fake received.
func (f *fakeUpstream) count(method string) int {
	n := 0
	for _, r := range f.requests() {
		if r.Method == method {
			n++
		}
	}
	return n
}

func (f *fakeUpstream) reset() {
	f.mu.Lock()
	f.reqs = nil
	f.mu.Unlock()
}

func (f *fakeUpstream) lastAuth() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.auth
}

// waitWS waits until the gateway's shared sockets are connected to the fake.
func (f *fakeUpstream) waitWS(t testing.TB, n int64) {
	t.Helper()
	waitFor(t, "upstream websocket connections", func() bool { return f.wsConns.Load() >= n })
}

// fakeArgs points a gateway at the fake: HTTP and websocket.
func (f *fakeUpstream) args(extra ...string) []string {
	return append([]string{"-upstream-http", f.HTTPURL, "-upstream-ws", f.WSURL}, extra...)
}

// waitFor polls cond, for conditions on other goroutines' or processes' state that
// offer nothing to block on, until a generous deadline.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
