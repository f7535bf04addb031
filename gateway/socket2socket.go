package gateway

import (
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/proto"
	"github.com/infura-gateway/infura-gateway/upstream"
)

// SocketConfig configures the /socket2socket endpoint. Zero values mean the defaults.
type SocketConfig struct {
	// Mux carries every client's calls and subscriptions over shared upstream sockets.
	Mux *upstream.Mux
	// PerClient gives every client its own upstream socket built from MuxConfig (Conns
	// forced to 1): the seed's design, kept for benchmark comparison. Mux is unused.
	PerClient bool
	MuxConfig upstream.MuxConfig
	// Denied reports whether a method (name without quotes) is refused (-32601).
	Denied func(method []byte) bool
	// MaxBatch caps the elements of one batch (default 1000).
	MaxBatch int
	// MaxMessageBytes caps one client message (default 5 MiB); a larger one closes
	// the connection with 1009.
	MaxMessageBytes int
	// QueueSize caps the messages waiting to be written to one client (default 256);
	// a client that lets it overflow is closed with 1008.
	QueueSize int
	// MaxInFlight caps the calls one client may have waiting for the upstream
	// (default 256); more are answered -32005 at once.
	MaxInFlight int
	// PingInterval is how often clients are pinged (default 30s); a client that sends
	// nothing, not even a pong, for two intervals is closed.
	PingInterval time.Duration
	// WriteTimeout bounds one write to a client (default 10s).
	WriteTimeout time.Duration
	// AllowedOrigins lists the Origin headers accepted; empty or "*" accepts any.
	// Requests without Origin (non-browser clients) are always accepted.
	AllowedOrigins []string
	Logger         *slog.Logger
}

func (c *SocketConfig) setDefaults() {
	if c.MaxBatch <= 0 {
		c.MaxBatch = 1000
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = 5 << 20
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 256
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 256
	}
	if c.PingInterval <= 0 {
		c.PingInterval = 30 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.Denied == nil {
		c.Denied = func([]byte) bool { return false }
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Socket2Socket is the /socket2socket endpoint: a websocket through which a client makes
// any JSON-RPC call the upstream websocket supports, batches and subscriptions
// included, multiplexed onto the shared upstream sockets.
type Socket2Socket struct {
	cfg      SocketConfig
	upgrader websocket.FastHTTPUpgrader

	mu      sync.Mutex
	closed  bool
	clients map[*wsClient]struct{}
	wg      sync.WaitGroup // one per client handler
}

// writeBufferPool lends write buffers to clients only while they write, so an idle
// client holds none.
var writeBufferPool sync.Pool

// NewSocket2Socket returns the endpoint; mount Serve on GET /socket2socket and call
// Close on shutdown, before closing the Mux.
func NewSocket2Socket(cfg SocketConfig) *Socket2Socket {
	cfg.setDefaults()
	h := &Socket2Socket{cfg: cfg, clients: make(map[*wsClient]struct{})}
	h.upgrader = websocket.FastHTTPUpgrader{
		HandshakeTimeout: 10 * time.Second,
		// Small buffers: idle clients cost memory, busy ones read large messages
		// straight into pooled buffers anyway.
		ReadBufferSize:  512,
		WriteBufferSize: 4096,
		WriteBufferPool: &writeBufferPool,
		CheckOrigin:     h.checkOrigin,
	}
	return h
}

func (h *Socket2Socket) checkOrigin(ctx *fasthttp.RequestCtx) bool {
	origin := string(ctx.Request.Header.Peek("Origin"))
	if origin == "" || len(h.cfg.AllowedOrigins) == 0 {
		return true
	}
	for _, o := range h.cfg.AllowedOrigins {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
}

// Serve upgrades the request and serves the client until either side closes. Nothing
// of ctx is used after the upgrade: fasthttp reuses it once Serve returns, while the
// connection lives on in the hijack handler.
func (h *Socket2Socket) Serve(ctx *fasthttp.RequestCtx) {
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if closed {
		writeWSError(ctx, proto.ErrShuttingDown)
		return
	}
	// On failure Upgrade has answered with an HTTP error already.
	_ = h.upgrader.Upgrade(ctx, h.serveClient)
}

func writeWSError(ctx *fasthttp.RequestCtx, e *proto.Error) {
	ctx.SetStatusCode(e.Status)
	ctx.SetContentType("application/json")
	ctx.SetBody(proto.AppendError(nil, nil, e))
}

// Close closes every client (1001 going away) and waits for their handlers to end.
// New upgrades are refused from then on.
func (h *Socket2Socket) Close() {
	h.mu.Lock()
	h.closed = true
	clients := make([]*wsClient, 0, len(h.clients))
	for c := range h.clients {
		clients = append(clients, c)
	}
	h.mu.Unlock()
	for _, c := range clients {
		c.shutdown(websocket.CloseGoingAway, "server shutting down")
	}
	h.wg.Wait()
}

// serveClient is the hijack handler: it owns the connection for its whole life.
func (h *Socket2Socket) serveClient(conn *websocket.Conn) {
	c := newWSClient(h, conn)
	h.mu.Lock()
	if h.closed {
		// Upgraded just as Close ran: say goodbye properly rather than vanish.
		h.mu.Unlock()
		_ = conn.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseGoingAway, "server shutting down"), time.Now().Add(time.Second))
		_ = conn.SetReadDeadline(time.Now().Add(closeGrace))
		for {
			if _, _, err := conn.NextReader(); err != nil {
				return // the client's close frame, or the grace period is over
			}
		}
	}
	// Registered under mu, before Close can start waiting: Close sees every client.
	h.wg.Add(1)
	h.clients[c] = struct{}{}
	h.mu.Unlock()
	wsClients.Add(1)
	defer func() {
		wsClients.Add(-1)
		h.mu.Lock()
		delete(h.clients, c)
		h.mu.Unlock()
		h.wg.Done()
	}()
	if h.cfg.PerClient {
		mcfg := h.cfg.MuxConfig
		mcfg.Conns = 1
		m := upstream.NewMux(mcfg)
		m.Start()
		defer m.Close()
		if err := m.WaitReady(15 * time.Second); err != nil {
			c.shutdown(websocket.CloseTryAgainLater, "upstream unavailable")
			_ = conn.Close()
			return
		}
		c.mux = m
	}
	c.run()
}
