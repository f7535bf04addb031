package gateway

import (
	"bytes"
	"encoding/json"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/infura-gateway/infura-gateway/proto"
	"github.com/infura-gateway/infura-gateway/upstream"
)

// wsClient is one /socket2socket connection.
//
// Goroutines: the hijack handler reads (run); a writer goroutine exists only while
// messages are queued (drain), so an idle client costs one goroutine. Everything that
// answers the client (the Mux's reader, timers, run itself) only appends to the
// bounded queue under mu and never blocks; overflow closes the client with 1008.
//
// fasthttp recycles the hijacked connection as soon as the handler returns, so every
// goroutine other than the handler that touches conn (writer, pinger, shutdown) holds
// a use (acquire/release), and the handler waits for all uses before it returns.
type wsClient struct {
	h    *Socket2Socket
	conn *websocket.Conn
	mux  *upstream.Mux

	inFlight atomic.Int32
	pinger   *time.Timer

	lifeMu   sync.Mutex
	finished bool
	users    sync.WaitGroup

	mu      sync.Mutex
	queue   []outMsg
	spare   []outMsg
	writing bool // a drain goroutine runs
	closed  bool
}

// outMsg is a queued message: a pooled buffer we own, or a shared notification frame.
type outMsg struct {
	b   []byte
	buf *[]byte // non-nil when b is ours to return to the pool
}

var msgPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func getMsgBuf() *[]byte { return msgPool.Get().(*[]byte) }

func putMsgBuf(b *[]byte) {
	if cap(*b) <= 1<<20 {
		*b = (*b)[:0]
		msgPool.Put(b)
	}
}

func newWSClient(h *Socket2Socket, conn *websocket.Conn) *wsClient {
	return &wsClient{h: h, conn: conn, mux: h.cfg.Mux}
}

// run reads client messages until the connection ends, then cleans up.
func (c *wsClient) run() {
	cfg := &c.h.cfg
	alive := 2 * cfg.PingInterval
	c.conn.SetReadLimit(int64(cfg.MaxMessageBytes))
	_ = c.conn.SetReadDeadline(time.Now().Add(alive))
	c.conn.SetPongHandler(func(string) error { return c.conn.SetReadDeadline(time.Now().Add(alive)) })
	c.pinger = time.AfterFunc(cfg.PingInterval, c.ping)
	defer c.cleanup()
	for {
		_, r, err := c.conn.NextReader()
		if err != nil {
			return
		}
		buf := getMsgBuf()
		*buf, err = readMessage(r, (*buf)[:0])
		if err != nil {
			putMsgBuf(buf)
			return
		}
		wsClientMsgsIn.Inc()
		if c.isClosed() {
			putMsgBuf(buf) // closing: waiting for the client's close frame, not serving
			continue
		}
		_ = c.conn.SetReadDeadline(time.Now().Add(alive))
		c.handle(*buf)
		putMsgBuf(buf)
	}
}

func readMessage(r io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

func (c *wsClient) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// acquire registers a use of conn by a goroutine other than the handler; false once
// the handler is finishing.
func (c *wsClient) acquire() bool {
	c.lifeMu.Lock()
	defer c.lifeMu.Unlock()
	if c.finished {
		return false
	}
	c.users.Add(1)
	return true
}

func (c *wsClient) release() { c.users.Done() }

func (c *wsClient) ping() {
	if !c.acquire() {
		return
	}
	defer c.release()
	if err := c.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.h.cfg.WriteTimeout)); err != nil {
		_ = c.conn.SetReadDeadline(time.Now())
		return
	}
	c.pinger.Reset(c.h.cfg.PingInterval)
}

// cleanup runs when the read loop ends, before the handler returns: queued messages
// are dropped, other users of conn are waited for, and the client's subscriptions are
// left (unsubscribed upstream when nobody else holds them).
func (c *wsClient) cleanup() {
	c.mu.Lock()
	c.closed = true
	c.releaseLocked()
	c.mu.Unlock()
	c.lifeMu.Lock()
	c.finished = true
	c.lifeMu.Unlock()
	c.pinger.Stop()
	_ = c.conn.SetWriteDeadline(time.Now()) // a writer blocked on a dead peer returns now
	c.users.Wait()
	if c.mux != nil {
		c.mux.LeaveAll(c)
	}
	_ = c.conn.Close()
}

func (c *wsClient) releaseLocked() {
	for i, m := range c.queue {
		if m.buf != nil {
			putMsgBuf(m.buf)
		}
		c.queue[i] = outMsg{}
	}
	c.queue = c.queue[:0]
}

// closeGrace is how long a closed client has to answer our close frame before its
// read loop gives up. Waiting for the answer lets the client read the close frame:
// closing a socket with unread input resets it, and the client would see a reset.
const closeGrace = 2 * time.Second

// shutdown closes the client from another goroutine: a close frame, then a short read
// deadline ends its read loop once the client answers (or does not).
func (c *wsClient) shutdown(code int, reason string) {
	if !c.acquire() {
		return // the handler is ending anyway
	}
	defer c.release()
	c.mu.Lock()
	c.closed = true
	c.releaseLocked()
	c.mu.Unlock()
	_ = c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason),
		time.Now().Add(time.Second))
	_ = c.conn.SetReadDeadline(time.Now().Add(closeGrace))
}

// Reply implements upstream.Sink: the answer to a call or an eth_subscribe.
func (c *wsClient) Reply(msg []byte) {
	c.inFlight.Add(-1)
	if msg != nil {
		c.send(msg)
	}
}

// Notify implements upstream.Sink: a subscription notification, shared and immutable.
func (c *wsClient) Notify(frame []byte) { c.enqueue(outMsg{b: frame}) }

// send queues a copy of msg.
func (c *wsClient) send(msg []byte) {
	buf := getMsgBuf()
	*buf = append((*buf)[:0], msg...)
	c.enqueue(outMsg{b: *buf, buf: buf})
}

// enqueue never blocks: it appends to the client's queue and starts a writer if none
// runs. A full queue means the client reads slower than it is sent to: it is dropped.
func (c *wsClient) enqueue(m outMsg) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		if m.buf != nil {
			putMsgBuf(m.buf)
		}
		return
	}
	if len(c.queue) >= c.h.cfg.QueueSize {
		c.closed = true
		c.releaseLocked()
		c.mu.Unlock()
		if m.buf != nil {
			putMsgBuf(m.buf)
		}
		wsSlowClientsDrops.Inc()
		// Off this goroutine: it may be the Mux reader, and the close frame may wait on
		// the slow client's full TCP window.
		go c.shutdown(websocket.ClosePolicyViolation, "client too slow: outbound queue full")
		return
	}
	c.queue = append(c.queue, m)
	if !c.writing && c.acquire() {
		c.writing = true
		go c.drain()
	}
	c.mu.Unlock()
}

// drain writes queued messages until the queue is empty, then ends. It holds a use
// of conn (taken by enqueue).
func (c *wsClient) drain() {
	defer c.release()
	for {
		c.mu.Lock()
		if len(c.queue) == 0 || c.closed {
			c.writing = false
			c.mu.Unlock()
			return
		}
		batch := c.queue
		c.queue, c.spare = c.spare[:0], nil
		c.mu.Unlock()

		var err error
		for i, m := range batch {
			if err == nil {
				_ = c.conn.SetWriteDeadline(time.Now().Add(c.h.cfg.WriteTimeout))
				if err = c.conn.WriteMessage(websocket.TextMessage, m.b); err == nil {
					wsClientMsgsOut.Inc()
				}
			}
			if m.buf != nil {
				putMsgBuf(m.buf)
			}
			batch[i] = outMsg{}
		}
		c.mu.Lock()
		c.spare = batch[:0]
		c.mu.Unlock()
		if err != nil {
			c.mu.Lock()
			c.closed = true
			c.writing = false
			c.releaseLocked()
			c.mu.Unlock()
			_ = c.conn.SetReadDeadline(time.Now()) // ends the read loop
			return
		}
	}
}

// handle answers one client message.
func (c *wsClient) handle(msg []byte) {
	switch proto.FirstByte(msg) {
	case '{':
		c.handleOne(msg)
	case '[':
		c.handleBatch(msg)
	default:
		if proto.Valid(msg) {
			c.sendError(nil, proto.ErrInvalidRequest)
		} else {
			c.sendError(nil, proto.ErrParse)
		}
	}
}

func (c *wsClient) sendError(id []byte, e *proto.Error) {
	buf := getMsgBuf()
	*buf = proto.AppendError((*buf)[:0], id, e)
	c.enqueue(outMsg{b: *buf, buf: buf})
}

var errTooManyInFlight = proto.NewError(proto.CodeLimitExceeded, 429, "too many requests in flight on this connection")

var errSubInBatch = proto.NewError(proto.CodeMethodNotFound, 200, "eth_subscribe and eth_unsubscribe are not supported inside batches")

// check classifies one request object: its id span (zero when a notification), the
// method name, and an error to answer locally instead of forwarding.
func (c *wsClient) check(b []byte, m *proto.Message) (method []byte, perr *proto.Error) {
	end, err := proto.ScanMessage(b, m)
	if err != nil || proto.SkipWS(b, end) != len(b) {
		m.ID = proto.Span{}
		return nil, proto.ErrParse
	}
	if m.ID.Present() && (b[m.ID.Start] == '{' || b[m.ID.Start] == '[') {
		m.ID = proto.Span{}
		return nil, proto.ErrInvalidRequest
	}
	if !m.Method.Present() || b[m.Method.Start] != '"' {
		return nil, proto.ErrInvalidRequest
	}
	method = b[m.Method.Start+1 : m.Method.End-1]
	if bytes.IndexByte(method, '\\') >= 0 {
		// The node decodes escapes: so must the deny list, or "admin\u005fpeers" passes.
		var s string
		if json.Unmarshal(m.Method.Bytes(b), &s) != nil {
			return nil, proto.ErrInvalidRequest
		}
		method = []byte(s)
	}
	if c.h.cfg.Denied(method) {
		return method, proto.ErrMethodNotFound
	}
	return method, nil
}

func (c *wsClient) handleOne(msg []byte) {
	var m proto.Message
	method, perr := c.check(msg, &m)
	id := m.ID.Bytes(msg)
	if perr != nil {
		if m.ID.Present() || perr == proto.ErrParse || perr == proto.ErrInvalidRequest {
			c.sendError(id, perr)
		}
		return
	}
	if m.ID.Present() && c.inFlight.Load() >= int32(c.h.cfg.MaxInFlight) {
		c.sendError(id, errTooManyInFlight)
		return
	}
	switch string(method) {
	case "eth_subscribe":
		if !m.ID.Present() {
			return // a notification cannot receive its subscription id
		}
		params := m.Params.Bytes(msg)
		if !m.Params.Present() {
			params = []byte("[]")
		}
		c.inFlight.Add(1)
		c.mux.Join(params, id, c, time.Time{})
	case "eth_unsubscribe":
		if !m.ID.Present() {
			return
		}
		res := "false"
		if gw := firstStringParam(msg, m.Params); gw != nil && c.mux.Leave(c, gw) {
			res = "true"
		}
		buf := getMsgBuf()
		*buf = append(append(append(append((*buf)[:0], `{"jsonrpc":"2.0","id":`...), id...), `,"result":`...), res...)
		*buf = append(*buf, '}')
		c.enqueue(outMsg{b: *buf, buf: buf})
	default:
		c.inFlight.Add(1)
		c.mux.Send(msg, nil, time.Time{}, c)
	}
}

// firstStringParam returns the contents of params[0] when it is a plain string.
func firstStringParam(b []byte, params proto.Span) []byte {
	if !params.Present() || b[params.Start] != '[' {
		return nil
	}
	it, err := proto.NewArrayIter(params.Bytes(b))
	if err != nil {
		return nil
	}
	el, ok, err := it.Next()
	if err != nil || !ok {
		return nil
	}
	s := el.Bytes(params.Bytes(b))
	if len(s) < 2 || s[0] != '"' || bytes.IndexByte(s, '\\') >= 0 {
		return nil
	}
	return s[1 : len(s)-1]
}

// handleBatch forwards the valid elements of a batch as one upstream batch; elements it
// refuses are answered in the same batch answer.
func (c *wsClient) handleBatch(msg []byte) {
	it, err := proto.NewArrayIter(msg)
	if err != nil {
		c.sendError(nil, proto.ErrParse)
		return
	}
	fwd, local := getMsgBuf(), getMsgBuf()
	defer putMsgBuf(fwd)
	defer putMsgBuf(local)
	*fwd = append((*fwd)[:0], '[')
	*local = (*local)[:0]
	n, forwarded, withID := 0, 0, 0
	var m proto.Message
	for {
		el, ok, err := it.Next()
		if err != nil || (!ok && proto.SkipWS(msg, it.Pos()) != len(msg)) {
			c.sendError(nil, proto.ErrParse)
			return
		}
		if !ok {
			break
		}
		if n++; n > c.h.cfg.MaxBatch {
			c.sendError(nil, proto.ErrBatchTooLarge)
			return
		}
		e := el.Bytes(msg)
		var perr *proto.Error
		var method []byte
		if e[0] != '{' {
			perr, m.ID = proto.ErrInvalidRequest, proto.Span{}
		} else {
			method, perr = c.check(e, &m)
			if perr == nil && (string(method) == "eth_subscribe" || string(method) == "eth_unsubscribe") {
				perr = errSubInBatch
			}
		}
		if perr != nil {
			if m.ID.Present() || perr == proto.ErrParse || perr == proto.ErrInvalidRequest {
				if len(*local) > 0 {
					*local = append(*local, ',')
				}
				*local = proto.AppendError(*local, m.ID.Bytes(e), perr)
			}
			continue
		}
		if forwarded > 0 {
			*fwd = append(*fwd, ',')
		}
		*fwd = append(*fwd, e...)
		forwarded++
		if m.ID.Present() {
			withID++
		}
	}
	if n == 0 {
		c.sendError(nil, proto.ErrEmptyBatch)
		return
	}
	if forwarded == 0 {
		if len(*local) > 0 {
			out := getMsgBuf()
			*out = append(append(append((*out)[:0], '['), *local...), ']')
			c.enqueue(outMsg{b: *out, buf: out})
		}
		return
	}
	if withID > 0 && c.inFlight.Load() >= int32(c.h.cfg.MaxInFlight) {
		// Refuse the whole batch: one error, as for a batch over the size cap.
		c.sendError(nil, errTooManyInFlight)
		return
	}
	*fwd = append(*fwd, ']')
	c.inFlight.Add(1)
	c.mux.Send(*fwd, *local, time.Time{}, c)
}
