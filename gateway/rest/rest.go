// Package rest serves the seed's REST routes (GET /blocknumber, /gasprice, POST
// /blockbynumber, /txbyblockandindex, and the same under /ws/): each a fixed JSON-RPC
// method whose params are built from the body's fields, run through the pipeline of
// the route's network over HTTP or websockets. It imports access/, pipeline/,
// network/ and proto/.
package rest

import (
	"time"

	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/gateway/access"
	"github.com/infura-gateway/infura-gateway/gateway/network"
	"github.com/infura-gateway/infura-gateway/gateway/pipeline"
	"github.com/infura-gateway/infura-gateway/proto"
)

// Route describes one of the REST routes: the JSON-RPC call it makes. Answers carry
// id 1, so a REST answer is the node's own answer to the same call, byte for byte.
// Route is one REST route: its method, and how its params come from the body.
type Route struct {
	name []byte
	// params validates a POST body and appends the canonical params; nil for routes
	// without a body.
	params func(dst, body []byte) ([]byte, *proto.Error)
}

var (
	BlockNumber       = Route{name: []byte("eth_blockNumber")}
	GasPrice          = Route{name: []byte("eth_gasPrice")}
	BlockByNumber     = Route{name: []byte("eth_getBlockByNumber"), params: proto.AppendBlockByNumberParams}
	TxByBlockAndIndex = Route{name: []byte("eth_getTransactionByBlockNumberAndIndex"), params: proto.AppendTxByBlockAndIndexParams}
)

// rest returns the handler of a REST route forwarding to up. It is built once per
// route; a request allocates nothing in the gateway's code.
// Handlers make the REST routes' handlers: callers identified by acc, calls run by
// pipe with timeout.
type Handlers struct {
	acc     *access.Access
	pipe    *pipeline.Pipeline
	timeout time.Duration
}

// New makes the REST handlers.
func New(acc *access.Access, pipe *pipeline.Pipeline, timeout time.Duration) *Handlers {
	return &Handlers{acc: acc, pipe: pipe, timeout: timeout}
}

// Handler serves route r on network n through up (n.HTTP or n.WS).
func (s *Handlers) Handler(r *Route, n *network.Network, up network.Caller) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		who, perr := s.acc.Identify(ctx)
		if perr != nil {
			pipeline.WriteError(ctx, nil, perr)
			return
		}
		c := pipeline.GetCall(up, ctx.Time().Add(s.timeout))
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
		if perr := s.pipe.Serve(n, c); perr != nil {
			pipeline.WriteError(ctx, pipeline.RestID, perr)
			return
		}
		pipeline.WriteAnswer(ctx, c)
	}
}
