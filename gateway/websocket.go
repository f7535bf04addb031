package gateway

import (
	"encoding/base64"
	"net/http"

	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/upstream"
)

// muxConfig is the template of every upstream websocket Mux, every value from Config;
// the router fills in each upstream's URL, credentials and metrics.
func (s *Server) muxConfig() upstream.MuxConfig {
	c := &s.cfg
	return upstream.MuxConfig{
		Conns:          c.WSUpstreamConns,
		QueueSize:      c.WSUpstreamQueue,
		ReadLimit:      c.MaxResponseBody,
		PingInterval:   c.WSPingInterval,
		PongTimeout:    c.WSPongTimeout,
		DialTimeout:    c.WSDialTimeout,
		WriteTimeout:   c.WSWriteTimeout,
		BackoffMin:     c.WSBackoffMin,
		BackoffMax:     c.WSBackoffMax,
		RequestTimeout: c.UpstreamTimeout,
		Logger:         s.log,
	}
}

// startWebsocket serves the websocket paths when an upstream has a websocket: the /ws/*
// routes and /socket2socket go through the router's sockets.
func (s *Server) startWebsocket() error {
	for _, u := range s.router.Upstreams() {
		if u.Mux() != nil {
			s.ws = s.router.WS()
			s.s2s = newSocketServer(s)
			// Closers run in reverse: clients are told goodbye (1001) before the
			// router's sockets go.
			s.closers = append(s.closers, s.s2s.Close)
			return nil
		}
	}
	return nil
}

// perClientMux is a Mux of its own for one /socket2socket client (-ws-per-client), on
// the first upstream with a websocket.
func (s *Server) perClientMux() (*upstream.Mux, error) {
	for _, u := range s.router.Upstreams() {
		sp := u.Spec()
		if sp.WSURL == "" {
			continue
		}
		mc := s.muxConfig()
		mc.URL, mc.Conns, mc.Metrics = sp.WSURL, 1, s.perClientMetrics
		if sp.User != "" || sp.Password != "" {
			mc.Header = http.Header{"Authorization": {"Basic " +
				base64.StdEncoding.EncodeToString([]byte(sp.User+":"+sp.Password))}}
		}
		return upstream.NewMux(mc)
	}
	return nil, errWSDisabled
}

// socket2socket upgrades to a websocket carrying any JSON-RPC call to the upstream.
func (s *Server) socket2socket(ctx *fasthttp.RequestCtx) {
	if s.s2s == nil {
		writeError(ctx, nil, errWSDisabled)
		return
	}
	s.s2s.serve(ctx)
}
