package gateway

import (
	"github.com/fasthttp/router"
	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/gateway/access"
	"github.com/infura-gateway/infura-gateway/gateway/pipeline"
	"github.com/infura-gateway/infura-gateway/gateway/rest"
	"github.com/infura-gateway/infura-gateway/proto"
)

// routeTable is every path the gateway serves, in one place. Each route is wrapped
// once, at start, with its metrics.
func (s *Server) routeTable() *router.Router {
	r := router.New()
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false

	// Probes may use HEAD (some load balancers do): the same answer without a body.
	health, readyz := s.instrument("health", s.health), s.instrument("readyz", s.readyz)
	r.GET("/health", health)
	r.HEAD("/health", health)
	r.GET("/readyz", readyz)
	r.HEAD("/readyz", readyz)
	// /status (upstream names, health, errors) is on the admin listener only.

	// client ⇄HTTP⇄ gateway ⇄HTTP⇄ upstream
	r.GET("/blocknumber", s.instrument("blocknumber", s.restH.Handler(&rest.BlockNumber, s.net, s.net.HTTP)))
	r.GET("/gasprice", s.instrument("gasprice", s.restH.Handler(&rest.GasPrice, s.net, s.net.HTTP)))
	r.POST("/blockbynumber", s.instrument("blockbynumber", s.restH.Handler(&rest.BlockByNumber, s.net, s.net.HTTP)))
	r.POST("/txbyblockandindex", s.instrument("txbyblockandindex", s.restH.Handler(&rest.TxByBlockAndIndex, s.net, s.net.HTTP)))
	r.POST("/", s.instrument("rpc", s.rpcH.Serve))

	// client ⇄HTTP⇄ gateway ⇄WebSocket⇄ upstream: the same routes through the Mux.
	ws := r.Group("/ws")
	ws.GET("/health", s.instrument("ws_health", s.health))
	ws.GET("/blocknumber", s.instrument("ws_blocknumber", s.restH.Handler(&rest.BlockNumber, s.net, s.net.WS)))
	ws.GET("/gasprice", s.instrument("ws_gasprice", s.restH.Handler(&rest.GasPrice, s.net, s.net.WS)))
	ws.POST("/blockbynumber", s.instrument("ws_blockbynumber", s.restH.Handler(&rest.BlockByNumber, s.net, s.net.WS)))
	ws.POST("/txbyblockandindex", s.instrument("ws_txbyblockandindex", s.restH.Handler(&rest.TxByBlockAndIndex, s.net, s.net.WS)))

	// client ⇄WebSocket⇄ gateway ⇄WebSocket⇄ upstream
	r.GET("/socket2socket", s.instrument("socket2socket", s.socket2socket))

	r.NotFound = s.instrument("other", func(ctx *fasthttp.RequestCtx) { pipeline.WriteError(ctx, nil, proto.ErrNotFound) })
	r.MethodNotAllowed = s.instrument("other", func(ctx *fasthttp.RequestCtx) { pipeline.WriteError(ctx, nil, proto.ErrMethodNotAllowed) })
	r.PanicHandler = s.panicked
	return r
}

// keyRoutes serves the JSON-RPC endpoints with an API key in the path, as Infura has
// them: POST /v3/<key> is POST /, GET /ws/v3/<key> is /socket2socket (browsers cannot
// set headers on a websocket). Every other route takes the key in Authorization: Bearer
// or X-API-Key. They are matched here, ahead of the router, because the router's path
// parameters allocate on every request.
func (s *Server) keyRoutes(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	rpc := s.instrument("rpc", s.rpcH.Serve)
	ws := s.instrument("socket2socket", s.socket2socket)
	other := s.instrument("other", func(ctx *fasthttp.RequestCtx) { pipeline.WriteError(ctx, nil, proto.ErrMethodNotAllowed) })
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
	s.log.Error("BUG: panic while handling a request", "path", logPath(ctx), "panic", v)
	pipeline.WriteError(ctx, nil, proto.ErrInternal)
}

// logPath is the request path fit for a log line: everything after /v3/ is replaced
// (redact.go), not only a well-formed key.
func logPath(ctx *fasthttp.RequestCtx) string {
	return redactPath(string(ctx.Path()))
}
