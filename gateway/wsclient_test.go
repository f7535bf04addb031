package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

// wsTestClient is the tests' one websocket client: a reader goroutine feeds msgs and
// records how the connection ended. Methods without a testing.TB in their name report
// errors instead of failing the test, so they may run on any goroutine.
type wsTestClient struct {
	t     testing.TB
	conn  *websocket.Conn
	msgs  chan []byte
	done  chan struct{}
	errMu sync.Mutex
	err   error
	wmu   sync.Mutex
}

// wsWait bounds every wait for a websocket message.
const wsWait = 30 * time.Second

func dialWS(t testing.TB, url string, header map[string][]string) *wsTestClient {
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

// send writes one message; safe from any goroutine.
func (c *wsTestClient) send(msg string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.conn.WriteMessage(websocket.TextMessage, []byte(msg))
}

// recv returns the next message, or an error when the connection ends or nothing comes
// within wsWait; safe from any goroutine.
func (c *wsTestClient) recv() ([]byte, error) {
	select {
	case b := <-c.msgs:
		return b, nil
	case <-c.done:
		select { // a message may have arrived just before the end
		case b := <-c.msgs:
			return b, nil
		default:
		}
		return nil, fmt.Errorf("connection closed: %v", c.closeErr())
	case <-time.After(wsWait):
		return nil, errors.New("no message within " + wsWait.String())
	}
}

func (c *wsTestClient) closeErr() error {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return c.err
}

// mustSend, next, nextAnswer and call are for the test's own goroutine.
func (c *wsTestClient) mustSend(msg string) {
	c.t.Helper()
	if err := c.send(msg); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

func (c *wsTestClient) next() []byte {
	c.t.Helper()
	b, err := c.recv()
	if err != nil {
		c.t.Fatal(err)
	}
	return b
}

// nextAnswer skips subscription notifications, for wsWait at most: a live subscription
// must not keep a test waiting for an answer that never comes.
func (c *wsTestClient) nextAnswer() []byte {
	c.t.Helper()
	deadline := time.Now().Add(wsWait)
	for {
		b := c.next()
		if !strings.Contains(string(b), `"eth_subscription"`) {
			return b
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("no answer within %s, only subscription notifications", wsWait)
		}
	}
}

func (c *wsTestClient) call(msg string) []byte {
	c.t.Helper()
	c.mustSend(msg)
	return c.nextAnswer()
}

// expectClose waits for the gateway to close the connection and returns its close error.
func (c *wsTestClient) expectClose() error {
	c.t.Helper()
	deadline := time.After(wsWait)
	for {
		select {
		case <-c.msgs:
		case <-c.done:
			return c.closeErr()
		case <-deadline:
			c.t.Fatal("connection not closed")
		}
	}
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
