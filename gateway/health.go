package gateway

import (
	"time"

	"github.com/goccy/go-json"
	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/gateway/pipeline"
	"github.com/infura-gateway/infura-gateway/proto"
	"github.com/infura-gateway/infura-gateway/upstream"
)

// Ready reports whether this pod should receive traffic: it serves, and it is not
// draining. Upstream health is not part of it: every pod shares the upstreams, so an
// upstream outage would take every pod out at once and leave clients nothing to talk
// to; it shows in /status, the metrics and the alerts instead, and the router routes
// around it.
func (s *Server) Ready() bool {
	return s.serving.Load() && !s.draining.Load()
}

// health is liveness: the process serves requests. The body is the one the original
// REST API defined, which clients already parse.
func (s *Server) health(ctx *fasthttp.RequestCtx) {
	ctx.SetContentTypeBytes(pipeline.ContentTypeJSON)
	b := append(ctx.Response.Body()[:0:0], `{"status":200,"message":"Healthcheck response","datetime":"`...)
	b = time.Now().UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","version":"`...)
	b = append(b, s.version...)
	b = append(b, `"}`...)
	ctx.SetBody(b)
}

// readyz is readiness: 200 when the upstream answered recently and we are not draining.
func (s *Server) readyz(ctx *fasthttp.RequestCtx) {
	ctx.SetContentTypeBytes(pipeline.ContentTypeJSON)
	switch {
	case s.draining.Load():
		ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
		ctx.SetBodyString(`{"status":503,"ready":false,"reason":"draining"}`)
	case !s.Ready():
		ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
		ctx.SetBodyString(`{"status":503,"ready":false,"reason":"starting"}`)
	default:
		ctx.SetBodyString(`{"status":200,"ready":true}`)
	}
}

// statusPage is GET /status: the gateway and every upstream, as the router sees them.
// It holds no URL or key: names, states and figures only.
type statusPage struct {
	Version  string `json:"version"`
	Ready    bool   `json:"ready"`
	Draining bool   `json:"draining"`
	upstream.Status
}

// status serves GET /status.
func (s *Server) status(ctx *fasthttp.RequestCtx) {
	page := statusPage{Version: s.version, Ready: s.Ready(), Draining: s.draining.Load(), Status: s.net.Router.Status()}
	b, err := json.MarshalIndent(page, "", "  ")
	if err != nil {
		pipeline.WriteError(ctx, nil, proto.ErrInternal)
		return
	}
	ctx.SetContentTypeBytes(pipeline.ContentTypeJSON)
	ctx.SetBody(append(b, '\n'))
}
