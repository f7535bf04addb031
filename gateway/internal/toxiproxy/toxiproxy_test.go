package toxiproxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
)

// post makes one JSON-RPC call with c and returns the raw body.
func post(c *http.Client, url, method string, params ...any) ([]byte, error) {
	if params == nil {
		params = []any{}
	}
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
	resp, err := c.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = errors.New(resp.Status)
	}
	return out, err
}

// fresh is a client that opens a new connection per call. Without compression: geth
// gzips answers for clients that accept it, and the bandwidth test counts wire bytes.
func fresh(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true, DisableCompression: true}}
}

func setup(t *testing.T, period int) (*testnode.Node, *Server, *Proxy) {
	t.Helper()
	node := testnode.Start(t, testnode.Period(period))
	s := Start(t)
	return node, s, s.NewProxy(t, "geth-http", node.HTTPURL)
}

func TestPinnedBinary(t *testing.T) {
	bin, err := Find()
	if err != nil {
		t.Fatal(err)
	}
	if !IsPinned(bin) {
		v, err := BinaryVersion(bin)
		t.Fatalf("%s is %q (%v), want %s", bin, v, err, Version)
	}
	if got := HostPort("http://127.0.0.1:8545"); got != "127.0.0.1:8545" {
		t.Errorf("HostPort(url) = %q", got)
	}
	if got := HostPort("127.0.0.1:8545"); got != "127.0.0.1:8545" {
		t.Errorf("HostPort(addr) = %q", got)
	}
}

// A JSON-RPC call through a proxy gets the node's own answer.
func TestCallThroughProxy(t *testing.T) {
	node, _, p := setup(t, 0)
	want := node.Raw(t, `{"jsonrpc":"2.0","id":1,"method":"eth_getBlockByNumber","params":["0x0",false]}`)
	got, err := post(fresh(30*time.Second), p.URL("http"), "eth_getBlockByNumber", "0x0", false)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("through the proxy:\n%s\nnode:\n%s", got, want)
	}
	if p.Upstream != HostPort(node.HTTPURL) || !strings.HasPrefix(p.Addr, "127.0.0.1:") {
		t.Fatalf("proxy %+v", p)
	}
}

// latency delays every answer by at least the latency, on connections open before the
// toxic (keep-alive) and after it; Clear takes it away.
func TestLatency(t *testing.T) {
	_, _, p := setup(t, 0)
	const ms = 400
	keep := &http.Client{Timeout: 30 * time.Second}
	if _, err := post(keep, p.URL("http"), "eth_chainId"); err != nil { // opens the kept connection
		t.Fatal(err)
	}
	p.Latency(ms, 0)
	for _, c := range []*http.Client{keep, fresh(30 * time.Second)} {
		start := time.Now()
		if _, err := post(c, p.URL("http"), "eth_chainId"); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d < ms*time.Millisecond {
			t.Fatalf("call took %v with a %d ms latency toxic", d, ms)
		}
	}
	if got := p.Toxics(); len(got) != 1 || got[0].Name != "latency_downstream" || got[0].Attributes["latency"] != ms {
		t.Fatalf("toxics = %+v", got)
	}
	p.Latency(2*ms, 0) // in place
	start := time.Now()
	if _, err := post(keep, p.URL("http"), "eth_chainId"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 2*ms*time.Millisecond {
		t.Fatalf("call took %v after raising the latency to %d ms", d, 2*ms)
	}
	p.Clear()
	// The fastest of a few calls: one slow call on a loaded machine proves nothing.
	best := time.Hour
	for i := 0; i < 5; i++ {
		start := time.Now()
		if _, err := post(keep, p.URL("http"), "eth_chainId"); err != nil {
			t.Fatal(err)
		}
		best = min(best, time.Since(start))
	}
	if best >= ms*time.Millisecond {
		t.Fatalf("fastest call after Clear took %v", best)
	}
}

// reset_peer: a new connection is reset (ECONNRESET), a connection open before the
// toxic is closed on its next request; both work again after Clear.
func TestResetPeer(t *testing.T) {
	_, _, p := setup(t, 0)
	keep := &http.Client{Timeout: 30 * time.Second}
	if _, err := post(keep, p.URL("http"), "eth_chainId"); err != nil {
		t.Fatal(err)
	}
	p.ResetPeer(0)
	_, err := post(fresh(30*time.Second), p.URL("http"), "eth_chainId")
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("new connection: err = %v, want ECONNRESET", err)
	}
	if _, err := post(keep, p.URL("http"), "eth_chainId"); err == nil {
		t.Fatal("kept connection: the call went through a reset_peer toxic")
	}
	p.Clear()
	for _, c := range []*http.Client{keep, fresh(30 * time.Second)} {
		if _, err := post(c, p.URL("http"), "eth_chainId"); err != nil {
			t.Fatalf("after Clear: %v", err)
		}
	}
}

// timeout blackholes: with 0 a call hangs until the client gives up; with a timeout the
// proxy closes the connection after it, having delivered nothing.
func TestTimeout(t *testing.T) {
	_, _, p := setup(t, 0)
	p.Timeout(0)
	start := time.Now()
	_, err := post(fresh(time.Second), p.URL("http"), "eth_chainId")
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("blackholed call: err = %v, want a client timeout", err)
	}
	if d := time.Since(start); d < time.Second {
		t.Fatalf("blackholed call failed after %v", d)
	}

	const ms = 300
	p.Timeout(ms)
	// The proxy's clock starts when it accepts the connection, so ours starts before the
	// dial: started after it, a loaded machine can put the close a few ms "early".
	start = time.Now()
	c, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatalf("a blackholed proxy still accepts: %v", err)
	}
	defer c.Close()
	req := `{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}`
	if _, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "+
		strconv.Itoa(len(req))+"\r\n\r\n"+req); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	n, err := c.Read(make([]byte, 512))
	if n != 0 || err == nil {
		t.Fatalf("read %d bytes, %v: want nothing, then the connection closed", n, err)
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the proxy did not close the connection within 30 s")
	}
	if d := time.Since(start); d < ms*time.Millisecond {
		t.Fatalf("closed after %v, before the %d ms timeout", d, ms)
	}

	p.Clear()
	if _, err := post(fresh(30*time.Second), p.URL("http"), "eth_chainId"); err != nil {
		t.Fatalf("after Clear: %v", err)
	}
}

// bandwidth: an answer of n bytes at r KB/s takes at least n/r ms.
func TestBandwidth(t *testing.T) {
	_, _, p := setup(t, 0)
	body, err := post(fresh(30*time.Second), p.URL("http"), "eth_getBlockByNumber", "0x0", true)
	if err != nil {
		t.Fatal(err)
	}
	const rate = 1 // KB/s
	p.Bandwidth(rate)
	start := time.Now()
	got, err := post(fresh(60*time.Second), p.URL("http"), "eth_getBlockByNumber", "0x0", true)
	if err != nil {
		t.Fatal(err)
	}
	want := time.Duration(len(body)/rate) * time.Millisecond
	if d := time.Since(start); d < want || !bytes.Equal(got, body) {
		t.Fatalf("%d bytes at %d KB/s took %v, want at least %v (same answer: %v)", len(body), rate, d, want, bytes.Equal(got, body))
	}
}

// Down refuses connections and cuts open ones; Up listens again on the same address.
func TestDownUp(t *testing.T) {
	node, s, _ := setup(t, 1)
	u := s.NewUpstream(t, "node", node.HTTPURL, node.WSURL)
	ws, _, err := websocket.DefaultDialer.Dial(u.WSURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}`)); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, msg, err := ws.ReadMessage(); err != nil || !strings.Contains(string(msg), `"0x539"`) {
		t.Fatalf("ws through the proxy: %s %v", msg, err)
	}

	u.Down()
	if u.HTTP.Enabled() || u.WS.Enabled() {
		t.Fatal("Down left a proxy enabled")
	}
	for _, addr := range []string{u.HTTP.Addr, u.WS.Addr} {
		if _, err := net.DialTimeout("tcp", addr, 5*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial %s while down: %v, want ECONNREFUSED", addr, err)
		}
	}
	_ = ws.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, _, err := ws.ReadMessage(); err == nil {
		t.Fatal("an open websocket survived Down")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("an open websocket was not closed by Down within 30 s")
	}

	u.Up()
	u.HTTP.WaitAccepting(5 * time.Second) // Up returns once listening: immediate
	if _, err := post(fresh(30*time.Second), u.HTTPURL, "eth_chainId"); err != nil {
		t.Fatalf("after Up: %v", err)
	}
	u.Down()
	u.WS.WaitRefusing(5 * time.Second)
	s.Reset(t) // enables every proxy, clears every toxic
	u.WS.WaitAccepting(5 * time.Second)
}

// A websocket through the proxy carries calls and subscriptions, also under latency;
// the upstream's own ws port is what the proxy forwards to.
func TestWebsocketThroughProxy(t *testing.T) {
	node, s, _ := setup(t, 1)
	p := s.NewProxy(t, "geth-ws", node.WSURL)
	ws, _, err := websocket.DefaultDialer.Dial(p.URL("ws"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"jsonrpc":"2.0","id":7,"method":"eth_subscribe","params":["newHeads"]}`)); err != nil {
		t.Fatal(err)
	}
	var last uint64
	read := func() map[string]json.RawMessage {
		t.Helper()
		_ = ws.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, msg, err := ws.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(msg, &m); err != nil {
			t.Fatalf("%s: %v", msg, err)
		}
		return m
	}
	if m := read(); string(m["id"]) != "7" || m["result"] == nil {
		t.Fatalf("subscribe answer %v", m)
	}
	heads := func(n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			var note struct {
				Params struct {
					Result struct{ Number string }
				}
			}
			m := read()
			raw, _ := json.Marshal(m)
			if err := json.Unmarshal(raw, &note); err != nil || note.Params.Result.Number == "" {
				t.Fatalf("not a newHeads notification: %s", raw)
			}
			n := hexNum(t, note.Params.Result.Number)
			if last != 0 && n != last+1 {
				t.Fatalf("head %d after %d", n, last)
			}
			last = n
		}
	}
	heads(2)
	p.Latency(200, 50)
	heads(2)
	p.Clear()
	heads(1)
}

func hexNum(t *testing.T, s string) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(strings.TrimPrefix(s, "0x"), 16, 64)
	if err != nil {
		t.Fatalf("bad hex %q", s)
	}
	return n
}
