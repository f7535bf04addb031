package admin

import (
	"sync/atomic"
	"time"

	"github.com/goccy/go-json"
	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/gateway/network"
	"github.com/infura-gateway/infura-gateway/gateway/pipeline"
	"github.com/infura-gateway/infura-gateway/proto"
	"github.com/infura-gateway/infura-gateway/upstream"
)

// Probe is the gateway's life as probes see it: serving once it listens, draining once
// shutdown began. /health answers while the process lives; /readyz only while serving
// and not draining.
type Probe struct {
	version           string
	serving, draining atomic.Bool
}

// NewProbe makes the probe of a gateway of version.
func NewProbe(version string) *Probe { return &Probe{version: version} }

// SetServing marks the listener open.
func (s *Probe) SetServing() { s.serving.Store(true) }

// SetDraining marks the start of shutdown: /readyz turns 503.
func (s *Probe) SetDraining() { s.draining.Store(true) }

// Draining reports whether shutdown began.
func (s *Probe) Draining() bool { return s.draining.Load() }

// Ready reports whether this pod should receive traffic: it serves, and it is not
// draining. Upstream health is not part of it: every pod shares the upstreams, so an
// upstream outage would take every pod out at once and leave clients nothing to talk
// to; it shows in /status, the metrics and the alerts instead, and the router routes
// around it.
func (s *Probe) Ready() bool {
	return s.serving.Load() && !s.draining.Load()
}

// Health is liveness: the process serves requests. The body is the one the original
// REST API defined, which clients already parse.
func (s *Probe) Health(ctx *fasthttp.RequestCtx) {
	ctx.SetContentTypeBytes(pipeline.ContentTypeJSON)
	b := append(ctx.Response.Body()[:0:0], `{"status":200,"message":"Healthcheck response","datetime":"`...)
	b = time.Now().UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","version":"`...)
	b = append(b, s.version...)
	b = append(b, `"}`...)
	ctx.SetBody(b)
}

// Readyz is readiness: 200 when the upstream answered recently and we are not draining.
func (s *Probe) Readyz(ctx *fasthttp.RequestCtx) {
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

// StatusPage is GET /status: the gateway and every upstream, as the routers see them,
// by network. The upstreams of the default network are also at the top level, as they
// were when a gateway served one network. It holds no URL or key: names, states and
// figures only.
type StatusPage struct {
	Version  string `json:"version"`
	Ready    bool   `json:"ready"`
	Draining bool   `json:"draining"`
	upstream.Status
	Networks []NetworkStatus `json:"networks"`
}

// NetworkStatus is one network on /status.
type NetworkStatus struct {
	Name    string `json:"name"`
	ChainID uint64 `json:"chain_id,omitempty"`
	upstream.Status
}

// StatusHandler serves GET /status: the probe's state and the upstreams of every
// network of set.
func StatusHandler(s *Probe, set *network.Set) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) { status(ctx, s, set) }
}

func status(ctx *fasthttp.RequestCtx, s *Probe, set *network.Set) {
	page := StatusPage{Version: s.version, Ready: s.Ready(), Draining: s.draining.Load()}
	def, _, _ := set.Resolve(nil, nil)
	for _, n := range set.List() {
		st := n.Router.Status()
		if n == def {
			page.Status = st
		}
		page.Networks = append(page.Networks, NetworkStatus{Name: n.Name, ChainID: n.ChainID, Status: st})
	}
	b, err := json.MarshalIndent(page, "", "  ")
	if err != nil {
		pipeline.WriteError(ctx, nil, proto.ErrInternal)
		return
	}
	ctx.SetContentTypeBytes(pipeline.ContentTypeJSON)
	ctx.SetBody(append(b, '\n'))
}
