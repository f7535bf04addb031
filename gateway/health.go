package gateway

import (
	"time"

	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/proto"
	"github.com/infura-gateway/infura-gateway/upstream"
)

// Ready reports whether the server should receive traffic: not draining, and the
// upstream answered within ReadyWindow.
func (s *Server) Ready() bool {
	if s.draining.Load() {
		return false
	}
	last := s.upMetrics.LastOK(upstream.TransportHTTP)
	return !last.IsZero() && time.Since(last) < s.cfg.ReadyWindow
}

// health is liveness: the process serves requests. The body is the one the original
// REST API defined, which clients already parse.
func (s *Server) health(ctx *fasthttp.RequestCtx) {
	ctx.SetContentTypeBytes(contentTypeJSON)
	b := append(ctx.Response.Body()[:0:0], `{"status":200,"message":"Healthcheck response","datetime":"`...)
	b = time.Now().UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","version":"`...)
	b = append(b, s.version...)
	b = append(b, `"}`...)
	ctx.SetBody(b)
}

// readyz is readiness: 200 when the upstream answered recently and we are not draining.
func (s *Server) readyz(ctx *fasthttp.RequestCtx) {
	ctx.SetContentTypeBytes(contentTypeJSON)
	switch {
	case s.draining.Load():
		ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
		ctx.SetBodyString(`{"status":503,"ready":false,"reason":"draining"}`)
	case !s.Ready():
		ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
		ctx.SetBodyString(`{"status":503,"ready":false,"reason":"upstream has not answered recently"}`)
	default:
		ctx.SetBodyString(`{"status":200,"ready":true}`)
	}
}

// probeEvery is how often the upstream is probed when no traffic proves it alive.
func (s *Server) probeEvery() time.Duration {
	return min(max(s.cfg.ReadyWindow/3, 200*time.Millisecond), 5*time.Second)
}

// probeLoop keeps readiness (and gateway_upstream_up) truthful when there is no traffic:
// it calls eth_blockNumber whenever the last successful answer is older than a probe period.
func (s *Server) probeLoop() {
	defer s.wg.Done()
	every := s.probeEvery()
	t := time.NewTicker(every)
	defer t.Stop()
	var probe proto.Request
	probe.Set([]byte("eth_blockNumber"), nil)
	var buf []byte
	for {
		if time.Since(s.upMetrics.LastOK(upstream.TransportHTTP)) >= every {
			buf, _ = s.pool.Call(buf, &probe, restID, time.Now().Add(min(s.cfg.UpstreamTimeout, every*3)))
		}
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
	}
}
