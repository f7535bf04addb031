package gateway

import (
	"github.com/fasthttp/router"
	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/proto"
)

// routeTable is every path the gateway serves, in one place. Each route is wrapped
// once, at start, with its metrics.
func (s *Server) routeTable() *router.Router {
	r := router.New()
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false

	r.GET("/health", s.instrument("health", s.health))
	r.GET("/readyz", s.instrument("readyz", s.readyz))
	r.GET("/status", s.instrument("status", s.status))

	// client ⇄HTTP⇄ gateway ⇄HTTP⇄ upstream
	r.GET("/blocknumber", s.instrument("blocknumber", s.rest(&restBlockNumber, s.http)))
	r.GET("/gasprice", s.instrument("gasprice", s.rest(&restGasPrice, s.http)))
	r.POST("/blockbynumber", s.instrument("blockbynumber", s.rest(&restBlockByNumber, s.http)))
	r.POST("/txbyblockandindex", s.instrument("txbyblockandindex", s.rest(&restTxByBlockAndIndex, s.http)))
	r.POST("/", s.instrument("rpc", s.rpc))

	// client ⇄HTTP⇄ gateway ⇄WebSocket⇄ upstream: the same routes through the Mux.
	ws := r.Group("/ws")
	ws.GET("/health", s.instrument("ws_health", s.health))
	ws.GET("/blocknumber", s.instrument("ws_blocknumber", s.rest(&restBlockNumber, s.ws)))
	ws.GET("/gasprice", s.instrument("ws_gasprice", s.rest(&restGasPrice, s.ws)))
	ws.POST("/blockbynumber", s.instrument("ws_blockbynumber", s.rest(&restBlockByNumber, s.ws)))
	ws.POST("/txbyblockandindex", s.instrument("ws_txbyblockandindex", s.rest(&restTxByBlockAndIndex, s.ws)))

	// client ⇄WebSocket⇄ gateway ⇄WebSocket⇄ upstream
	r.GET("/socket2socket", s.instrument("socket2socket", s.socket2socket))

	r.NotFound = s.instrument("other", func(ctx *fasthttp.RequestCtx) { writeError(ctx, nil, proto.ErrNotFound) })
	r.MethodNotAllowed = s.instrument("other", func(ctx *fasthttp.RequestCtx) { writeError(ctx, nil, proto.ErrMethodNotAllowed) })
	r.PanicHandler = s.panicked
	return r
}

// panicked keeps one bad request from taking the process down; it is a bug if it runs.
func (s *Server) panicked(ctx *fasthttp.RequestCtx, v any) {
	s.log.Error("BUG: panic while handling a request", "path", string(ctx.Path()), "panic", v)
	writeError(ctx, nil, proto.ErrInternal)
}
