package socket

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/fasthttp/websocket"

	"github.com/infura-gateway/infura-gateway/gateway/access"
	"github.com/infura-gateway/infura-gateway/gateway/network"
	"github.com/infura-gateway/infura-gateway/proto"
	"github.com/infura-gateway/infura-gateway/tracing"
	"github.com/infura-gateway/infura-gateway/upstream"
)

// wsClient is one /socket2socket connection.
//
// Goroutines: one reads (serve, run) and handles subscriptions itself; it is the only
// one an idle client has. Each call runs through the pipeline on a goroutine of its own
// (bounded by the in-flight and pending-bytes budgets), as go-ethereum's server does; a
// writer goroutine exists only while messages are queued (drain). Everything that
// answers the client only appends to the bounded queue under mu and never blocks;
// overflow closes the client with 1008.
//
// The read goroutine closes the connection when it ends, so every other goroutine that
// touches conn (writer, pinger, shutdown) holds a use (acquire/release), and the reader
// waits for all uses before it closes. Call goroutines never touch conn; the reader
// waits for them too (calls).
type wsClient struct {
	h    *Server
	conn *websocket.Conn
	up   network.Caller // where calls go
	subs subscriber     // where subscriptions go
	mux  *upstream.Mux  // the client's own Mux (-ws-per-client), closed when it ends

	// traceIn is the upgrade request's traceparent and request id, copied: the parent
	// and id of every call of the connection.
	traceIn tracing.In

	// Whose limits its calls count against (socket2socket_access.go): ref, read on
	// every call, which a reload swaps; own is an unkeyed client's, found again by addr.
	ref  *access.Ref
	own  access.Ref
	addr netip.Addr
	// checked: the last tenant whose plan had this network; version: the key table last
	// reviewed for (caller). The reader's alone once it runs.
	checked *access.Tenant
	version uint64
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
	// owed counts the eth_subscribe answers not yet given (Join to Reply): they queue a
	// message each, as calls in flight do (backpressure.go).
	owed       atomic.Int32
	room       chan struct{} // a token when the queue or inFlight shrank (backpressure.go)
	drainState               // drain.go
	pending    *network.Budget
	nsubs      atomic.Int32
	pinger     *time.Timer

	lifeMu   sync.Mutex
	finished bool
	users    sync.WaitGroup

	mu    sync.Mutex
	queue []outMsg
	spare []outMsg
	// queuedBytes counts the messages queued and those of the batch drain is writing,
	// until the batch is written: the byte budget covers both.
	queuedBytes int
	// notes counts the notifications in queue: -ws-client-queue bounds the others.
	notes   int
	writing bool // a drain goroutine runs
	closed  bool
	closing bool // a close is queued behind the messages before it

	// The subscriptions held (aliases.go): held and its writers under aliasMu; aliases,
	// nil unless one is held more than once, for Notify.
	aliasMu sync.Mutex
	held    []heldSub
	aliases atomic.Pointer[aliasTable]
}

// outMsg is a queued message: a pooled buffer we own, or a shared notification frame.
type outMsg struct {
	b     []byte
	buf   *[]byte // non-nil when b is ours to return to the pool
	close int     // not 0: a close frame with this code, b its reason
	held  int64   // what the answer budget holds for b (ours, past its floor), until written or dropped
	note  bool    // a subscription notification: bounded by the queue's bytes, not its count
}

// free gives back what m holds: its buffer to the pool, its bytes to the budget.
func (c *wsClient) free(m *outMsg) {
	if m.buf != nil {
		putMsgBuf(m.buf)
	}
	if m.held != 0 {
		c.h.pipe.Answers().Release(m.held)
	}
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

func newWSClient(h *Server, conn *websocket.Conn, up network.Caller, subs subscriber) *wsClient {
	return &wsClient{h: h, conn: conn, up: up, subs: subs, pending: network.NewBudget(h.cfg.WSMaxPendingBytes),
		room: make(chan struct{}, 1)}
}

// run reads client messages until the connection ends, then cleans up. Its frame is
// small and the work is done in receive: the goroutine waits in NextReader for as long
// as the client is idle, and a shallow stack there lets the garbage collector shrink the
// stack a busy moment grew.
func (c *wsClient) run() {
	c.start()
	defer c.cleanup()
	for {
		if c.waitRoom() { // backpressure.go
			// Not read while paused, its pongs did not move the deadline: it counts from now.
			_ = c.conn.SetReadDeadline(time.Now().Add(2 * c.h.cfg.WSPingInterval))
		}
		mt, r, err := c.conn.NextReader()
		if err != nil || !c.receive(mt, r) {
			return
		}
	}
}

// start sets the read deadline and limits, and starts the pings.
func (c *wsClient) start() {
	cfg := c.h.cfg
	alive := 2 * cfg.WSPingInterval
	c.conn.SetReadLimit(int64(cfg.MaxRequestBody))
	_ = c.conn.SetReadDeadline(time.Now().Add(alive))
	c.conn.SetPongHandler(func(string) error { return c.conn.SetReadDeadline(time.Now().Add(alive)) })
	c.pinger = time.AfterFunc(cfg.WSPingInterval, c.ping)
}

// receive reads and handles one message; false ends the connection.
//
//go:noinline
func (c *wsClient) receive(mt int, r io.Reader) bool {
	buf := getMsgBuf()
	var err error
	var held int
	*buf, held, err = readMessage(r, (*buf)[:0], c.h.cfg.MaxRequestBody, c.h.reading)
	if held != 0 {
		c.h.reading.Release(held) // read whole: the call budgets count it from here
	}
	if err == errReadingBudget {
		putMsgBuf(buf)
		c.h.refused.Inc()
		// The rest of the message is discarded as it comes (NextReader), not buffered.
		c.shutdown(websocket.CloseTryAgainLater, errReadingBudget.Error())
		return true
	}
	if err != nil {
		putMsgBuf(buf)
		return false
	}
	c.h.msgsIn.Inc()
	if c.isClosed() {
		putMsgBuf(buf) // closing: waiting for the client's close frame, not serving
		return true
	}
	if mt == websocket.TextMessage && !utf8.Valid(*buf) {
		// RFC 6455 §8.1: a text message that is not UTF-8 fails the connection.
		putMsgBuf(buf)
		c.shutdown(websocket.CloseInvalidFramePayloadData, "invalid UTF-8 in a text message")
		return true
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(2 * c.h.cfg.WSPingInterval))
	if !c.handle(buf) {
		putMsgBuf(buf)
	}
	return true
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
	if err := c.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.h.cfg.WSClientWriteTimeout)); err != nil {
		_ = c.conn.SetReadDeadline(time.Now())
		return
	}
	c.pinger.Reset(c.h.cfg.WSPingInterval)
}

// cleanup runs when the read loop ends, before the handler returns: queued messages are
// dropped (answers still to come will be too), other users of conn are waited for, and
// the client's subscriptions are left (unsubscribed upstream when nobody else holds
// them).
func (c *wsClient) cleanup() {
	c.mu.Lock()
	saidBye := c.closed || c.closing // the gateway closed it: a close frame went or was queued
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
	if saidBye {
		lingerClose(c.conn.NetConn())
		return
	}
	_ = c.conn.Close()
}

func (c *wsClient) releaseLocked() {
	c.byeLocked() // a close still queued never goes out: a drain waiting on it ends
	for i := range c.queue {
		c.free(&c.queue[i])
		c.queue[i] = outMsg{}
	}
	c.queue, c.queuedBytes, c.notes = c.queue[:0], 0, 0
	c.roomy()
}

// closeGrace is how long a closed client has to answer our close frame before its
// read loop gives up. Waiting for the answer lets the client read the close frame:
// closing a socket with unread input resets it, and the client would see a reset.
const closeGrace = 2 * time.Second

// closeLinger bounds how long, and closeLingerBytes how much, a connection the gateway
// closed is still read after its grace (lingerClose).
const (
	closeLinger      = 3 * time.Second
	closeLingerBytes = 1 << 20
)

// lingerClose closes a connection the gateway said goodbye to, whose client may not have
// read the close frame yet (a slow client still reading its backlog): the write side
// first, so the backlog and the close frame still go out, then whatever the client still
// sends (pongs, requests) is read and dropped until it closes, or for closeLinger and
// closeLingerBytes at most. Closed with input arriving, the socket would be reset, and a
// reset discards what the client had not read, the close frame with it.
func lingerClose(nc net.Conn) {
	if cw, ok := nc.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil &&
		nc.SetReadDeadline(time.Now().Add(closeLinger)) == nil {
		var buf [512]byte
		for read := 0; read < closeLingerBytes; {
			n, err := nc.Read(buf[:])
			if err != nil {
				break
			}
			read += n
		}
	}
	_ = nc.Close()
}

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
// subscription gives its place in the budgets back; a subscription the client holds
// already is answered with an id of its own (aliases.go). The eth_subscribe call counts
// now.
func (c *wsClient) Reply(msg []byte) {
	if c.owed.Add(-1) < 0 {
		c.owed.Add(1) // a Reply with no Join counted: never below 0
	}
	status := subscribeStatus(msg)
	c.h.calls.count(status)
	if proto.IsErrorResponse(msg) {
		c.dropSub()
		c.send(msg)
		return
	}
	c.send(c.holdReply(msg))
}

// Notify implements upstream.Sink: a subscription notification, shared and immutable;
// once more under each extra id the client holds it by (aliases.go).
func (c *wsClient) Notify(frame []byte) {
	if t := c.aliases.Load(); t != nil {
		c.notifyAliased(t, frame)
		return
	}
	c.enqueue(outMsg{b: frame, note: true})
}

// send queues a copy of msg.
func (c *wsClient) send(msg []byte) {
	buf := getMsgBuf()
	*buf = append((*buf)[:0], msg...)
	c.enqueue(outMsg{b: *buf, buf: buf})
}

// enqueue never blocks: it appends to the client's queue and starts a writer if none
// runs. A queue over its count or byte budget means the client reads slower than it is
// sent to: it is dropped. The bytes count what is queued and what drain is writing;
// one message of any size always fits when neither holds anything. Notifications count
// in the bytes only: the logs of one block come at once, hundreds of them, and a client
// reading as fast as it can fell behind such a burst for a moment and was dropped.
func (c *wsClient) enqueue(m outMsg) {
	cfg := c.h.cfg
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
	} else if !m.note && len(c.queue)-c.notes >= cfg.WSClientQueue ||
		c.queuedBytes > 0 && c.queuedBytes+len(m.b) > cfg.WSClientQueueBytes {
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
	if m.buf != nil {
		// A message of ours past the answer budget's floor (Hold counts nothing under
		// it) stays counted in -max-answer-bytes while it is queued or written: without
		// it a slow reader held its answers outside the bound, -ws-client-queue-bytes
		// each. Shared notification frames are not counted: one copy serves every
		// subscriber.
		m.held = c.h.pipe.Answers().Hold(len(m.b))
	}
	c.queue = append(c.queue, m)
	c.queuedBytes += len(m.b)
	if m.note {
		c.notes++
	}
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
	timeout := c.h.cfg.WSClientWriteTimeout
	for {
		c.mu.Lock()
		if len(c.queue) == 0 || c.closed {
			c.writing = false
			c.mu.Unlock()
			return
		}
		batch := c.queue
		c.queue, c.spare, c.notes = c.spare[:0], nil, 0
		c.mu.Unlock()

		var err error
		closing := false
		written := 0 // the batch's bytes, counted in queuedBytes until it is written
		for i, m := range batch {
			written += len(m.b)
			if m.close != 0 && err == nil {
				// Everything queued before it is written: now the close frame.
				_ = c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(m.close, string(m.b)),
					time.Now().Add(time.Second))
				_ = c.conn.SetReadDeadline(time.Now().Add(closeGrace))
				err, closing = errClosing, true
				c.mu.Lock()
				c.byeLocked()
				c.mu.Unlock()
			}
			if err == nil {
				_ = c.conn.SetWriteDeadline(time.Now().Add(timeout))
				if err = c.conn.WriteMessage(websocket.TextMessage, m.b); err == nil {
					c.h.msgsOut.Inc()
				}
			}
			c.free(&batch[i])
			batch[i] = outMsg{}
		}
		c.mu.Lock()
		c.spare = keptQueue(batch, c.h.cfg.WSClientQueue)
		if !c.closed { // closed: releaseLocked set it to 0
			c.queuedBytes -= written
		}
		c.mu.Unlock()
		c.roomy()
		if err != nil {
			c.mu.Lock()
			// Closed already: the deadline that failed the write was cleanup's (the reader
			// ended) or the client was counted when its queue overflowed.
			wasClosed := c.closed
			c.closed = true
			c.writing = false
			c.releaseLocked() // wakes the reader, if it waits for room (backpressure.go)
			c.mu.Unlock()
			if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() && !wasClosed {
				c.h.slowDrops.Inc() // read nothing for -ws-client-write-timeout: too slow
			}
			// A write failed: the read loop ends now, unless the close frame is out
			// (queued here, or by shutdown, after which writes fail with ErrCloseSent):
			// then it waits for the client's answer within the grace shutdown set.
			if !closing && !errors.Is(err, websocket.ErrCloseSent) {
				_ = c.conn.SetReadDeadline(time.Now()) // ends the read loop
			}
			return
		}
	}
}

var errClosing = errors.New("closing")

// closeFor tells the client why in a JSON-RPC error frame (answering the call id, or
// null), then closes the connection with code: both go through the queue, so the frame
// is read first.
func (c *wsClient) closeFor(id []byte, code int, e *proto.Error, reason string) {
	c.mu.Lock()
	done := c.closed || c.closing
	c.mu.Unlock()
	if done {
		return
	}
	if len(reason) > 123 { // a close frame's reason has room for 123 bytes
		reason = reason[:123]
	}
	c.sendError(id, e)
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
	errAddrSubscriptions = proto.NewError(proto.CodeLimitExceeded, 429,
		"too many subscriptions from this client address")
)

// keptQueue is the slice a drained batch leaves for the client's next queue: itself,
// emptied, unless a burst of notifications (bounded by bytes, not count) grew it past
// the queue's count bound. Kept, thousands of such slices would hold their burst's
// bookkeeping, about 50 bytes a message, for as long as each client stays connected.
func keptQueue(batch []outMsg, bound int) []outMsg {
	if cap(batch) > bound {
		return nil
	}
	return batch[:0]
}
