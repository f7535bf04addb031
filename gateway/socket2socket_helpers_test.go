package gateway

import (
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
	"github.com/infura-gateway/infura-gateway/upstream"
)

// s2sEnv is a Socket2Socket endpoint mounted alone on a loopback fasthttp server, in
// front of a Mux on a real geth --dev node.
type s2sEnv struct {
	node *testnode.Node
	mux  *upstream.Mux
	h    *Socket2Socket
	url  string
}

func startS2S(t testing.TB, node *testnode.Node, mod func(*SocketConfig)) *s2sEnv {
	t.Helper()
	if node == nil {
		node = testnode.Start(t)
	}
	mcfg := upstream.MuxConfig{URL: node.WSURL, Conns: 2, BackoffMin: 20 * time.Millisecond,
		BackoffMax: 500 * time.Millisecond, RequestTimeout: 20 * time.Second}
	cfg := SocketConfig{MuxConfig: mcfg, Denied: newDenyList([]string{"admin_", "debug_", "personal_"}).denied}
	if mod != nil {
		mod(&cfg)
	}
	e := &s2sEnv{node: node}
	if !cfg.PerClient {
		e.mux = upstream.NewMux(cfg.MuxConfig)
		e.mux.Start()
		if err := e.mux.WaitReady(30 * time.Second); err != nil {
			t.Fatal(err)
		}
		cfg.Mux = e.mux
	}
	e.h = NewSocket2Socket(cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{MaxIdleWorkerDuration: 100 * time.Millisecond, Handler: func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/socket2socket" {
			e.h.Serve(ctx)
			return
		}
		ctx.Error("not found", fasthttp.StatusNotFound)
	}}
	done := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(done) }()
	t.Cleanup(func() {
		_ = srv.Shutdown()
		<-done
		e.h.Close()
		if e.mux != nil {
			e.mux.Close()
		}
	})
	e.url = "ws://" + ln.Addr().String() + "/socket2socket"
	return e
}

// wsTestClient is a test's websocket client: a reader goroutine feeds msgs.
type wsTestClient struct {
	t     testing.TB
	conn  *websocket.Conn
	msgs  chan []byte
	done  chan struct{}
	errMu sync.Mutex
	err   error
	wmu   sync.Mutex
}

func dialS2S(t testing.TB, url string, header map[string][]string) *wsTestClient {
	t.Helper()
	conn, resp, err := websocket.DefaultDialer.Dial(url, header)
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	c := &wsTestClient{t: t, conn: conn, msgs: make(chan []byte, 4096), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			_, b, err := conn.ReadMessage()
			if err != nil {
				c.errMu.Lock()
				c.err = err
				c.errMu.Unlock()
				return
			}
			c.msgs <- b
		}
	}()
	t.Cleanup(func() { _ = conn.Close(); <-c.done })
	return c
}

func (c *wsTestClient) send(msg string) {
	c.t.Helper()
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.conn.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

const s2sWait = 30 * time.Second

func (c *wsTestClient) next() []byte {
	c.t.Helper()
	select {
	case b := <-c.msgs:
		return b
	case <-c.done:
		c.t.Fatalf("connection closed: %v", c.closeErr())
	case <-time.After(s2sWait):
		c.t.Fatalf("no message within %v", s2sWait)
	}
	return nil
}

// nextAnswer skips subscription notifications.
func (c *wsTestClient) nextAnswer() []byte {
	c.t.Helper()
	for {
		b := c.next()
		if !strings.Contains(string(b), `"eth_subscription"`) {
			return b
		}
	}
}

func (c *wsTestClient) closeErr() error {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return c.err
}

func (c *wsTestClient) call(msg string) []byte {
	c.t.Helper()
	c.send(msg)
	return c.nextAnswer()
}

type rpcAnswer struct {
	ID     json.RawMessage `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Method string `json:"method"`
	Params struct {
		Subscription string          `json:"subscription"`
		Result       json.RawMessage `json:"result"`
	} `json:"params"`
}

func decodeAnswer(t testing.TB, b []byte) rpcAnswer {
	t.Helper()
	var a rpcAnswer
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatalf("answer %s: %v", b, err)
	}
	return a
}
