package gateway

import (
	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/gateway/network"
	"github.com/infura-gateway/infura-gateway/gateway/pipeline"
	"github.com/infura-gateway/infura-gateway/proto"
)

// restRoute describes one of the REST routes: the JSON-RPC call it makes. Answers carry
// id 1, so a REST answer is the node's own answer to the same call, byte for byte.
type restRoute struct {
	name []byte
	// params validates a POST body and appends the canonical params; nil for routes
	// without a body.
	params func(dst, body []byte) ([]byte, *proto.Error)
}

var (
	restBlockNumber       = restRoute{name: []byte("eth_blockNumber")}
	restGasPrice          = restRoute{name: []byte("eth_gasPrice")}
	restBlockByNumber     = restRoute{name: []byte("eth_getBlockByNumber"), params: proto.AppendBlockByNumberParams}
	restTxByBlockAndIndex = restRoute{name: []byte("eth_getTransactionByBlockNumberAndIndex"), params: proto.AppendTxByBlockAndIndexParams}
)

// rest returns the handler of a REST route forwarding to up. It is built once per
// route; a request allocates nothing in the gateway's code.
func (s *Server) rest(r *restRoute, up network.Caller) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		who, perr := s.acc.Identify(ctx)
		if perr != nil {
			pipeline.WriteError(ctx, nil, perr)
			return
		}
		c := pipeline.GetCall(up, ctx.Time().Add(s.cfg.UpstreamTimeout))
		defer pipeline.PutCall(c)
		c.Who = who
		var params []byte
		if r.params != nil {
			c.Params, perr = r.params(c.Params[:0], ctx.PostBody())
			if perr != nil {
				pipeline.WriteError(ctx, nil, perr)
				return
			}
			params = c.Params
		}
		c.Req.Set(r.name, params)
		c.ID = pipeline.RestID
		if perr := s.pipe.Serve(s.net, c); perr != nil {
			pipeline.WriteError(ctx, pipeline.RestID, perr)
			return
		}
		pipeline.WriteAnswer(ctx, c)
	}
}
