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
// Each route is wrapped once, when the network starts, with its metrics.
func (s *Server) routeTable(f *front) *router.Router {
	n, inst := f.net, s.inst.With(f.net.Registry())
	r := router.New()
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false

	// Probes may use HEAD (some load balancers do): the same answer without a body.
	health, readyz := inst.Wrap("health", s.probe.Health), inst.Wrap("readyz", s.probe.Readyz)
	r.GET("/health", health)
	r.HEAD("/health", health)
	r.GET("/readyz", readyz)
	r.HEAD("/readyz", readyz)
	// /status (upstream names, health, errors) is on the admin listener only.

	// client ⇄HTTP⇄ gateway ⇄HTTP⇄ upstream
	r.GET("/blocknumber", inst.Wrap("blocknumber", s.httpH.Handler(&httpapi.BlockNumber, n, n.HTTP)))
	r.GET("/gasprice", inst.Wrap("gasprice", s.httpH.Handler(&httpapi.GasPrice, n, n.HTTP)))
	r.POST("/blockbynumber", inst.Wrap("blockbynumber", s.httpH.Handler(&httpapi.BlockByNumber, n, n.HTTP)))
	r.POST("/txbyblockandindex", inst.Wrap("txbyblockandindex", s.httpH.Handler(&httpapi.TxByBlockAndIndex, n, n.HTTP)))
	r.POST("/", inst.Wrap("rpc", s.httpH.RPC(n)))

	// client ⇄HTTP⇄ gateway ⇄WebSocket⇄ upstream: the same routes through the Mux.
	ws := r.Group("/ws")
	ws.GET("/health", inst.Wrap("ws_health", s.probe.Health))
	ws.GET("/blocknumber", inst.Wrap("ws_blocknumber", s.httpH.Handler(&httpapi.BlockNumber, n, n.WS)))
	ws.GET("/gasprice", inst.Wrap("ws_gasprice", s.httpH.Handler(&httpapi.GasPrice, n, n.WS)))
	ws.POST("/blockbynumber", inst.Wrap("ws_blockbynumber", s.httpH.Handler(&httpapi.BlockByNumber, n, n.WS)))
	ws.POST("/txbyblockandindex", inst.Wrap("ws_txbyblockandindex", s.httpH.Handler(&httpapi.TxByBlockAndIndex, n, n.WS)))

	// client ⇄WebSocket⇄ gateway ⇄WebSocket⇄ upstream
	r.GET("/socket2socket", inst.Wrap("socket2socket", f.socket2socket))

	r.NotFound = inst.Wrap("other", s.notFound)
	r.MethodNotAllowed = inst.Wrap("other", func(ctx *fasthttp.RequestCtx) { pipeline.WriteError(ctx, nil, proto.ErrMethodNotAllowed) })
	r.PanicHandler = s.panicked
	return r
}

// keyRoutes serves the JSON-RPC endpoints with an API key in the path, as Infura has
// them: POST /v3/<key> is POST /, GET /ws/v3/<key> is /socket2socket (browsers cannot
// set headers on a websocket). Every other route takes the key in Authorization: Bearer
// or X-API-Key. They are matched here, ahead of the router, because the router's path
// parameters allocate on every request.
func (s *Server) keyRoutes(f *front, next fasthttp.RequestHandler) fasthttp.RequestHandler {
	inst := s.inst.With(f.net.Registry())
	rpc := inst.Wrap("rpc", s.httpH.RPC(f.net))
	ws := inst.Wrap("socket2socket", f.socket2socket)
	other := inst.Wrap("other", func(ctx *fasthttp.RequestCtx) { pipeline.WriteError(ctx, nil, proto.ErrMethodNotAllowed) })
	return func(ctx *fasthttp.RequestCtx) {
		switch access.KeyPrefix(ctx.Path()) {
		case len(access.PrefixRPCKey):
			if ctx.IsPost() {
				rpc(ctx)
			} else {
				other(ctx)
			}
		case len(access.PrefixWSKey):
			if ctx.IsGet() {
				ws(ctx)
			} else {
				other(ctx)
			}
		default:
			next(ctx)
		}
	}
}

// panicked keeps one bad request from taking the process down; it is a bug if it runs.
func (s *Server) panicked(ctx *fasthttp.RequestCtx, v any) {
	s.log.Error("BUG: panic while handling a request", "path", admin.LogPath(ctx), "panic", v)
	pipeline.WriteError(ctx, nil, proto.ErrInternal)
}
