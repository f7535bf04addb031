//go:build soak

package failover_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fasthttp/websocket"
)

// The soak's clients are light on purpose: ten thousand of them share the test
// process with the measurement, so each keeps one goroutine, one read buffer and, per
// head, its number, the first 8 bytes of its hash and when it arrived (subrec keeps
// every message whole, which at this scale is the test's own memory problem).

// soakHead is one newHeads notification as a client received it.
type soakHead struct {
	num  uint32
	at   time.Duration // since the soak's epoch
	hash uint64        // the first 8 bytes of the block hash
}

// soakClient is one websocket subscribed to newHeads (through the gateway, or the
// reference subscriber straight on the node).
type soakClient struct {
	conn  *websocket.Conn
	epoch time.Time

	mu      sync.Mutex
	id      string // the subscription id eth_subscribe answered
	heads   []soakHead
	foreign int   // notifications carrying another subscription id
	stray   int   // messages that are neither the answer nor a head
	err     error // why the socket ended under the client

	subscribed atomic.Bool
	last       atomic.Uint32 // the highest head number received
	done       chan struct{}
}

var subscribeNewHeads = []byte(`{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]}`)

// dialSoak opens a websocket to url with small buffers (a notification is about 1 KB:
// larger ones take two reads), sends eth_subscribe newHeads and starts the reader.
func dialSoak(ctx context.Context, url string, epoch time.Time) (*soakClient, error) {
	d := websocket.Dialer{ReadBufferSize: 2048, WriteBufferSize: 512, HandshakeTimeout: time.Minute}
	conn, _, err := d.DialContext(ctx, url, nil)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", url, err)
	}
	_ = conn.SetWriteDeadline(time.Now().Add(time.Minute))
	if err := conn.WriteMessage(websocket.TextMessage, subscribeNewHeads); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("eth_subscribe: %w", err)
	}
	c := &soakClient{conn: conn, epoch: epoch, done: make(chan struct{})}
	go c.read()
	return c, nil
}

func (c *soakClient) read() {
	defer close(c.done)
	var buf bytes.Buffer
	buf.Grow(1536) // a notification is about 1 KB
	for {
		_, r, err := c.conn.NextReader()
		if err == nil {
			buf.Reset()
			_, err = buf.ReadFrom(r)
		}
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
		c.handle(buf.Bytes(), time.Since(c.epoch))
	}
}

func (c *soakClient) handle(msg []byte, at time.Duration) {
	if sub := jsonString(msg, `"subscription":"`); sub != nil {
		num, hash, ok := parseHead(msg)
		c.mu.Lock()
		switch {
		case string(sub) != c.id:
			c.foreign++
		case !ok:
			c.stray++
		default:
			c.heads = append(c.heads, soakHead{num: num, at: at, hash: hash})
		}
		c.mu.Unlock()
		if ok && num > c.last.Load() {
			c.last.Store(num) // only this goroutine stores
		}
		return
	}
	if id := jsonString(msg, `"result":"`); id != nil && !c.subscribed.Load() {
		c.mu.Lock()
		c.id = string(id)
		c.mu.Unlock()
		c.subscribed.Store(true)
		return
	}
	c.mu.Lock()
	c.stray++
	c.mu.Unlock()
}

// snapshot returns what the client has received so far.
func (c *soakClient) snapshot() (id string, heads []soakHead, foreign, stray int, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.id, slices.Clone(c.heads), c.foreign, c.stray, c.err
}

func (c *soakClient) close() {
	_ = c.conn.Close()
	<-c.done
}

// jsonString returns the string value that follows key (which ends with its opening
// quote), or nil. The keys it is used with occur once in the messages read here.
func jsonString(msg []byte, key string) []byte {
	i := bytes.Index(msg, []byte(key))
	if i < 0 {
		return nil
	}
	rest := msg[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return nil
	}
	return rest[:j]
}

// parseHead reads a newHeads notification's block number and the first 8 bytes of its
// hash. `"hash":"` is the block hash's key alone: the other hashes' keys end in Hash.
func parseHead(msg []byte) (num uint32, hash uint64, ok bool) {
	n := jsonString(msg, `"number":"0x`)
	h := jsonString(msg, `"hash":"0x`)
	if n == nil || len(h) < 16 {
		return 0, 0, false
	}
	v, err := strconv.ParseUint(string(n), 16, 32)
	if err != nil {
		return 0, 0, false
	}
	hv, err := strconv.ParseUint(string(h[:16]), 16, 64)
	if err != nil {
		return 0, 0, false
	}
	return uint32(v), hv, true
}

// hashPrefix is the first 8 bytes of a 0x-prefixed hash, as parseHead keeps them.
func hashPrefix(h string) uint64 {
	if len(h) < 18 {
		return 0
	}
	v, _ := strconv.ParseUint(h[2:18], 16, 64)
	return v
}

// A non-reader: subscribed to newHeads like the others, it then asks for large answers
// and never reads them. Its receive buffer is small (SO_RCVBUF before connect), so the
// gateway's socket fills after a few answers and the rest stays in the gateway's
// outbound queue until the byte budget (-ws-client-queue-bytes) drops the client.
type nonReader struct {
	conn     *websocket.Conn
	sent     int
	writeErr error // the write that failed once the gateway had closed the socket
	closeErr error // what reading, once the phase is over, ended with
}

// bigCall is an eth_call whose answer is 128 KiB of zeros (about 256 KB of hex): the
// code in the state override is PUSH3 0x020000 PUSH1 0 RETURN. It is the same call
// every time, so the gateway's cache answers most of them, not the node.
var bigCall = []byte(`{"jsonrpc":"2.0","id":2,"method":"eth_call","params":[{"to":"0x00000000000000000000000000000000000000aa","data":"0x"},"latest",{"0x00000000000000000000000000000000000000aa":{"code":"0x620200006000f3"}}]}`)

// bigAnswerBytes is the size of bigCall's answer, about: for the report.
const bigAnswerBytes = 2*128<<10 + 40

func dialNonReader(ctx context.Context, url string) (*nonReader, error) {
	nd := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	d := websocket.Dialer{NetDialContext: nd.DialContext, ReadBufferSize: 1024, WriteBufferSize: 1024, HandshakeTimeout: time.Minute}
	conn, _, err := d.DialContext(ctx, url, nil)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", url, err)
	}
	n := &nonReader{conn: conn}
	_ = conn.SetWriteDeadline(time.Now().Add(time.Minute))
	if err := conn.WriteMessage(websocket.TextMessage, subscribeNewHeads); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("eth_subscribe: %w", err)
	}
	// It reads until its subscription is confirmed, and then never again.
	_ = conn.SetReadDeadline(time.Now().Add(time.Minute))
	for {
		_, msg, err := conn.ReadMessage()
		if err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("eth_subscribe answer: %w", err)
		}
		if jsonString(msg, `"subscription":"`) == nil && jsonString(msg, `"result":"`) != nil {
			break
		}
	}
	_ = conn.SetReadDeadline(time.Time{})
	return n, nil
}

// flood sends bigCall every interval until a write fails (the gateway has closed the
// socket), max calls are sent, or stop is closed.
func (n *nonReader) flood(stop <-chan struct{}, interval time.Duration, max int) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for n.sent < max {
		_ = n.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err := n.conn.WriteMessage(websocket.TextMessage, bigCall); err != nil {
			n.writeErr = err
			return
		}
		n.sent++
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
}

// drainUntilClosed reads what the gateway sent until the socket ends (within), and
// keeps how it ended: a close frame (1008 expected), or the connection reset or
// ended without one (the gateway's close frame could not get past the full buffers).
func (n *nonReader) drainUntilClosed(within time.Duration) {
	_ = n.conn.SetReadDeadline(time.Now().Add(within))
	for {
		if _, _, err := n.conn.NextReader(); err != nil {
			n.closeErr = err
			_ = n.conn.Close()
			return
		}
	}
}

// closeCode is the close code the non-reader received, 0 for none.
func (n *nonReader) closeCode() int {
	if ce, ok := n.closeErr.(*websocket.CloseError); ok {
		return ce.Code
	}
	return 0
}

// timedOut says the non-reader's socket did not end within drainUntilClosed's time.
func (n *nonReader) timedOut() bool {
	var ne net.Error
	if e, ok := n.closeErr.(net.Error); ok {
		ne = e
	}
	return ne != nil && ne.Timeout()
}
