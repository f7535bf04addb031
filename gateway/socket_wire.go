package gateway

import (
	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/gateway/network"
	"github.com/infura-gateway/infura-gateway/gateway/pipeline"
)

// socket2socket serves /socket2socket, or refuses it when no upstream has a websocket.
func (s *Server) socket2socket(ctx *fasthttp.RequestCtx) {
	if s.s2s == nil {
		pipeline.WriteError(ctx, nil, network.ErrWSDisabled)
		return
	}
	s.s2s.Serve(ctx)
}
