package upstream

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/proto"
)

// MuxConfig configures a Mux. The zero value of every field but URL means its default.
type MuxConfig struct {
	// URL of the upstream websocket (ws:// or wss://).
	URL string
	// TLSConfig is used for wss:// (default: system roots, TLS 1.2+).
	TLSConfig *tls.Config
	// Header is sent with every handshake, e.g. Authorization for Infura's project
	// secret (basic auth). It is never logged.
	Header http.Header
	// Conns is the number of shared upstream sockets (default 2).
	Conns int
	// QueueSize bounds the frames waiting for each socket's writer (default 4096).
	// A full queue answers proto.ErrOverloaded at once.
	QueueSize int
	// ReadLimit is the largest upstream message accepted (default 32 MiB, as
	// go-ethereum). A larger one breaks the connection (websocket protocol rule).
	ReadLimit int64
	// MaxResponseBytes makes Do answer proto.ErrResponseTooLarge above it (default ReadLimit).
	MaxResponseBytes int
	// PingInterval is how often each socket is pinged (default 30s); PongTimeout how long
	// past that a silent socket is declared dead (default 30s).
	PingInterval, PongTimeout time.Duration
	// DialTimeout bounds one connection attempt incl. the handshake (default 10s).
	DialTimeout time.Duration
	// WriteTimeout bounds one flush of queued frames (default 10s).
	WriteTimeout time.Duration
	// BackoffMin and BackoffMax bound the reconnect delay, doubled per failed attempt
	// with jitter (defaults 100ms and 10s).
	BackoffMin, BackoffMax time.Duration
	// RequestTimeout applies to calls made with a zero deadline (default 10s).
	RequestTimeout time.Duration
	// Logger receives connection events (default slog.Default()).
	Logger *slog.Logger
}

func (c *MuxConfig) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.Conns <= 0 {
		c.Conns = 2
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 4096
	}
	if c.ReadLimit <= 0 {
		c.ReadLimit = 32 << 20
	}
	if c.MaxResponseBytes <= 0 || int64(c.MaxResponseBytes) > c.ReadLimit {
		c.MaxResponseBytes = int(c.ReadLimit)
	}
	def(&c.PingInterval, 30*time.Second)
	def(&c.PongTimeout, 30*time.Second)
	def(&c.DialTimeout, 10*time.Second)
	def(&c.WriteTimeout, 10*time.Second)
	def(&c.BackoffMin, 100*time.Millisecond)
	def(&c.BackoffMax, 10*time.Second)
	def(&c.RequestTimeout, 10*time.Second)
	if c.BackoffMax < c.BackoffMin {
		c.BackoffMax = c.BackoffMin
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Sink receives the answers of asynchronous calls (Send, Join) and the notifications of
// subscriptions. Its methods are called from Mux goroutines (mostly a socket's reader)
// and must never block: a slow consumer must drop or queue, not wait.
type Sink interface {
	// Reply is called exactly once per Send or Join with the answer, ids restored to the
	// caller's bytes; nil for a request made only of notifications. msg is valid only
	// during the call.
	Reply(msg []byte)
	// Notify is called with each eth_subscription notification of a joined
	// subscription, params.subscription set to the gateway id Join answered with.
	// frame is shared by every subscriber and immutable: it may be kept, never modified.
	Notify(frame []byte)
}

// Mux multiplexes JSON-RPC calls and subscriptions over a few shared upstream websocket
// connections. Every method is safe for concurrent use.
type Mux struct {
	cfg   MuxConfig
	host  string // for logs: scheme and host only, never path (Infura's project id) or user info
	slots []*slot
	rr    atomic.Uint32
	ids   atomic.Uint64

	subs subState

	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	started atomic.Bool
	ready   chan struct{} // closed when a socket first comes up
	once    sync.Once
}

// NewMux returns a Mux; Start connects it.
func NewMux(cfg MuxConfig) *Mux {
	cfg.setDefaults()
	m := &Mux{cfg: cfg, ready: make(chan struct{})}
	if u, err := url.Parse(cfg.URL); err == nil {
		m.host = u.Scheme + "://" + u.Host
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.subs.init()
	m.slots = make([]*slot, cfg.Conns)
	for i := range m.slots {
		m.slots[i] = newSlot(m, i)
	}
	var seed [8]byte
	_, _ = rand.Read(seed[:])
	m.subs.prefix = binary.LittleEndian.Uint64(seed[:])
	return m
}

// Start dials every socket in the background; calls fail with proto.ErrUnavailable until
// one is up (see WaitReady).
func (m *Mux) Start() {
	if !m.started.CompareAndSwap(false, true) {
		return
	}
	for _, s := range m.slots {
		m.wg.Add(1)
		go s.run()
	}
}

// WaitReady waits until a socket is up or timeout passes.
func (m *Mux) WaitReady(timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-m.ready:
		return nil
	case <-t.C:
		return fmt.Errorf("upstream websocket %s: not connected after %v", m.host, timeout)
	case <-m.ctx.Done():
		return fmt.Errorf("upstream websocket %s: mux closed", m.host)
	}
}

// Close stops every goroutine of the Mux, answers every pending call with
// proto.ErrUnavailable and returns when all of them have ended.
func (m *Mux) Close() {
	m.cancel()
	m.wg.Wait()
}

// pick returns the next connected socket round robin, or nil.
func (m *Mux) pick() *slot {
	n := uint32(len(m.slots))
	start := m.rr.Add(1)
	for i := uint32(0); i < n; i++ {
		if s := m.slots[(start+i)%n]; s.isUp.Load() {
			return s
		}
	}
	return nil
}

func (m *Mux) nextIDs(n int) uint64 { return m.ids.Add(uint64(n)) - uint64(n) + 1 }

func (m *Mux) deadline(d time.Time) time.Duration {
	if d.IsZero() {
		return m.cfg.RequestTimeout
	}
	return time.Until(d)
}

// Do sends one JSON-RPC request or batch (body: raw JSON with the client's ids) and
// writes the upstream's answer, ids restored to the client's bytes, into resp's body.
// A request made only of notifications gets an empty body. Errors are *proto.Error
// values: ErrTimeout, ErrUnavailable, ErrOverloaded, ErrResponseTooLarge, ErrParse,
// ErrInvalidRequest.
func (m *Mux) Do(method Method, body []byte, resp *fasthttp.Response, deadline time.Time) error {
	start := time.Now()
	c := getCall(kindSync)
	perr := c.prepare(body, nil, m.nextIDs)
	if perr == nil && c.n == 0 {
		// Only notifications: once queued the writer owns c, and nothing will answer.
		if s := m.pick(); s == nil || s.register(c, 0) != nil {
			putCall(c)
		}
		resp.ResetBody()
		ObserveCall(TransportWS, method, OutcomeOK, start)
		return nil
	}
	if perr == nil {
		perr = proto.ErrUnavailable
		if s := m.pick(); s != nil {
			perr = s.register(c, m.deadline(deadline))
		}
	}
	if perr != nil {
		putCall(c)
		ObserveCall(TransportWS, method, outcomeOf(perr), start)
		return perr
	}
	<-c.done
	outcome := OutcomeOK
	switch {
	case c.err != nil:
		perr = c.err
		outcome = outcomeOf(perr)
	case len(c.resp) > m.cfg.MaxResponseBytes:
		perr = proto.ErrResponseTooLarge
		outcome = OutcomeError
	default:
		if c.rpcError {
			outcome = OutcomeRPCError
		}
		// Hand the answer to resp without copying; resp's old buffer becomes the call's.
		c.resp = resp.SwapBody(c.resp)[:0]
	}
	if c.keep {
		putCall(c)
	}
	ObserveCall(TransportWS, method, outcome, start)
	if perr != nil {
		return perr
	}
	return nil
}

func outcomeOf(e *proto.Error) Outcome {
	switch e {
	case proto.ErrTimeout:
		return OutcomeTimeout
	case proto.ErrUnavailable, proto.ErrShuttingDown:
		return OutcomeUnavailable
	case proto.ErrOverloaded:
		return OutcomeOverloaded
	}
	return OutcomeError
}

// Send is the asynchronous Do: sink.Reply gets the answer (or a JSON-RPC error carrying
// each client id) exactly once, possibly before Send returns. local holds
// comma-separated answers the caller made itself for elements of a batch it did not
// forward; they are merged into the batch answer. body must hold at least one element.
func (m *Mux) Send(body, local []byte, deadline time.Time, sink Sink) {
	c := getCall(kindAsync)
	c.sink = sink
	if perr := c.prepare(body, local, m.nextIDs); perr != nil {
		// Could not even find the ids: answer as the node would.
		c.resp = proto.AppendError(c.resp[:0], nil, perr)
		sink.Reply(c.resp)
		putCall(c)
		return
	}
	if c.n == 0 {
		m.sendNotifications(c, local, sink)
		return
	}
	s := m.pick()
	perr := proto.ErrUnavailable
	if s != nil {
		perr = s.register(c, m.deadline(deadline))
	}
	if perr != nil {
		c.appendErrors(perr)
		sink.Reply(c.resp)
		putCall(c)
	}
}

// sendNotifications sends a request that expects no answer and answers sink with the
// local part of a batch, if any.
func (m *Mux) sendNotifications(c *call, local []byte, sink Sink) {
	buf := getBuf()
	if len(local) > 0 {
		*buf = append(append(append((*buf)[:0], '['), local...), ']')
	}
	if s := m.pick(); s == nil || s.register(c, 0) != nil {
		putCall(c) // not sent: notifications get no answer either way
	}
	// Registered, c belongs to the writer now.
	if len(*buf) == 0 {
		sink.Reply(nil)
	} else {
		sink.Reply(*buf)
	}
	putBuf(buf)
}

// complete finishes a claimed call. e is nil for an upstream answer already in c.resp.
// keep says whether c may return to the pool afterwards.
func (m *Mux) complete(c *call, e *proto.Error, keep bool) {
	switch c.kind {
	case kindSync:
		c.err, c.keep = e, keep
		c.done <- struct{}{}
		return
	case kindAsync:
		if e != nil {
			c.appendErrors(e)
		}
		c.sink.Reply(c.resp)
	case kindSub:
		m.subscribed(c, e)
	case kindFire:
	}
	if keep {
		putCall(c)
	}
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) <= maxPooledBuf {
		*b = (*b)[:0]
		bufPool.Put(b)
	}
}
