package gateway

import (
	"github.com/fasthttp/router"
	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/gateway/access"
	"github.com/infura-gateway/infura-gateway/gateway/admin"
	"github.com/infura-gateway/infura-gateway/gateway/httpapi"
	"github.com/infura-gateway/infura-gateway/gateway/pipeline"
	"github.com/infura-gateway/infura-gateway/proto"
)

// routeTable is every path the gateway serves for network f, in one place (with
// several networks, each under /<network>/ too: serveNetwork takes the prefix off).
// Each route is wrapped once, when the network starts, with its metrics. Every route
// here has a fixed path: besides the router, each is in the returned table, which
// serves a request for exactly that method and path without the router's lookup
// (fixedRoutes.find); everything else (404, 405, OPTIONS) is the router's.
func (s *Server) routeTable(f *front) (*router.Router, fixedRoutes) {
	n, inst := f.net, s.inst.With(f.net.Registry())
	r := router.New()
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	var fixed fixedRoutes
	add := func(method, path string, h fasthttp.RequestHandler) {
		r.Handle(method, path, h)
		fixed = append(fixed, fixedRoute{method: method, path: path, h: h})
	}

	// Probes may use HEAD (some load balancers do): the same answer without a body.
	health, readyz := inst.Wrap("health", s.probe.Health), inst.Wrap("readyz", s.probe.Readyz)
	// client ⇄HTTP⇄ gateway ⇄HTTP⇄ upstream, the busiest first (the table is scanned)
	add(fasthttp.MethodPost, "/", inst.Wrap("rpc", s.httpH.RPC(n)))
	add(fasthttp.MethodGet, "/blocknumber", inst.Wrap("blocknumber", s.httpH.Handler(&httpapi.BlockNumber, n, n.HTTP)))
	add(fasthttp.MethodGet, "/gasprice", inst.Wrap("gasprice", s.httpH.Handler(&httpapi.GasPrice, n, n.HTTP)))
	add(fasthttp.MethodPost, "/blockbynumber", inst.Wrap("blockbynumber", s.httpH.Handler(&httpapi.BlockByNumber, n, n.HTTP)))
	add(fasthttp.MethodPost, "/txbyblockandindex", inst.Wrap("txbyblockandindex", s.httpH.Handler(&httpapi.TxByBlockAndIndex, n, n.HTTP)))

	// client ⇄HTTP⇄ gateway ⇄WebSocket⇄ upstream: the same routes through the Mux.
	add(fasthttp.MethodGet, "/ws/blocknumber", inst.Wrap("ws_blocknumber", s.httpH.Handler(&httpapi.BlockNumber, n, n.WS)))
	add(fasthttp.MethodGet, "/ws/gasprice", inst.Wrap("ws_gasprice", s.httpH.Handler(&httpapi.GasPrice, n, n.WS)))
	add(fasthttp.MethodPost, "/ws/blockbynumber", inst.Wrap("ws_blockbynumber", s.httpH.Handler(&httpapi.BlockByNumber, n, n.WS)))
	add(fasthttp.MethodPost, "/ws/txbyblockandindex", inst.Wrap("ws_txbyblockandindex", s.httpH.Handler(&httpapi.TxByBlockAndIndex, n, n.WS)))

	// client ⇄WebSocket⇄ gateway ⇄WebSocket⇄ upstream
	add(fasthttp.MethodGet, "/socket2socket", inst.Wrap("socket2socket", f.socket2socket))

	add(fasthttp.MethodGet, "/health", health)
	add(fasthttp.MethodHead, "/health", health)
	add(fasthttp.MethodGet, "/readyz", readyz)
	add(fasthttp.MethodHead, "/readyz", readyz)
	wsHealth := inst.Wrap("ws_health", s.probe.Health)
	add(fasthttp.MethodGet, "/ws/health", wsHealth)
	add(fasthttp.MethodHead, "/ws/health", wsHealth)
	// /status (upstream names, health, errors) is on the admin listener only.

	r.NotFound = inst.Wrap("other", s.notFound)
	r.MethodNotAllowed = inst.Wrap("other", func(ctx *fasthttp.RequestCtx) { pipeline.WriteError(ctx, nil, proto.ErrMethodNotAllowed) })
	r.PanicHandler = s.panicked
	return r, fixed
}

// fixedRoute is one route of a fixed method and path.
type fixedRoute struct {
	method, path string
	h            fasthttp.RequestHandler
}

// fixedRoutes are a network's fixed routes, looked up by a scan: a dozen string
// compares, most ended by the length, cost less than the router's tree walk.
type fixedRoutes []fixedRoute

// find returns the handler of the route the router would run for the request's method
// and path, nil when it is not one of them. The path compared is the router's: the
// one the request sent (URI.PathOriginal), not normalized.
func (t fixedRoutes) find(ctx *fasthttp.RequestCtx) fasthttp.RequestHandler {
	path := ctx.Request.URI().PathOriginal()
	method := ctx.Request.Header.Method()
	for i := range t {
		if len(t[i].path) == len(path) && t[i].path == string(path) && t[i].method == string(method) {
			return t[i].h
		}
	}
	return nil
}

// routes is what serves network f, built once when the network starts: the routes
// with an API key in the path, then the fixed routes, then the router.
func (s *Server) routes(f *front) fasthttp.RequestHandler {
	r, fixed := s.routeTable(f)
	return s.keyRoutes(f, fixed, r)
}

// keyRoutes serves the JSON-RPC endpoints with an API key in the path, as Infura has
// them: POST /v3/<key> is POST /, GET /ws/v3/<key> is /socket2socket (browsers cannot
// set headers on a websocket). Every other route takes the key in Authorization: Bearer
// or X-API-Key. They are matched here, ahead of the router, because the router's path
// parameters allocate on every request. A request for a fixed route goes to its handler
// directly, anything else to the router.
func (s *Server) keyRoutes(f *front, fixed fixedRoutes, r *router.Router) fasthttp.RequestHandler {
	inst := s.inst.With(f.net.Registry())
	rpc := inst.Wrap("rpc", s.httpH.RPC(f.net))
	ws := inst.Wrap("socket2socket", f.socket2socket)
	other := inst.Wrap("other", func(ctx *fasthttp.RequestCtx) { pipeline.WriteError(ctx, nil, proto.ErrMethodNotAllowed) })
	next := r.Handler
	return func(ctx *fasthttp.RequestCtx) {
		switch access.KeyPrefix(ctx.Path()) {
		case len(access.PrefixRPCKey):
			if ctx.IsPost() {
				rpc(ctx)
			} else {
				wrongMethod(ctx, other, "OPTIONS, POST")
			}
		case len(access.PrefixWSKey):
			if ctx.IsGet() {
				ws(ctx)
			} else {
				wrongMethod(ctx, other, "GET, OPTIONS")
			}
		default:
			if h := fixed.find(ctx); h != nil {
				h(ctx) // wrapped: recovered from a panic by its wrapper (admin.Wrap)
				return
			}
			next(ctx)
		}
	}
}

// wrongMethod answers a key route asked with a method it does not serve as the router
// answers its own routes: OPTIONS with 200 and Allow, anything else 405 with Allow (RFC
// 9110 §15.5.6: a 405 names the methods the resource allows).
func wrongMethod(ctx *fasthttp.RequestCtx, notAllowed fasthttp.RequestHandler, allow string) {
	ctx.Response.Header.Set(fasthttp.HeaderAllow, allow)
	if !ctx.IsOptions() {
		notAllowed(ctx)
	}
}

// panicked keeps one bad request from taking the process down; it is a bug if it runs.
func (s *Server) panicked(ctx *fasthttp.RequestCtx, v any) {
	s.log.Error("BUG: panic while handling a request", "path", admin.LogPath(ctx), "panic", v)
	pipeline.WriteError(ctx, nil, proto.ErrInternal)
}
