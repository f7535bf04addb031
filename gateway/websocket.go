package gateway

import (
	"encoding/base64"
	"net/http"

	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/upstream"
)

// muxConfig is the configuration of the upstream websocket Mux, every value from Config.
func (s *Server) muxConfig() upstream.MuxConfig {
	c := &s.cfg
	var header http.Header
	if c.UpstreamUser != "" || c.UpstreamSecret != "" {
		// Infura checks the project secret on the websocket handshake as on HTTP.
		header = http.Header{"Authorization": {"Basic " +
			base64.StdEncoding.EncodeToString([]byte(c.UpstreamUser+":"+c.UpstreamSecret))}}
	}
	return upstream.MuxConfig{
		URL:            c.UpstreamWSURL,
		Header:         header,
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
		Metrics:        s.upMetrics,
	}
}

// startWebsocket connects the shared upstream websocket Mux when an upstream websocket
// URL is configured. The /ws/* routes and /socket2socket go through it.
func (s *Server) startWebsocket() error {
	if s.cfg.UpstreamWSURL == "" {
		return nil
	}
	mux, err := upstream.NewMux(s.muxConfig())
	if err != nil {
		return err
	}
	mux.Start()
	s.mux = mux
	s.ws = mux
	s.s2s = newSocketServer(s)
	// Closers run in reverse: clients are told goodbye (1001) before the Mux goes.
	s.closers = append(s.closers, mux.Close, s.s2s.Close)
	return nil
}

// socket2socket upgrades to a websocket carrying any JSON-RPC call to the upstream.
func (s *Server) socket2socket(ctx *fasthttp.RequestCtx) {
	if s.s2s == nil {
		writeError(ctx, nil, errWSDisabled)
		return
	}
	s.s2s.serve(ctx)
}
