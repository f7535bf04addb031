package gateway

import (
	"errors"
	"io"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/fasthttp/websocket"
	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/gateway/access"
	"github.com/infura-gateway/infura-gateway/gateway/network"
	"github.com/infura-gateway/infura-gateway/gateway/pipeline"
	"github.com/infura-gateway/infura-gateway/proto"
	"github.com/infura-gateway/infura-gateway/upstream"
)

// wsClient is one /socket2socket connection.
//
// Goroutines: the hijack handler reads (run) and handles subscriptions itself; each
// call runs through the pipeline on a goroutine of its own (bounded by the in-flight and
// pending-bytes budgets), as go-ethereum's server does; a writer goroutine exists only
// while messages are queued (drain). Everything that answers the client only appends to
// the bounded queue under mu and never blocks; overflow closes the client with 1008.
//
// fasthttp recycles the hijacked connection as soon as the handler returns, so every
// goroutine other than the handler that touches conn (writer, pinger, shutdown) holds a
// use (acquire/release), and the handler waits for all uses before it returns. Call
// goroutines never touch conn; the handler waits for them too (calls).
type wsClient struct {
	h    *socketServer
	conn *websocket.Conn
	up   network.Caller // where calls go
	subs subscriber     // where subscriptions go

	// Whose limits its calls count against (socket2socket_access.go): ref, read on
	// every call, which a reload swaps; own is an unkeyed client's, found again by addr.
	ref  *access.Ref
	own  access.Ref
	addr netip.Addr
	// bound holds the client's connection slot and its subscriptions' slots; unbacked
	// counts subscriptions left without one by a plan change (about to end).
	whoMu    sync.Mutex
	bound    *access.Tenant
	unbacked int32
	gone     bool // the handler has ended

	// refusals counts limit refusals in a row: a client that keeps pushing past its
	// limits is closed (1008) rather than answered forever.
	refusals atomic.Int32

	// Budgets of this connection: calls in flight (notifications and batch elements
	// count), request bytes in flight, subscriptions held.
	inFlight atomic.Int32
	pending  *pipeline.Budget
	nsubs    atomic.Int32
	pinger   *time.Timer

	lifeMu   sync.Mutex
	finished bool
	users    sync.WaitGroup

	mu          sync.Mutex
	queue       []outMsg
	spare       []outMsg
	queuedBytes int
	writing     bool // a drain goroutine runs
	closed      bool
	closing     bool // a close is queued behind the messages before it
}

// outMsg is a queued message: a pooled buffer we own, or a shared notification frame.
type outMsg struct {
	b     []byte
	buf   *[]byte // non-nil when b is ours to return to the pool
	close int     // not 0: a close frame with this code, b its reason
}

var msgPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func getMsgBuf() *[]byte { return msgPool.Get().(*[]byte) }

func putMsgBuf(b *[]byte) {
	if cap(*b) <= 1<<20 {
		*b = (*b)[:0]
		msgPool.Put(b)
	}
}

// subscriber is where a client's subscriptions go: the router's, which move between
// upstreams, or in per-client mode the client's own Mux.
type subscriber interface {
	Join(params, id []byte, sink upstream.Sink, deadline time.Time)
	Leave(sink upstream.Sink, gwID []byte) bool
	LeaveAll(sink upstream.Sink) int
	Holdings(sink upstream.Sink) []upstream.Holding
}

func newWSClient(h *socketServer, conn *websocket.Conn, up network.Caller, subs subscriber) *wsClient {
	return &wsClient{h: h, conn: conn, up: up, subs: subs, pending: pipeline.NewBudget(h.s.cfg.WSMaxPendingBytes)}
}

// run reads client messages until the connection ends, then cleans up.
func (c *wsClient) run() {
	cfg := &c.h.s.cfg
	alive := 2 * cfg.WSPingInterval
	c.conn.SetReadLimit(int64(cfg.MaxRequestBody))
	_ = c.conn.SetReadDeadline(time.Now().Add(alive))
	c.conn.SetPongHandler(func(string) error { return c.conn.SetReadDeadline(time.Now().Add(alive)) })
	c.pinger = time.AfterFunc(cfg.WSPingInterval, c.ping)
	defer c.cleanup()
	for {
		mt, r, err := c.conn.NextReader()
		if err != nil {
			return
		}
		buf := getMsgBuf()
		*buf, err = readMessage(r, (*buf)[:0])
		if err != nil {
			putMsgBuf(buf)
			return
		}
		c.h.msgsIn.Inc()
		if c.isClosed() {
			putMsgBuf(buf) // closing: waiting for the client's close frame, not serving
			continue
		}
		if mt == websocket.TextMessage && !utf8.Valid(*buf) {
			// RFC 6455 §8.1: a text message that is not UTF-8 fails the connection.
			putMsgBuf(buf)
			c.shutdown(websocket.CloseInvalidFramePayloadData, "invalid UTF-8 in a text message")
			continue
		}
		_ = c.conn.SetReadDeadline(time.Now().Add(alive))
		if !c.handle(buf) {
			putMsgBuf(buf)
		}
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
	return c.closed || c.closing
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
	if err := c.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.h.s.cfg.WSClientWriteTimeout)); err != nil {
		_ = c.conn.SetReadDeadline(time.Now())
		return
	}
	c.pinger.Reset(c.h.s.cfg.WSPingInterval)
}

// cleanup runs when the read loop ends, before the handler returns: queued messages are
// dropped (answers still to come will be too), other users of conn are waited for, and
// the client's subscriptions are left (unsubscribed upstream when nobody else holds
// them).
func (c *wsClient) cleanup() {
	c.mu.Lock()
	c.closed = true
	c.releaseLocked()
	c.mu.Unlock()
	c.lifeMu.Lock()
	c.finished = true
	c.lifeMu.Unlock()
	c.pinger.Stop()
	// A writer blocked on a dead peer returns now. On the net.Conn, not the websocket.Conn:
	// the websocket's deadline field belongs to the writer goroutine.
	_ = c.conn.NetConn().SetWriteDeadline(time.Now())
	c.users.Wait()
	if c.subs != nil {
		c.subs.LeaveAll(c)
	}
	c.dropAll()
	_ = c.conn.Close()
}

func (c *wsClient) releaseLocked() {
	for i, m := range c.queue {
		if m.buf != nil {
			putMsgBuf(m.buf)
		}
		c.queue[i] = outMsg{}
	}
	c.queue, c.queuedBytes = c.queue[:0], 0
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

// Reply implements upstream.Sink: the answer to an eth_subscribe. A refused
// subscription gives its place in the budgets back.
func (c *wsClient) Reply(msg []byte) {
	if proto.IsErrorResponse(msg) {
		c.dropSub()
	}
	c.send(msg)
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
// runs. A queue over its count or byte budget means the client reads slower than it is
// sent to: it is dropped. One message of any size always fits an empty queue.
func (c *wsClient) enqueue(m outMsg) {
	cfg := &c.h.s.cfg
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		if m.buf != nil {
			putMsgBuf(m.buf)
		}
		return
	}
	if m.close != 0 {
		c.closing = true // served no more; the close goes out after what is queued
	} else if len(c.queue) >= cfg.WSClientQueue || (len(c.queue) > 0 && c.queuedBytes+len(m.b) > cfg.WSClientQueueBytes) {
		c.closed = true
		c.releaseLocked()
		c.mu.Unlock()
		if m.buf != nil {
			putMsgBuf(m.buf)
		}
		c.h.slowDrops.Inc()
		// Off this goroutine: it may be the Mux reader, and the close frame may wait on
		// the slow client's full TCP window.
		go c.shutdown(websocket.ClosePolicyViolation, "client too slow: outbound queue full")
		return
	}
	c.queue = append(c.queue, m)
	c.queuedBytes += len(m.b)
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
	timeout := c.h.s.cfg.WSClientWriteTimeout
	for {
		c.mu.Lock()
		if len(c.queue) == 0 || c.closed {
			c.writing = false
			c.mu.Unlock()
			return
		}
		batch := c.queue
		c.queue, c.spare, c.queuedBytes = c.spare[:0], nil, 0
		c.mu.Unlock()

		var err error
		closing := false
		for i, m := range batch {
			if m.close != 0 && err == nil {
				// Everything queued before it is written: now the close frame.
				_ = c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(m.close, string(m.b)),
					time.Now().Add(time.Second))
				_ = c.conn.SetReadDeadline(time.Now().Add(closeGrace))
				err, closing = errClosing, true
			}
			if err == nil {
				_ = c.conn.SetWriteDeadline(time.Now().Add(timeout))
				if err = c.conn.WriteMessage(websocket.TextMessage, m.b); err == nil {
					c.h.msgsOut.Inc()
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
			if !closing {
				_ = c.conn.SetReadDeadline(time.Now()) // ends the read loop
			}
			return
		}
	}
}

var errClosing = errors.New("closing")

// closeWithError tells the client why in a JSON-RPC error frame (id null), then closes
// the connection with code: both go through the queue, so the frame is read first.
func (c *wsClient) closeWithError(code int, e *proto.Error, reason string) {
	c.mu.Lock()
	done := c.closed || c.closing
	c.mu.Unlock()
	if done {
		return
	}
	if len(reason) > 123 { // a close frame's reason has room for 123 bytes
		reason = reason[:123]
	}
	c.sendError(nil, e)
	c.enqueue(outMsg{b: []byte(reason), close: code})
}

func (c *wsClient) sendError(id []byte, e *proto.Error) {
	buf := getMsgBuf()
	*buf = proto.AppendError((*buf)[:0], id, e)
	c.enqueue(outMsg{b: *buf, buf: buf})
}

var (
	errTooManyInFlight = proto.NewError(proto.CodeLimitExceeded, 429,
		"too many requests in flight on this connection")
	errTooManyPendingBytes = proto.NewError(proto.CodeLimitExceeded, 429,
		"too many request bytes in flight on this connection")
	errTooManySubscriptions = proto.NewError(proto.CodeLimitExceeded, 429,
		"too many subscriptions on this connection")
	errGatewaySubscriptions = proto.NewError(proto.CodeLimitExceeded, 503,
		"too many subscriptions on this gateway, retry later")
)

// handle answers one client message. It reports whether it kept buf (a call goroutine
// owns it until the call ends).
func (c *wsClient) handle(buf *[]byte) bool {
	msg := *buf
	switch proto.FirstByte(msg) {
	case '[':
		return c.startBatch(buf)
	case 0:
		c.sendError(nil, proto.ErrParse)
		return false
	}
	cl := pipeline.GetCall(c.up, time.Now().Add(c.h.s.cfg.UpstreamTimeout))
	if perr := cl.Req.Parse(msg); perr != nil {
		c.sendError(cl.Req.ID, perr) // invalid requests are answered even without an id
		pipeline.PutCall(cl)
		return false
	}
	cl.ID = cl.Req.ID
	switch string(cl.Req.Name) {
	case "eth_subscribe":
		c.subscribe(cl)
		pipeline.PutCall(cl)
		return false
	case "eth_unsubscribe":
		c.unsubscribe(cl)
		pipeline.PutCall(cl)
		return false
	}
	// The policy first: what it refuses is answered here and never counts as in flight.
	who, ok := c.tenant()
	if !ok {
		c.refuseRevoked(cl.ID)
		pipeline.PutCall(cl)
		return false
	}
	cl.Who = who
	perr := c.h.s.net.Policy.Admit(&cl.Req)
	if perr == nil {
		perr = c.charge(c.h.s.pipe.Charge(cl))
	}
	if perr == nil {
		perr = c.admit(1, len(msg))
	}
	if perr != nil {
		if cl.ID != nil {
			c.sendError(cl.ID, perr)
		}
		pipeline.PutCall(cl)
		return false
	}
	go c.runCall(cl, buf, len(msg))
	return true
}

// maxRefusals is how many limit refusals in a row a client gets answered before it is
// closed with 1008: past its limit, a client that does not slow down is only load.
const maxRefusals = 100

// charge tracks the outcome of a limit check: refusals in a row close the client.
func (c *wsClient) charge(perr *proto.Error) *proto.Error {
	if perr == nil {
		if c.refusals.Load() != 0 {
			c.refusals.Store(0)
		}
		return nil
	}
	if perr.Status == fasthttp.StatusTooManyRequests && c.refusals.Add(1) == maxRefusals {
		go c.shutdown(websocket.ClosePolicyViolation, "rate limit exceeded repeatedly: "+perr.Message)
	}
	return perr
}

// admit takes n calls and size request bytes from the connection's budgets.
func (c *wsClient) admit(n, size int) *proto.Error {
	if c.inFlight.Add(int32(n)) > int32(c.h.s.cfg.WSMaxInFlight) {
		c.inFlight.Add(-int32(n))
		c.h.refused.Inc()
		return errTooManyInFlight
	}
	if !c.pending.Acquire(size) {
		c.inFlight.Add(-int32(n))
		c.h.refused.Inc()
		return errTooManyPendingBytes
	}
	return nil
}

func (c *wsClient) done(n, size int) {
	c.pending.Release(size)
	c.inFlight.Add(-int32(n))
}

// runCall runs one admitted call through the rest of the pipeline and queues its answer.
func (c *wsClient) runCall(cl *pipeline.Call, buf *[]byte, size int) {
	defer c.done(1, size)
	if perr := c.h.s.pipe.Dispatch(c.h.s.net, cl); perr != nil {
		if cl.ID != nil {
			c.sendError(cl.ID, perr)
		}
	} else if cl.Ans != nil {
		c.send(cl.Ans)
	}
	pipeline.PutCall(cl)
	putMsgBuf(buf)
}

// startBatch counts a batch's elements against the budgets and runs it on a goroutine.
func (c *wsClient) startBatch(buf *[]byte) bool {
	who, ok := c.tenant()
	if !ok {
		c.refuseRevoked(nil)
		return false
	}
	n := 0
	if it, err := proto.NewArrayIter(*buf); err == nil {
		for n <= c.h.s.cfg.MaxBatch {
			if _, ok, err := it.Next(); err != nil || !ok {
				break
			}
			n++
		}
	}
	if perr := c.admit(max(n, 1), len(*buf)); perr != nil {
		c.sendError(nil, perr) // one error for the batch, as for a batch over the size cap
		return false
	}
	go func() {
		defer c.done(max(n, 1), len(*buf))
		out := getMsgBuf()
		ans, perr := c.h.s.pipe.ServeBatch(c.h.s.net, (*out)[:0], *buf, c.up, time.Now().Add(c.h.s.cfg.UpstreamTimeout), who)
		if perr == nil || perr.Status == fasthttp.StatusTooManyRequests {
			perr = c.charge(perr)
		}
		*out = ans
		switch {
		case perr != nil:
			c.sendError(nil, perr)
			putMsgBuf(out)
		case len(ans) > 0:
			c.enqueue(outMsg{b: ans, buf: out})
		default:
			putMsgBuf(out) // only notifications: nothing to answer
		}
		putMsgBuf(buf)
	}()
	return true
}

// subscribe joins an eth_subscribe on the Mux, within the subscription budgets. Params
// are canonical, so subscriptions that differ only in whitespace share one upstream
// subscription.
func (c *wsClient) subscribe(cl *pipeline.Call) {
	if cl.ID == nil {
		return // a notification cannot receive its subscription id
	}
	if perr := c.h.s.net.Policy.Admit(&cl.Req); perr != nil {
		c.sendError(cl.ID, perr)
		return
	}
	who, ok := c.tenant()
	if !ok {
		c.refuseRevoked(cl.ID)
		return
	}
	// The tenant's plan: the method and its kind, one request and its cost; then the
	// budgets and a subscription slot.
	cl.Who = who
	perr := c.charge(c.h.s.pipe.Charge(cl))
	if perr == nil {
		perr = c.takeSub()
	}
	if perr != nil {
		c.sendError(cl.ID, perr)
		return
	}
	c.subs.Join(cl.Req.Params, cl.ID, c, time.Now().Add(c.h.s.cfg.UpstreamTimeout))
}

// unsubscribe answers eth_unsubscribe locally: the upstream subscription may be shared,
// and the Mux unsubscribes upstream when its last subscriber leaves.
func (c *wsClient) unsubscribe(cl *pipeline.Call) {
	if cl.ID == nil {
		return
	}
	res := "false"
	if gw := firstStringParam(cl.Req.Params); gw != nil && c.subs.Leave(c, gw) {
		res = "true"
		c.dropSub()
	}
	buf := getMsgBuf()
	*buf = append(append(append(append((*buf)[:0], `{"jsonrpc":"2.0","id":`...), cl.ID...), `,"result":`...), res...)
	*buf = append(*buf, '}')
	c.enqueue(outMsg{b: *buf, buf: buf})
}

// firstStringParam returns the decoded params[0] when it is a string.
func firstStringParam(params []byte) []byte {
	if proto.FirstByte(params) != '[' {
		return nil
	}
	s := proto.Nth(params, 0)
	if !s.Present() {
		return nil
	}
	var buf [128]byte
	v, ok := proto.DecodeString(buf[:], s.Bytes(params))
	if !ok {
		return nil
	}
	return append([]byte(nil), v...)
}
