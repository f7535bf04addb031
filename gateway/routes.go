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

// routeTable is every path the gateway serves, in one place. Each route is wrapped
// once, at start, with its metrics.
func (s *Server) routeTable() *router.Router {
	r := router.New()
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false

	// Probes may use HEAD (some load balancers do): the same answer without a body.
	health, readyz := s.inst.Wrap("health", s.probe.Health), s.inst.Wrap("readyz", s.probe.Readyz)
	r.GET("/health", health)
	r.HEAD("/health", health)
	r.GET("/readyz", readyz)
	r.HEAD("/readyz", readyz)
	// /status (upstream names, health, errors) is on the admin listener only.

	// client ⇄HTTP⇄ gateway ⇄HTTP⇄ upstream
	r.GET("/blocknumber", s.inst.Wrap("blocknumber", s.httpH.Handler(&httpapi.BlockNumber, s.net, s.net.HTTP)))
	r.GET("/gasprice", s.inst.Wrap("gasprice", s.httpH.Handler(&httpapi.GasPrice, s.net, s.net.HTTP)))
	r.POST("/blockbynumber", s.inst.Wrap("blockbynumber", s.httpH.Handler(&httpapi.BlockByNumber, s.net, s.net.HTTP)))
	r.POST("/txbyblockandindex", s.inst.Wrap("txbyblockandindex", s.httpH.Handler(&httpapi.TxByBlockAndIndex, s.net, s.net.HTTP)))
	r.POST("/", s.inst.Wrap("rpc", s.httpH.RPC(s.net)))

	// client ⇄HTTP⇄ gateway ⇄WebSocket⇄ upstream: the same routes through the Mux.
	ws := r.Group("/ws")
	ws.GET("/health", s.inst.Wrap("ws_health", s.probe.Health))
	ws.GET("/blocknumber", s.inst.Wrap("ws_blocknumber", s.httpH.Handler(&httpapi.BlockNumber, s.net, s.net.WS)))
	ws.GET("/gasprice", s.inst.Wrap("ws_gasprice", s.httpH.Handler(&httpapi.GasPrice, s.net, s.net.WS)))
	ws.POST("/blockbynumber", s.inst.Wrap("ws_blockbynumber", s.httpH.Handler(&httpapi.BlockByNumber, s.net, s.net.WS)))
	ws.POST("/txbyblockandindex", s.inst.Wrap("ws_txbyblockandindex", s.httpH.Handler(&httpapi.TxByBlockAndIndex, s.net, s.net.WS)))

	// client ⇄WebSocket⇄ gateway ⇄WebSocket⇄ upstream
	r.GET("/socket2socket", s.inst.Wrap("socket2socket", s.socket2socket))

	r.NotFound = s.inst.Wrap("other", func(ctx *fasthttp.RequestCtx) { pipeline.WriteError(ctx, nil, proto.ErrNotFound) })
	r.MethodNotAllowed = s.inst.Wrap("other", func(ctx *fasthttp.RequestCtx) { pipeline.WriteError(ctx, nil, proto.ErrMethodNotAllowed) })
	r.PanicHandler = s.panicked
	return r
}

// keyRoutes serves the JSON-RPC endpoints with an API key in the path, as Infura has
// them: POST /v3/<key> is POST /, GET /ws/v3/<key> is /socket2socket (browsers cannot
// set headers on a websocket). Every other route takes the key in Authorization: Bearer
// or X-API-Key. They are matched here, ahead of the router, because the router's path
// parameters allocate on every request.
func (s *Server) keyRoutes(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	rpc := s.inst.Wrap("rpc", s.httpH.RPC(s.net))
	ws := s.inst.Wrap("socket2socket", s.socket2socket)
	other := s.inst.Wrap("other", func(ctx *fasthttp.RequestCtx) { pipeline.WriteError(ctx, nil, proto.ErrMethodNotAllowed) })
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
