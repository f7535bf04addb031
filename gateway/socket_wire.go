package gateway

import (
	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/gateway/network"
	"github.com/infura-gateway/infura-gateway/gateway/pipeline"
	"github.com/infura-gateway/infura-gateway/proto"
)

// socket2socket serves /socket2socket, or refuses it when no upstream of the network
// has a websocket.
func (f *front) socket2socket(ctx *fasthttp.RequestCtx) {
	if f.sock == nil {
		pipeline.WriteError(ctx, nil, network.ErrWSDisabled)
		return
	}
	f.sock.Serve(ctx)
}

// writeNotFound answers 404 with e.
func writeNotFound(ctx *fasthttp.RequestCtx, e *proto.Error) { pipeline.WriteError(ctx, nil, e) }
