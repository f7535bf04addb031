package upstream

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
)

// MuxConfig configures a Mux. Every duration and size is required (the defaults live
// in the gateway's Config); TLSConfig, Header and Logger are optional.
type MuxConfig struct {
	// URL of the upstream websocket (ws:// or wss://).
	URL string
	// TLSConfig is used for wss:// (nil: system roots, TLS 1.2+).
	TLSConfig *tls.Config
	// Header is sent with every handshake, e.g. Authorization for Infura's project
	// secret (basic auth). It is never logged.
	Header http.Header
	// Conns is the number of shared upstream sockets.
	Conns int
	// QueueSize bounds the frames waiting for each socket's writer; a full queue
	// answers proto.ErrOverloaded at once.
	QueueSize int
	// ReadLimit is the largest upstream message accepted. A larger one is skipped
	// without being buffered: the call it answers fails with proto.ErrResponseTooLarge
	// as soon as its id is read, and the socket carries on once the rest is dropped
	// (within RequestTimeout). One whose first bytes name no call, or that declares an
	// absurd length, closes the socket at once (its calls fail over).
	ReadLimit int
	// Answers is the process's budget of answer bytes held at once (nil: none): a
	// message it has no room for is dropped as one over ReadLimit, its call refused
	// with proto.ErrAnswerBudget.
	Answers *AnswerBudget
	// PingInterval is how often each socket is pinged; PongTimeout how long past that
	// a silent socket is declared dead.
	PingInterval, PongTimeout time.Duration
	// ProbeTimeout: when a call on a socket timed out, the socket is pinged at once and
	// declared dead if neither the pong nor any answer comes back within ProbeTimeout
	// (or three of the socket's round trips, when longer) while no message is being
	// read (0: PongTimeout). Notifications do not count: a
	// route dead the gateway's way still brings them. A half-open socket (a load
	// balancer that dropped it, a blackholed route) would otherwise hold its calls and
	// subscriptions for up to PingInterval+PongTimeout, or for good one way.
	ProbeTimeout time.Duration
	// DialTimeout bounds one connection attempt incl. the handshake.
	DialTimeout time.Duration
	// WriteTimeout bounds one flush of queued frames.
	WriteTimeout time.Duration
	// BackoffMin and BackoffMax bound the reconnect delay, doubled per failed attempt
	// with jitter. A socket lost before it served for BackoffMax counts as a failed
	// attempt; one that served longer is dialled again at once.
	BackoffMin, BackoffMax time.Duration
	// RequestTimeout applies to calls the Mux makes itself (resubscribes, unsubscribes)
	// and to calls made with a zero deadline.
	RequestTimeout time.Duration
	// Logger receives connection events (nil: slog.Default()).
	Logger  *slog.Logger
	Metrics *Metrics
	// ChainID, when not 0, is the chain the upstream must be on: each socket asks
	// eth_chainId as it connects and carries nothing (calls, subscriptions) until it
	// answered ChainID. A socket that answers another chain, or does not answer, is
	// closed and dialed again after a backoff, as after a failed dial. A load balancer
	// may send each socket to another node: each proves itself.
	ChainID uint64
	// OnChainID, when set, hears each socket's answer: the chain id, or err when there
	// was none (not called when the connection was lost first).
	OnChainID func(got uint64, err error)
	// OnUp, when set, hears each socket that comes up: its chain proved and its
	// subscriptions sent again. It must not block.
	OnUp func()
	// OnDown, when set, hears each socket lost with subscriptions on it, before they are
	// sent again (Mux.downs counts those losses). Called under the subscriptions' lock:
	// it must not block nor call the Mux.
	OnDown func()
	// Classifier classifies error frames and close frames (nil: the generic rules).
	Classifier *Classifier
	// OnClosed, when set, hears of a socket the upstream closed for its rate, its quota
	// or the gateway's credentials (a close code and reason the Classifier reads as
	// throttled, exhausted or unauthorized). Such a socket, and one whose upgrade the
	// upstream refused so (a status and Retry-After), is dialled again no sooner than
	// the back-off stated (at most a minute); a refused upgrade is not told here.
	OnClosed func(c AnswerClass, backoff time.Duration)
}

func (c *MuxConfig) validate() error {
	switch {
	case c.Conns <= 0, c.QueueSize <= 0, c.ReadLimit <= 0, c.PingInterval <= 0, c.PongTimeout <= 0,
		c.DialTimeout <= 0, c.WriteTimeout <= 0, c.BackoffMin <= 0, c.BackoffMax < c.BackoffMin,
		c.RequestTimeout <= 0:
		return errors.New("upstream websocket: every limit and interval must be > 0")
	case c.Metrics == nil:
		return errors.New("upstream websocket: no metrics")
	}
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return errors.New("upstream websocket URL must be ws:// or wss:// with a host")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.ProbeTimeout <= 0 {
		c.ProbeTimeout = c.PongTimeout
	}
	return nil
}

// Sink receives what a subscription delivers to one subscriber. Its methods are called
// from Mux goroutines (mostly a socket's reader) and must never block: a slow consumer
// must drop or queue, not wait.
type Sink interface {
	// Reply is called exactly once per Join with the answer to the client's
	// eth_subscribe (the gateway subscription id, or an error) carrying the client's id.
	// msg is valid only during the call.
	Reply(msg []byte)
	// Notify is called with each eth_subscription notification of a joined
	// subscription, params.subscription set to the gateway id Join answered with.
	// frame is shared by every subscriber and immutable: it may be kept, never modified.
	Notify(frame []byte)
}

// Mux multiplexes JSON-RPC calls and subscriptions over a few shared upstream websocket
// connections. Every method is safe for concurrent use.
type Mux struct {
	cfg     MuxConfig
	host    string // for logs: scheme and host only, never path (a key) or user info
	slots   []*slot
	rr      atomic.Uint32
	ids     atomic.Uint64
	metrics *Metrics
	cls     *Classifier

	subs subState

	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	started atomic.Bool
	ready   chan struct{} // closed when a socket first comes up
	once    sync.Once

	probed func(stalled bool) // tests: hears each probe's outcome
	// downs counts the sockets lost with subscriptions on them: a logs subscription
	// carried through a loss asks for the logs of the blocks it was away (router).
	downs atomic.Uint64
	// suspects counts the sockets under a probe with nothing back yet (mux_probe.go).
	suspects atomic.Int32
}

// NewMux returns a Mux; Start connects it.
func NewMux(cfg MuxConfig) (*Mux, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	m := &Mux{cfg: cfg, ready: make(chan struct{}), metrics: cfg.Metrics, cls: cfg.Classifier}
	if m.cls == nil {
		m.cls = genericClassifier
	}
	m.metrics.registerTransport(TransportWS) // idempotent: per-client Muxes share one Metrics
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
	return m, nil
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

// Up reports whether at least one socket is connected.
func (m *Mux) Up() bool { return m.metrics.wsConns.Load() > 0 }

// beenUp reports whether a socket of m has ever come up.
func (m *Mux) beenUp() bool {
	select {
	case <-m.ready:
		return true
	default:
		return false
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

func (m *Mux) nextID() uint64 { return m.ids.Add(1) }

func (m *Mux) timeout(d time.Time) time.Duration {
	if d.IsZero() {
		return m.cfg.RequestTimeout
	}
	return time.Until(d)
}

// Call sends r upstream in an envelope written here (a gateway id unique on the Mux)
// and returns the answer with its id replaced by id. spare is a buffer the caller gives
// up; the returned one is the caller's. Errors are *proto.Error values: ErrTimeout,
// ErrUnavailable, ErrOverloaded, ErrResponseTooLarge, ErrBadUpstream.
func (m *Mux) Call(spare []byte, r *proto.Request, id []byte, deadline time.Time) ([]byte, error) {
	ans, _, err := m.call(spare, r, id, deadline)
	return ans, err
}

// call is Call that also returns the attempt's class (classify.go) for the router.
func (m *Mux) call(spare []byte, r *proto.Request, id []byte, deadline time.Time) ([]byte, note, error) {
	start := callNow()
	if isSubscriptionCall(r) {
		return spare[:0], note{class: AnswerClientError}, ErrSubscriptionCall
	}
	c := getCall(kindSync)
	c.prepare(r, id, m.nextID())
	perr := proto.ErrUnreachable
	if s := m.pick(); s != nil {
		if deadline.IsZero() {
			deadline = start.Add(m.cfg.RequestTimeout)
		}
		perr = s.registerAt(c, deadline)
	}
	if perr != nil {
		putCall(c)
		m.metrics.observe(ptrHint(r), TransportWS, r.Method, r.Class(), outcomeOf(perr), perr, start, start)
		return spare[:0], note{class: AnswerBroken}, perr
	}
	<-c.done
	perr = c.err
	// An answer carries when it was read: no second clock read here.
	end := c.at
	if perr != nil || end.Before(start) {
		end = time.Now()
	}
	outcome := outcomeOf(perr)
	var ans []byte
	var n note
	if perr == nil {
		// Hand the answer over without copying; the caller's spare becomes the call's.
		ans, c.resp = c.resp, spare[:0]
		if c.rpcError {
			outcome = OutcomeRPCError
			n = m.cls.classifyBody(0, ans, nil, r.Name)
			if e := providerRefusal(n.class); e != nil {
				// An error frame refusing the call for the rate, the quota or the key.
				perr, outcome, spare = e, OutcomeError, ans
			}
		}
	} else {
		n.class = AnswerBroken
	}
	if c.keep {
		putCall(c)
	}
	m.metrics.observe(ptrHint(r), TransportWS, r.Method, r.Class(), outcome, perr, start, end)
	if perr != nil {
		return spare[:0], n, perr
	}
	return ans, n, nil
}

// CallBatch sends b's requests as separate frames on one socket (the writer puts them
// in one write) and waits until each is answered, timed out or failed. Separate frames
// rather than a JSON-RPC batch: every answer is matched by its own gateway id, and a
// slow element holds back nobody else's frame.
func (m *Mux) CallBatch(b *Batch, deadline time.Time) error {
	start := time.Now()
	b.start(m.cfg.Answers)
	n := len(b.Reqs)
	if n == 0 {
		return nil
	}
	s := m.pick()
	if s == nil {
		b.failAll(proto.ErrUnreachable)
		m.metrics.observe(ptrHint(b), TransportWS, proto.MethodBatch, b.class(), OutcomeUnavailable, proto.ErrUnreachable, start, time.Now())
		return proto.ErrUnreachable
	}
	w := getBatchWait(n)
	dl := deadline
	if dl.IsZero() {
		dl = start.Add(m.cfg.RequestTimeout)
	}
	for i, r := range b.Reqs {
		if isSubscriptionCall(r) {
			b.setError(i, ErrSubscriptionCall)
			w.done()
			continue
		}
		c := getCall(kindBatch)
		c.batch, c.wait, c.idx = b, w, i
		c.prepare(r, b.IDs[i], m.nextID())
		if perr := s.registerAt(c, dl); perr != nil {
			putCall(c)
			b.setError(i, perr)
			w.done()
		}
	}
	<-w.ch
	putBatchWait(w)
	if perr := b.refusals(m.cls); perr != nil {
		m.metrics.observe(ptrHint(b), TransportWS, proto.MethodBatch, b.class(), OutcomeError, perr, start, time.Now())
		return perr
	}
	m.metrics.observe(ptrHint(b), TransportWS, proto.MethodBatch, b.class(), OutcomeOK, nil, start, time.Now())
	return nil
}

// ErrSubscriptionCall refuses eth_subscribe and eth_unsubscribe sent as plain calls:
// a subscription made that way would have no subscriber to deliver to and would never
// be ended upstream. Subscriptions go through Join and Leave.
var ErrSubscriptionCall = proto.NewError(proto.CodeMethodNotFound, 200,
	"eth_subscribe and eth_unsubscribe are only available as single requests on /socket2socket, not in batches")

func isSubscriptionCall(r *proto.Request) bool {
	return string(r.Name) == "eth_subscribe" || string(r.Name) == "eth_unsubscribe"
}

// complete finishes a claimed call. e is nil for an upstream answer already in c.resp.
// keep says whether c may return to the pool afterwards.
func (m *Mux) complete(c *call, e *proto.Error, keep bool) {
	switch c.kind {
	case kindSync:
		c.err, c.keep = e, keep
		c.done <- struct{}{}
		return
	case kindBatch:
		if e != nil {
			c.batch.setError(c.idx, e)
		} else {
			c.batch.setAnswerRaw(c.idx, c.resp)
		}
		c.wait.done()
	case kindSub:
		m.subscribed(c, e)
	case kindFire:
	}
	if keep {
		putCall(c)
	}
}

// batchWait counts the elements of a CallBatch still outstanding.
type batchWait struct {
	left atomic.Int32
	ch   chan struct{}
}

var batchWaitPool = sync.Pool{New: func() any { return &batchWait{ch: make(chan struct{}, 1)} }}

func getBatchWait(n int) *batchWait {
	w := batchWaitPool.Get().(*batchWait)
	w.left.Store(int32(n))
	return w
}

func putBatchWait(w *batchWait) { batchWaitPool.Put(w) }

func (w *batchWait) done() {
	if w.left.Add(-1) == 0 {
		w.ch <- struct{}{}
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
