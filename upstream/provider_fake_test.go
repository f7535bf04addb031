package upstream

import (
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/fasthttp/websocket"
)

// Fake providers: in-process HTTP and websocket JSON-RPC servers that answer the way
// Infura, Alchemy and QuickNode do when they throttle, cap or refuse (texts from their
// docs, cited in classify.go), or like a node that lacks a block.

// providerAnswer is how a fake provider answers every call: an HTTP status, headers
// and a JSON-RPC body whose id the server fills in ("ID").
type providerAnswer struct {
	status int
	header map[string]string
	body   string // with ID where the call's id goes
}

var (
	alchemyThrottle = providerAnswer{200, nil, `{"jsonrpc":"2.0","id":@ID@,"error":{"code":429,"message":"Your app has exceeded its compute units per second capacity. If you have retries enabled, you can safely ignore this message. If not, check out https://docs.alchemy.com/reference/throughput"}}`}
	infuraThrottle  = providerAnswer{429, map[string]string{"Retry-After": "30"}, `{"jsonrpc":"2.0","id":@ID@,"error":{"code":-32005,"message":"project ID request rate exceeded","data":{"see":"https://infura.io/docs/ethereum/jsonrpc/ratelimits","current_rps":13.333,"allowed_rps":10.0,"backoff_seconds":30.0}}}`}
	infuraDaily     = providerAnswer{429, nil, `{"jsonrpc":"2.0","id":@ID@,"error":{"code":-32005,"message":"daily request count exceeded, request rate limited"}}`}
	paymentRequired = providerAnswer{402, nil, `{"jsonrpc":"2.0","id":@ID@,"error":{"code":-32005,"message":"daily request count exceeded"}}`}
	unauthorized    = providerAnswer{401, nil, `{"jsonrpc":"2.0","id":@ID@,"error":{"code":-32002,"message":"invalid project id"}}`}
	missingTrieNode = providerAnswer{200, nil, `{"jsonrpc":"2.0","id":@ID@,"error":{"code":-32000,"message":"missing trie node 1a2b3c (path )"}}`}
	quicknodeLimit  = providerAnswer{429, nil, `{"jsonrpc":"2.0","id":@ID@,"error":{"code":-32007,"message":"50/second request limit reached - reduce calls per second or upgrade your account at quicknode.com"}}`}
	reverted        = providerAnswer{200, nil, `{"jsonrpc":"2.0","id":@ID@,"error":{"code":3,"message":"execution reverted: rate limit","data":"0x"}}`}
)

// idOf returns the raw id of a JSON-RPC request body.
func idOf(body []byte) string {
	s := string(body)
	i := strings.Index(s, `"id":`)
	if i < 0 {
		return "null"
	}
	s = s[i+5:]
	j := strings.IndexAny(s, ",}")
	if j < 0 {
		return "null"
	}
	return strings.TrimSpace(s[:j])
}

// fakeProvider is an HTTP provider answering every call with what answer returns
// (nil: the result "0x1"); calls counts what reached it.
type fakeProvider struct {
	url    string
	calls  atomic.Int64
	answer atomic.Pointer[providerAnswer]
}

func newFakeProvider(t *testing.T, a *providerAnswer) *fakeProvider {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &fakeProvider{url: "http://" + ln.Addr().String()}
	p.answer.Store(a)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		p.calls.Add(1)
		id := idOf(body)
		w.Header().Set("Content-Type", "application/json")
		a := p.answer.Load()
		if a == nil {
			_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":`+id+`,"result":"0x1"}`)
			return
		}
		for k, v := range a.header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(a.status)
		_, _ = io.WriteString(w, strings.ReplaceAll(a.body, "@ID@", id))
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return p
}

// wsProvider is a websocket provider: it answers each call with the body of answer
// (nil: the result "0x1"), or, with closeCode set, closes the socket with that code
// and reason at the first call.
type wsProvider struct {
	url       string
	calls     atomic.Int64
	answer    atomic.Pointer[providerAnswer]
	closeCode int
	reason    string
	silent    atomic.Bool // takes calls, answers none (a blackholed route)
}

func newWSProvider(t *testing.T, a *providerAnswer, closeCode int, reason string) *wsProvider {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &wsProvider{url: "ws://" + ln.Addr().String(), closeCode: closeCode, reason: reason}
	p.answer.Store(a)
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			_, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			p.calls.Add(1)
			if p.silent.Load() {
				continue
			}
			if p.closeCode != 0 {
				_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(p.closeCode, p.reason))
				return
			}
			id := idOf(msg)
			out := `{"jsonrpc":"2.0","id":` + id + `,"result":"0x1"}`
			if a := p.answer.Load(); a != nil {
				out = strings.ReplaceAll(a.body, "@ID@", id)
			}
			if err := c.WriteMessage(websocket.TextMessage, []byte(out)); err != nil {
				return
			}
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return p
}
