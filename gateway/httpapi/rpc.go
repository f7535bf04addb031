package httpapi

import (
	"time"

	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/gateway/access"
	"github.com/infura-gateway/infura-gateway/gateway/network"
	"github.com/infura-gateway/infura-gateway/gateway/pipeline"
	"github.com/infura-gateway/infura-gateway/proto"
	"github.com/infura-gateway/infura-gateway/tracing"
)

// Handlers make the HTTP routes' handlers: callers identified by acc, calls run by
// pipe with timeout.
type Handlers struct {
	acc     *access.Access
	pipe    *pipeline.Pipeline
	timeout time.Duration
}

// New makes the HTTP handlers.
func New(acc *access.Access, pipe *pipeline.Pipeline, timeout time.Duration) *Handlers {
	return &Handlers{acc: acc, pipe: pipe, timeout: timeout}
}

// POST / is a JSON-RPC 2.0 endpoint any Ethereum client can use as its RPC URL: single
// requests and batches, through the pipeline (gateway/pipeline). Like geth, JSON-RPC-level
// errors (parse, invalid request, denied method) are answered with HTTP 200 and an error
// object; transport failures (upstream down, too slow, over a budget) use the HTTP
// status of the proto error. A notification (no id) gets an empty 200.
//
// RPC serves POST / on network n.
func (s *Handlers) RPC(n *network.Network) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) { s.rpc(ctx, n) }
}

func (s *Handlers) rpc(ctx *fasthttp.RequestCtx, n *network.Network) {
	who, perr := s.acc.Identify(ctx)
	if perr == nil {
		perr = who.CheckNetwork(n.Name)
		who = who.On(n.Index, n.Name)
	}
	if perr != nil {
		pipeline.WriteError(ctx, nil, perr)
		return
	}
	body := ctx.PostBody()
	deadline := ctx.Time().Add(s.timeout)
	switch proto.FirstByte(body) {
	case '[':
		s.rpcBatch(ctx, n, body, deadline, who)
		return
	case 0:
		writeRPCError(ctx, nil, proto.ErrEmptyBody)
		return
	}
	c := pipeline.GetCall(n.HTTP, ctx.Time(), deadline)
	defer pipeline.PutCall(c)
	c.Who, c.From.Ctx = who, ctx
	c.Trace.SetIn(TraceIn(ctx))
	if perr := c.Req.Parse(body); perr != nil {
		// An invalid request is answered even without an id (id null), as geth does.
		if proto.RefusalAnswered(perr, c.Req.ID) {
			writeRPCError(ctx, c.Req.ID, perr)
		}
		return
	}
	c.ID = c.Req.ID
	if perr := s.pipe.Serve(n, c); perr != nil {
		if c.ID != nil {
			pipeline.WriteError(ctx, c.ID, rpcStatus(perr))
		}
		return
	}
	s.pipe.WriteAnswer(ctx, c)
}

func (s *Handlers) rpcBatch(ctx *fasthttp.RequestCtx, n *network.Network, body []byte, deadline time.Time, who *access.Tenant) {
	buf := pipeline.GetBuf()
	defer pipeline.PutBuf(buf)
	out, perr := s.pipe.ServeBatch(n, (*buf)[:0], body, n.HTTP, deadline, who, pipeline.Origin{Ctx: ctx}, TraceIn(ctx))
	*buf = out
	if perr != nil {
		pipeline.WriteError(ctx, nil, rpcStatus(perr))
		return
	}
	if s.pipe.WriteBody(ctx, out) { // empty when the batch held only notifications
		*buf = nil // the response's now
	}
}

// TraceIn is what a request says for tracing: its traceparent, and its X-Request-Id
// as the route's instrumenter settled it (the client's when valid, else generated).
// The bytes are ctx's: valid while the handler runs.
func TraceIn(ctx *fasthttp.RequestCtx) tracing.In {
	return tracing.In{Parent: ctx.Request.Header.PeekCanonical(tracing.TraceparentHeader),
		RequestID: ctx.Response.Header.PeekCanonical(tracing.RequestIDHeader), Settled: true}
}

// rpcStatus keeps JSON-RPC-level errors at HTTP 200, as geth answers them; transport
// errors (5xx, 413, 429) keep their status so HTTP clients and load balancers see them.
func rpcStatus(e *proto.Error) *proto.Error {
	if e.Status == fasthttp.StatusBadRequest {
		c := *e
		c.Status = fasthttp.StatusOK
		return &c
	}
	return e
}

// writeRPCError answers a JSON-RPC-level error with HTTP 200, as geth does.
func writeRPCError(ctx *fasthttp.RequestCtx, id []byte, e *proto.Error) {
	if e.Status != fasthttp.StatusOK {
		c := *e
		c.Status = fasthttp.StatusOK
		e = &c
	}
	pipeline.WriteError(ctx, id, e)
}
