package gateway

import (
	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/gateway/access"
)

// cors lets browser dapps use the gateway as their RPC URL: it adds
// Access-Control-Allow-Origin when the request has an Origin, and answers preflights
// (answered true: nothing else is to serve them). Called only when -cors-origins is
// set (s.corsAllow).
func (s *Server) cors(ctx *fasthttp.RequestCtx) (answered bool) {
	if len(ctx.Request.Header.PeekCanonical(access.HeaderOrigin)) == 0 {
		return false
	}
	h := &ctx.Response.Header
	h.SetBytesKV(headerAllowOrigin, s.corsAllow)
	if ctx.IsOptions() && len(ctx.Request.Header.PeekCanonical(headerRequestMethod)) > 0 {
		h.SetBytesKV(headerAllowMethods, allowMethods)
		h.SetBytesKV(headerAllowHeaders, allowHeaders)
		h.SetBytesKV(headerMaxAge, maxAge)
		ctx.SetStatusCode(fasthttp.StatusNoContent)
		return true
	}
	return false
}

// The request's header names are canonical (fasthttp's server normalizes them as it
// parses): looked up with PeekCanonical, nothing copied or normalized per request.
var (
	headerRequestMethod = []byte("Access-Control-Request-Method")
	headerAllowOrigin   = []byte("Access-Control-Allow-Origin")
	headerAllowMethods  = []byte("Access-Control-Allow-Methods")
	headerAllowHeaders  = []byte("Access-Control-Allow-Headers")
	headerMaxAge        = []byte("Access-Control-Max-Age")
	allowMethods        = []byte("GET, POST, OPTIONS")
	allowHeaders        = []byte("Content-Type, Authorization")
	maxAge              = []byte("86400")
)
