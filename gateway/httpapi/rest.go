// Package httpapi is the gateway's HTTP transport: POST / (and POST /v3/<key>), a
// JSON-RPC 2.0 endpoint any Ethereum client can use as its RPC URL (rpc.go), and the
// seed's REST routes (rest.go: GET /blocknumber, /gasprice, POST /blockbynumber,
// /txbyblockandindex, and the same under /ws/), each a fixed method whose params are
// built from the body's fields. Both identify the caller, run the call through the
// pipeline of the route's network and frame the answer in HTTP. It imports access/,
// pipeline/, network/ and proto/.
package httpapi

import (
	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/gateway/network"
	"github.com/infura-gateway/infura-gateway/gateway/pipeline"
	"github.com/infura-gateway/infura-gateway/proto"
)

// Route describes one of the REST routes: the JSON-RPC call it makes. Answers carry
// id 1, so a REST answer is the node's own answer to the same call, byte for byte.
type Route struct {
	name   []byte
	method proto.Method // name's, resolved once
	// params validates a POST body and appends the canonical params; nil for routes
	// without a body.
	params func(dst, body []byte) ([]byte, *proto.Error)
}

// The seed's routes.
var (
	BlockNumber       = route("eth_blockNumber", nil)
	GasPrice          = route("eth_gasPrice", nil)
	BlockByNumber     = route("eth_getBlockByNumber", proto.AppendBlockByNumberParams)
	TxByBlockAndIndex = route("eth_getTransactionByBlockNumberAndIndex", proto.AppendTxByBlockAndIndexParams)
)

func route(name string, params func(dst, body []byte) ([]byte, *proto.Error)) Route {
	return Route{name: []byte(name), method: proto.MethodNamed(name), params: params}
}

// Handler serves route r on network n through up (n.HTTP or n.WS). It is built once
// per route; a request allocates nothing in the gateway's code.
func (s *Handlers) Handler(r *Route, n *network.Network, up network.Caller) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		who, perr := s.acc.Identify(ctx)
		if perr == nil {
			perr = who.CheckNetwork(n.Name)
			who = who.On(n.Index, n.Name)
		}
		if perr != nil {
			pipeline.WriteError(ctx, nil, perr)
			return
		}
		c := pipeline.GetCall(up, ctx.Time(), ctx.Time().Add(s.timeout))
		defer pipeline.PutCall(c)
		c.Who = who
		c.Trace.SetIn(TraceIn(ctx))
		var params []byte
		if r.params != nil {
			c.Params, perr = r.params(c.Params[:0], ctx.PostBody())
			if perr != nil {
				pipeline.WriteError(ctx, nil, perr)
				return
			}
			params = c.Params
		}
		c.Req.SetKnown(r.name, r.method, params)
		c.ID = pipeline.RestID
		if perr := s.pipe.Serve(n, c); perr != nil {
			pipeline.WriteError(ctx, pipeline.RestID, perr)
			return
		}
		s.pipe.WriteAnswer(ctx, c)
	}
}
