package gateway

import (
	"bytes"

	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/gateway/access"
)

// cors lets browser dapps use the gateway as their RPC URL: it adds
// Access-Control-Allow-Origin when the request has an Origin -cors-origins allows, and
// answers that origin's preflights (answered true: nothing else is to serve them). With
// "*" the header is "*"; with a list, the request's origin is echoed when listed (a
// browser takes one origin in the header, never a list) and every answer says Vary:
// Origin, so a shared cache keeps one answer per origin. A refused origin gets no CORS
// header and its preflight goes on to the router, so the browser stops the call. Called
// only when -cors-origins is set.
func (s *Server) cors(ctx *fasthttp.RequestCtx) (answered bool) {
	origin := ctx.Request.Header.PeekCanonical(access.HeaderOrigin)
	if len(origin) == 0 {
		return false
	}
	h := &ctx.Response.Header
	allow := s.corsAllow
	if allow == nil {
		h.SetBytesKV(headerVary, headerOriginName)
		for _, o := range s.corsOrigins {
			if bytes.EqualFold(o, origin) {
				allow = origin
				break
			}
		}
		if allow == nil {
			return false
		}
	}
	h.SetBytesKV(headerAllowOrigin, allow)
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
	headerVary          = []byte("Vary")
	headerOriginName    = []byte("Origin")
	// The headers a browser client may send: the key (either way), the request id and
	// the trace context the gateway reads.
	allowHeaders = []byte("Content-Type, Authorization, X-API-Key, X-Request-Id, traceparent")
	maxAge       = []byte("86400")
)
