package gateway

import (
	"encoding/base64"
	"net/http"

	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/upstream"
)

// startWebsocket connects the shared upstream websocket Mux when an upstream websocket
// URL is configured. The /ws/* routes and /socket2socket go through it.
func (s *Server) startWebsocket() error {
	if s.cfg.UpstreamWSURL == "" {
		return nil
	}
	var header http.Header
	if s.cfg.UpstreamUser != "" || s.cfg.UpstreamSecret != "" {
		// Infura checks the project secret on the websocket handshake as on HTTP.
		header = http.Header{"Authorization": {"Basic " +
			base64.StdEncoding.EncodeToString([]byte(s.cfg.UpstreamUser+":"+s.cfg.UpstreamSecret))}}
	}
	muxCfg := upstream.MuxConfig{
		URL:              s.cfg.UpstreamWSURL,
		Header:           header,
		Conns:            s.cfg.WSUpstreamConns,
		ReadLimit:        int64(max(s.cfg.WSMaxMessage, s.cfg.MaxResponseBody)),
		MaxResponseBytes: s.cfg.MaxResponseBody,
		PingInterval:     s.cfg.WSPingInterval,
		RequestTimeout:   s.cfg.UpstreamTimeout,
		Logger:           s.log,
	}
	mux := upstream.NewMux(muxCfg)
	mux.Start()
	s.mux = mux
	s.ws = mux
	s.s2s = NewSocket2Socket(SocketConfig{
		Mux:             mux,
		PerClient:       s.cfg.WSPerClient,
		MuxConfig:       muxCfg,
		Denied:          s.deny.denied,
		MaxBatch:        s.cfg.MaxBatch,
		MaxMessageBytes: s.cfg.MaxRequestBody,
		QueueSize:       s.cfg.WSClientQueue,
		MaxInFlight:     s.cfg.WSMaxInFlight,
		PingInterval:    s.cfg.WSPingInterval,
		AllowedOrigins:  s.cfg.WSAllowedOrigins,
		Logger:          s.log,
	})
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
	s.s2s.Serve(ctx)
}
