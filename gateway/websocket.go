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
	mux := upstream.NewMux(upstream.MuxConfig{
		URL:              s.cfg.UpstreamWSURL,
		Header:           header,
		Conns:            s.cfg.WSUpstreamConns,
		ReadLimit:        int64(max(s.cfg.WSMaxMessage, s.cfg.MaxResponseBody)),
		MaxResponseBytes: s.cfg.MaxResponseBody,
		PingInterval:     s.cfg.WSPingInterval,
		RequestTimeout:   s.cfg.UpstreamTimeout,
		Logger:           s.log,
	})
	mux.Start()
	s.mux = mux
	s.ws = mux
	s.closers = append(s.closers, mux.Close)
	return nil
}

func (s *Server) socket2socket(ctx *fasthttp.RequestCtx) {
	writeError(ctx, nil, errWSDisabled)
}
