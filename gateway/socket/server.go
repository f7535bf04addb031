// Package socket is the gateway's websocket front: /socket2socket (and /ws/v3/<key>),
// through which a client makes any JSON-RPC call, batches and subscriptions included.
// One session per client: a reader, one writer owning the socket's writes, bounded
// queues; its calls go through the pipeline of its network, its subscriptions through
// the network's subscription hub. It imports access/, pipeline/, network/, config/,
// upstream/ and proto/; nothing of the gateway above it.
package socket

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/fasthttp/websocket"
	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/gateway/access"
	"github.com/infura-gateway/infura-gateway/gateway/config"
	"github.com/infura-gateway/infura-gateway/gateway/network"
	"github.com/infura-gateway/infura-gateway/gateway/pipeline"
	"github.com/infura-gateway/infura-gateway/proto"
	"github.com/infura-gateway/infura-gateway/tracing"
	"github.com/infura-gateway/infura-gateway/upstream"
)

// Server is the /socket2socket endpoint: a websocket through which a client
// makes any JSON-RPC call, batches and subscriptions included. Calls go through the
// pipeline and the shared upstream Mux (or, in per-client mode, a Mux of the client's
// own); subscriptions are joined on the Mux, which shares identical ones.
type Server struct {
	cfg  *config.Config
	acc  *access.Access
	pipe *pipeline.Pipeline
	net  *network.Network

	upgrader websocket.FastHTTPUpgrader

	mu      sync.Mutex
	closed  bool
	clients map[*wsClient]struct{}
	wg      sync.WaitGroup // one per client handler

	// Budgets shared by every client: connections and subscriptions; reading, the
	// process's bytes of client messages being read (HTTP bodies count in it too).
	conns    atomic.Int64
	subs     *network.Budget
	addrSubs addrSubs // per client address (addrsubs.go)
	reading  *network.Budget

	drainQuit // drain.go

	msgsIn, msgsOut, slowDrops, refused, connects *metrics.Counter
	calls                                         *callMetrics // per call, for the SLIs (metrics.go)
}

// writeBufferPool lends write buffers to clients only while they write, so an idle
// client holds none.
var writeBufferPool sync.Pool

// New makes the /socket2socket endpoint of network net: clients identified and limited
// by acc, their calls run by pipe, their large messages read within reading (nil: no
// bound but -max-request-body each), its metrics in reg.
func New(cfg *config.Config, acc *access.Access, pipe *pipeline.Pipeline, net *network.Network, reading *network.Budget,
	reg *upstream.Registry) *Server {
	h := &Server{cfg: cfg, acc: acc, pipe: pipe, net: net, clients: make(map[*wsClient]struct{}),
		subs: network.NewBudget(cfg.MaxSubscriptions), reading: reading,
		addrSubs: addrSubs{max: int32(cfg.WSMaxSubscriptionsPerIP)}}
	h.upgrader = websocket.FastHTTPUpgrader{
		// It checks and answers the handshake only: the websocket is made by
		// rawUpgrader (upgrade.go), with the buffer sizes.
		HandshakeTimeout: 10 * time.Second,
		CheckOrigin:      h.checkOrigin,
		// A refused handshake is answered in JSON like every other error.
		Error: func(ctx *fasthttp.RequestCtx, status int, reason error) {
			ctx.Response.Header.Set("Sec-WebSocket-Version", "13")
			pipeline.WriteError(ctx, nil, proto.NewError(proto.CodeInvalidRequest, status, reason.Error()))
		},
	}
	const msgsHelp = "Websocket messages exchanged with /socket2socket clients, by direction."
	h.msgsIn = reg.Counter(`gateway_ws_client_messages_total{direction="in"}`, msgsHelp)
	h.msgsOut = reg.Counter(`gateway_ws_client_messages_total{direction="out"}`, msgsHelp)
	h.slowDrops = reg.Counter("gateway_ws_slow_clients_dropped_total",
		"/socket2socket clients closed because their outbound queue overflowed (1008), or a write to them passed -ws-client-write-timeout.")
	h.refused = reg.Counter("gateway_ws_refused_total",
		"/socket2socket requests and connections refused by a budget (in flight, pending bytes, subscriptions, connections, messages being read: -max-body-read-bytes).")
	h.connects = reg.Counter("gateway_ws_client_connects_total",
		"/socket2socket clients accepted; its rate shows reconnect storms.")
	h.calls = newCallMetrics(reg)
	reg.Gauge("gateway_ws_client_connections", "Open /socket2socket client connections.",
		func() float64 { return float64(h.conns.Load()) })
	reg.Gauge("gateway_ws_subscriptions", "Subscriptions held by /socket2socket clients.",
		func() float64 { return float64(h.subs.InUse()) })
	return h
}

func (h *Server) checkOrigin(ctx *fasthttp.RequestCtx) bool {
	origin := string(ctx.Request.Header.PeekCanonical(access.HeaderOrigin))
	allowed := h.cfg.WSAllowedOrigins
	if origin == "" || len(allowed) == 0 {
		return true
	}
	for _, o := range allowed {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
}

var errNotHTTP11 = proto.NewError(proto.CodeInvalidRequest, fasthttp.StatusBadRequest,
	"websocket handshake refused: it needs HTTP/1.1")

var errTooManyClients = proto.NewError(proto.CodeLimitExceeded, fasthttp.StatusServiceUnavailable,
	"too many websocket clients on this gateway, retry later")

// serve upgrades the request and serves the client until either side closes. Nothing
// of ctx is used after the upgrade: fasthttp reuses it once serve returns, while the
// connection lives on in the client's own goroutines.
func (h *Server) Serve(ctx *fasthttp.RequestCtx) {
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if closed {
		pipeline.WriteError(ctx, nil, proto.ErrShuttingDown)
		return
	}
	// RFC 6455 4.1: the handshake is HTTP/1.1 or later. fasthttp would close an
	// HTTP/1.0 connection after the 101, so the upgrade could never be used.
	if !ctx.Request.Header.IsHTTP11() {
		h.refused.Inc()
		pipeline.WriteError(ctx, nil, errNotHTTP11)
		return
	}
	// Checked before the upgrade, counted once the handler runs: a handful of
	// concurrent upgrades may pass the limit together, never an unbounded number.
	if h.conns.Load() >= int64(h.cfg.WSMaxClients) {
		h.refused.Inc()
		pipeline.WriteError(ctx, nil, errTooManyClients)
		return
	}
	// The key is checked before the upgrade: without a valid one the answer is a plain
	// 401. The tenant's connection slot is taken once upgraded (serveClient): fasthttp
	// may drop a connection between the two and never run the handler.
	who, perr := h.acc.Identify(ctx)
	if perr == nil {
		perr = who.CheckNetwork(h.net.Name)
	}
	if perr != nil {
		h.refused.Inc()
		pipeline.WriteError(ctx, nil, perr)
		return
	}
	// A key at its connection limit is refused before the upgrade, with 429 and
	// Retry-After as any limit is, not upgraded and then closed. The slot is taken for
	// good once upgraded (serveClient); this check takes one and gives it back, so a
	// connection fasthttp drops before the handover holds none.
	if on := who.On(h.net.Index, h.net.Name); on.ConnSlots() != nil {
		if perr := on.Acquire(on.ConnSlots(), access.RefusedConnections); perr != nil {
			h.refused.Inc()
			pipeline.WriteError(ctx, nil, perr)
			return
		}
		on.ConnSlots().Release()
	}
	// An unkeyed client is limited by its address: a reload may give it another plan.
	var addr netip.Addr
	if who == nil || who.Ref() == nil {
		addr = h.acc.ClientAddr(ctx)
	}
	// The upgrade's trace context and request id, owned: ctx is reused after it.
	in := tracing.In{Parent: ctx.Request.Header.PeekCanonical(tracing.TraceparentHeader),
		RequestID: ctx.Response.Header.PeekCanonical(tracing.RequestIDHeader)}.Clone()
	// The upgrader checks the handshake and answers it (on failure with an HTTP error);
	// the connection is then taken over raw (upgrade.go): what fasthttp kept for the
	// request is freed, and the client is served on a goroutine of its own, so the
	// hijack handler returns. The server keeps hijacked connections open for it.
	if h.upgrader.Upgrade(ctx, func(*websocket.Conn) {}) != nil {
		return
	}
	ctx.Hijack(func(nc net.Conn) {
		conn, err := takeOver(nc)
		if err != nil {
			_ = nc.Close()
			return
		}
		go h.serveClient(conn, who, addr, in)
	})
}

// stop refuses new clients from now on and returns the current ones.
func (h *Server) stop() []*wsClient {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	clients := make([]*wsClient, 0, len(h.clients))
	for c := range h.clients {
		clients = append(clients, c)
	}
	return clients
}

// Refuse refuses new clients from now on (503, as when draining); the current ones stay
// until Drain or Close. The gateway calls it before it reports draining, so no client
// that saw the drain begin can still be upgraded.
func (h *Server) Refuse() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
}

// DrainReason tells clients closed by a drain to come back: another pod serves them.
const DrainReason = "draining, reconnect"

// Close closes every client (1001 going away) and waits for their handlers to end.
// New upgrades are refused from then on.
func (h *Server) Close() {
	h.endDrains() // drains waiting on calls close their clients now
	clients := h.stop()
	for _, c := range clients {
		c.shutdown(websocket.CloseGoingAway, "server shutting down")
	}
	h.wg.Wait()
}

// Remove ends the endpoint of a network a reload took out: new upgrades are refused,
// every client gets e as a JSON-RPC error frame, then a close 1001 with e's message, and
// Remove waits for their handlers to end (bounded by the clients' write timeout).
func (h *Server) Remove(e *proto.Error) {
	clients := h.stop()
	for _, c := range clients {
		c.closeFor(nil, websocket.CloseGoingAway, e, e.Message)
	}
	h.wg.Wait()
}

// closeNow says goodbye to a client not yet served: a close frame, then its close frame
// (or the grace period) before the connection closes, so it reads ours rather than a
// reset.
func closeNow(conn *websocket.Conn, code int, reason string) {
	if len(reason) > 123 { // a close frame's reason has room for 123 bytes
		reason = reason[:123]
	}
	_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
	_ = conn.SetReadDeadline(time.Now().Add(closeGrace))
	for {
		if _, _, err := conn.NextReader(); err != nil {
			lingerClose(conn.NetConn())
			return // the client's close frame, or the grace period is over
		}
	}
}

// serveClient sets a client up on the hijack goroutine and starts its read loop on a
// goroutine of its own (serve). The loop's goroutine waits in its read for as long as
// the client is idle: it starts with a shallow stack, where the set-up's deep frames
// (limits, tenant, a per-client Mux) would leave it a larger one for good.
func (h *Server) serveClient(conn *websocket.Conn, who *access.Tenant, addr netip.Addr, in tracing.In) {
	who = who.On(h.net.Index, h.net.Name) // its slots: per network when its plan says so
	if perr := who.Acquire(who.ConnSlots(), access.RefusedConnections); perr != nil {
		// Another connection took the last slot since the check before the upgrade:
		// the error in JSON-RPC first, as every refusal on a socket, then the close.
		h.refused.Inc()
		_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
		_ = conn.WriteMessage(websocket.TextMessage, proto.AppendError(nil, nil, perr))
		closeNow(conn, websocket.ClosePolicyViolation, perr.Message)
		return
	}
	// Counted once its slot is held, and the slot given back before the count drops:
	// a count of n means n clients hold slots (tests wait on it).
	h.conns.Add(1)
	c := newWSClient(h, conn, h.net.WS, h.net.Router.Subscriptions())
	c.traceIn = in
	c.bind(who, addr)
	h.connects.Inc()
	h.mu.Lock()
	if h.closed {
		// Upgraded just as Close ran: say goodbye properly rather than vanish.
		h.mu.Unlock()
		closeNow(conn, websocket.CloseGoingAway, "server shutting down")
		c.releaseConn()
		h.conns.Add(-1)
		return
	}
	// Registered under mu, before Close can start waiting: Close sees every client.
	h.wg.Add(1)
	h.clients[c] = struct{}{}
	h.mu.Unlock()
	// A reload between the key check and the registration above was not reviewed for it.
	c.version = h.acc.Version()
	c.rebind(nil)
	if h.cfg.WSPerClient {
		m, err := h.net.PerClientMux()
		if err != nil {
			c.shutdown(websocket.CloseInternalServerErr, "upstream misconfigured")
			_ = conn.Close()
			c.finish()
			return
		}
		m.Start()
		c.mux = m
		if err := m.WaitReady(15 * time.Second); err != nil {
			c.shutdown(websocket.CloseTryAgainLater, "upstream unavailable")
			_ = conn.Close()
			c.finish()
			return
		}
		c.up, c.subs = m, m
	}
	go c.serve()
}

// serve runs the client's read loop, then gives back what serveClient took.
func (c *wsClient) serve() {
	c.run()
	c.finish()
}

// finish ends a registered client: its own Mux (per-client mode), its registration,
// its connection slot (on the tenant it is bound to by then), its count.
func (c *wsClient) finish() {
	h := c.h
	if c.mux != nil {
		c.mux.Close()
	}
	h.mu.Lock()
	delete(h.clients, c)
	h.mu.Unlock()
	h.wg.Done()
	c.releaseConn()
	h.conns.Add(-1)
}
