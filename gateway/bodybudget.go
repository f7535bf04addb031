package gateway

import (
	"sync"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/gateway/config"
	"github.com/infura-gateway/infura-gateway/gateway/network"
	"github.com/infura-gateway/infura-gateway/gateway/pipeline"
	"github.com/infura-gateway/infura-gateway/proto"
	"github.com/infura-gateway/infura-gateway/upstream"
)

// bodyBudget bounds the request bodies being read from clients, all connections
// together (-max-body-read-bytes). fasthttp allocates a body's buffer from the length
// its header declares (Content-Length, or a chunk's size line), before any byte of it
// arrives: a client sending only headers declaring -max-request-body held that much
// (rounded up to a power of two: 8 MiB for 5 MiB) per connection until -read-timeout,
// 200 connections 1.6 GB, with nothing counting it. Each body declared past
// config.ReadFloor reserves what fasthttp will allocate for it (its length rounded up to a
// power of two; a chunked one: the most it may grow to) when its header is read, before
// fasthttp allocates; one that does not fit is refused with 503 and Retry-After before
// its body is read. The reservation is given
// back when the request reaches the handler (its body read) or fails (transportError).
//
// Small bodies, nearly every request, touch nothing shared: one atomic load of the
// count of reservations outstanding on the way in. Reservations are kept by the
// request's header, which fasthttp keeps per connection: a connection that ends
// without either (closed by the server as it shuts down) leaves its reservation until
// its header is used by another request, which gives it back first.
type bodyBudget struct {
	limit, max int64 // the budget; -max-request-body
	// reading counts the bytes reserved; the websocket clients' messages being read
	// count in it too (socket/client.go readMessage).
	reading *network.Budget
	pending atomic.Int32 // len(by), read without the lock

	mu sync.Mutex
	by map[*fasthttp.RequestHeader]int64 // reserved bytes; refusedBody when refused

	refused *metrics.Counter
}

// dropLargeBodies makes fasthttp drop the body buffers over pipeline.KeptBody of the
// requests and responses it resets instead of keeping or pooling them (the setting is
// fasthttp's, the whole process's). A client connection keeps both its buffers while
// idle, uncounted: with 1 MiB, 500 idle connections that had each sent one 600 KB
// request held 600 MB, and 1,000 that had each been answered 60 KB held 64 MB more than
// 1,000 answered 45 bytes; at -max-conns (16384) that is 16 GiB. 4 KiB is over nearly
// every call and answer a connection sends and gets again and again, which reuse their
// buffers; a larger request body gets a buffer for its request, a cost small beside
// reading it, and a larger answer is lent to the response instead
// (pipeline.WriteAnswer). The upstream layer's buffers are its own (upstream.Pool keeps
// its responses' up to 1 MiB).
func dropLargeBodies() { fasthttp.SetBodySizePoolLimit(pipeline.KeptBody, pipeline.KeptBody) }

// refusedBody marks a request refused by the budget, for transportError to answer.
const refusedBody = -1

// errBodyBudget answers a request whose body does not fit in -max-body-read-bytes.
var errBodyBudget = &proto.Error{Code: proto.CodeLimitExceeded, Status: fasthttp.StatusServiceUnavailable, RetryAfter: 1,
	Message: "gateway busy: it is reading too many large request bodies right now, retry later"}

func newBodyBudget(limit, max int, reg *upstream.Registry) *bodyBudget {
	b := &bodyBudget{limit: int64(limit), max: int64(max), by: make(map[*fasthttp.RequestHeader]int64),
		reading: network.NewBudget(limit)}
	reg.Gauge("gateway_request_body_bytes_reading", "Bytes of client requests being read: HTTP bodies declared past 64 KiB, by their declared length, and websocket messages past 64 KiB, by their buffer (bounded by -max-body-read-bytes).",
		func() float64 { return float64(b.reading.InUse()) })
	reg.Gauge("gateway_request_body_bytes_limit", "The bound of gateway_request_body_bytes_reading (-max-body-read-bytes).",
		func() float64 { return float64(b.limit) })
	b.refused = reg.Counter("gateway_request_body_budget_refusals_total",
		"Client requests refused (503) before their body was read because -max-body-read-bytes of bodies were being read.")
	return b
}

// headerReceived is fasthttp's HeaderReceived: it reserves the body's declared length,
// or refuses the request (its body limit set below its length: fasthttp stops with
// ErrBodyTooLarge before allocating, and transportError answers 503).
func (b *bodyBudget) headerReceived(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	if b.pending.Load() != 0 {
		b.done(h) // left by a connection that ended without an answer
	}
	n := int64(h.ContentLength())
	if n == -1 { // chunked: it may grow to the limit, each chunk with its CRLF
		n = b.max + 2
	} else if n <= config.ReadFloor || n > b.max {
		return fasthttp.RequestConfig{} // small, or refused by fasthttp as too large
	}
	n = int64(config.BodyBuffer(int(n)))
	mark := n
	if !b.reading.Acquire(int(n)) {
		b.refused.Inc()
		mark = refusedBody
	}
	b.mu.Lock()
	b.by[h] = mark
	b.pending.Store(int32(len(b.by)))
	b.mu.Unlock()
	if mark == refusedBody {
		return fasthttp.RequestConfig{MaxRequestBodySize: 1}
	}
	return fasthttp.RequestConfig{}
}

// refusing reports whether h's request was refused by the budget in headerReceived
// (its reservation kept until done).
func (b *bodyBudget) refusing(h *fasthttp.RequestHeader) bool {
	if b.pending.Load() == 0 {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.by[h] == refusedBody
}

// expect is fasthttp's ExpectHandler: a request sent with "Expect: 100-continue" whose
// body would be refused (over -max-request-body, or past the budget) gets its refusal
// instead of a 100 Continue, before the client sends the body (RFC 9110 §10.1.1), as
// JSON like every refusal. fasthttp writes the response as it stands with the status
// returned, without calling the handler, and closes the connection.
func (s *Server) expect(ctx *fasthttp.RequestCtx) int {
	h := &ctx.Request.Header
	var e *proto.Error
	switch {
	case int64(h.ContentLength()) > s.bodies.max:
		e = proto.ErrBodyTooLarge
	case s.bodies.refusing(h):
		e = errBodyBudget
	default:
		return fasthttp.StatusContinue
	}
	s.bodies.done(h)
	pipeline.WriteError(ctx, nil, e)
	s.countAnswered(ctx, false)
	return ctx.Response.StatusCode()
}

// done gives back the reservation of h's request, if it has one, and reports whether
// the request was refused by the budget.
func (b *bodyBudget) done(h *fasthttp.RequestHeader) (refused bool) {
	b.mu.Lock()
	n, ok := b.by[h]
	if ok {
		delete(b.by, h)
		b.pending.Store(int32(len(b.by)))
	}
	b.mu.Unlock()
	if n > 0 {
		b.reading.Release(int(n))
	}
	return n == refusedBody
}
