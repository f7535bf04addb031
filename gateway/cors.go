package gateway

import (
	"github.com/valyala/fasthttp"
)

// withCORS lets browser dapps use the gateway as their RPC URL: it adds
// Access-Control-Allow-Origin when the request has an Origin, and answers preflights.
func (s *Server) withCORS(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	if s.cfg.CORSOrigins == "" {
		return next
	}
	allow := []byte(s.cfg.CORSOrigins)
	return func(ctx *fasthttp.RequestCtx) {
		if len(ctx.Request.Header.PeekBytes(headerOrigin)) == 0 {
			next(ctx)
			return
		}
		h := &ctx.Response.Header
		h.SetBytesKV(headerAllowOrigin, allow)
		if ctx.IsOptions() && len(ctx.Request.Header.PeekBytes(headerRequestMethod)) > 0 {
			h.SetBytesKV(headerAllowMethods, allowMethods)
			h.SetBytesKV(headerAllowHeaders, allowHeaders)
			h.SetBytesKV(headerMaxAge, maxAge)
			ctx.SetStatusCode(fasthttp.StatusNoContent)
			return
		}
		next(ctx)
	}
}

var (
	headerOrigin        = []byte("Origin")
	headerRequestMethod = []byte("Access-Control-Request-Method")
	headerAllowOrigin   = []byte("Access-Control-Allow-Origin")
	headerAllowMethods  = []byte("Access-Control-Allow-Methods")
	headerAllowHeaders  = []byte("Access-Control-Allow-Headers")
	headerMaxAge        = []byte("Access-Control-Max-Age")
	allowMethods        = []byte("GET, POST, OPTIONS")
	allowHeaders        = []byte("Content-Type, Authorization")
	maxAge              = []byte("86400")
)
