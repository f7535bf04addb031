package pipeline

import (
	"github.com/infura-gateway/infura-gateway/proto"
	"github.com/infura-gateway/infura-gateway/tracing"
)

// SetTracer turns tracing on (t non-nil) for the calls served from now on; it is set
// once, before the gateway serves.
func (p *Pipeline) SetTracer(t *tracing.Tracer) { p.tracer = t }

// endCall ends a traced call's span with its outcome class and cache result: never
// params, keys or client addresses.
func endCall(c *Call, e *proto.Error) {
	c.Trace.End(c.Req.Method.String(), outcome(e, c.Ans), c.Cached.String())
}

// endBatch ends a traced batch: each element's span (children of the batch's), then
// the batch's own.
func endBatch(b *batch, e *proto.Error) {
	for _, c := range b.calls {
		if c.Trace.Sampled() {
			c.Trace.SetName(c.Req.Method.String())
			endCall(c, nil)
		}
	}
	b.trace.End(proto.MethodBatch.String(), outcome(e, nil), "")
}

// outcome is the outcome class of a call: ok, rpc_error (the node's own error, or
// the gateway's JSON-RPC-level refusal), or the class of a transport error.
func outcome(e *proto.Error, ans []byte) string {
	switch {
	case e == nil && proto.IsErrorResponse(ans):
		return "rpc_error"
	case e == nil:
		return "ok"
	case e.Status == 429:
		return "rate_limited"
	case e.Status == 504:
		return "timeout"
	case e.Status >= 500:
		return "upstream_error"
	case e.Status >= 400:
		return "refused"
	}
	return "rpc_error"
}

// String is the cache result as a span attribute ("" when the cache is off).
func (s CacheStatus) String() string {
	switch s {
	case CacheHit:
		return "hit"
	case CacheMiss:
		return "miss"
	}
	return ""
}
