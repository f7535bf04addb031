package pipeline

import (
	"strconv"
	"sync"

	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/proto"
	"github.com/infura-gateway/infura-gateway/upstream"
)

var (
	ContentTypeJSON  = []byte("application/json")
	headerXCache     = []byte("X-Cache")
	headerRetryAfter = []byte("Retry-After")
	valueHit         = []byte("HIT")
	valueMiss        = []byte("MISS")
)

// WriteAnswer puts c's answer into the response without copying: the call's own buffer
// is swapped with the response's (lent, when over KeptBody, which the response would
// drop; a small answer in such a buffer is copied), a cache entry is referenced as it is (the cache's bound counts it). A large
// answer of the call's own is counted in the answer budget until it is written
// (held.go); the call gives up its buffer.
func (p *Pipeline) WriteAnswer(ctx *fasthttp.RequestCtx, c *Call) {
	h := &ctx.Response.Header
	h.SetContentTypeBytes(ContentTypeJSON)
	switch c.Cached {
	case CacheHit:
		h.SetCanonical(headerXCache, valueHit)
	case CacheMiss:
		h.SetCanonical(headerXCache, valueMiss)
	}
	switch {
	case c.Ans == nil: // a notification
		ctx.Response.ResetBody()
	case len(c.Own) > 0 && &c.Ans[0] == &c.Own[0]:
		if len(c.Ans) > upstream.AnswerFloor {
			p.setBody(&ctx.Response, c.Ans)
			c.Own = nil
			return
		}
		if cap(c.Own) > KeptBody {
			if len(c.Ans) <= KeptBody {
				// A small answer in a large buffer (one that held a large answer
				// before) is copied into the response's own buffer, which the
				// connection keeps for its next answer: cheaper than a body stream.
				ctx.Response.SetBody(c.Ans)
				return
			}
			c.Own = lendBody(&ctx.Response, c.Ans)
			return
		}
		c.Own = ctx.Response.SwapBody(c.Own)
	default:
		ctx.Response.SetBodyRaw(c.Ans)
	}
}

// WriteBody puts a batch's answer into the response: copied, or, when large, held as
// WriteAnswer holds one (the caller gives the buffer up; it reports whether it did).
func (p *Pipeline) WriteBody(ctx *fasthttp.RequestCtx, body []byte) (kept bool) {
	ctx.Response.Header.SetContentTypeBytes(ContentTypeJSON)
	if len(body) > upstream.AnswerFloor {
		p.setBody(&ctx.Response, body)
		return true
	}
	ctx.SetBody(body)
	return false
}

// WriteError answers with a JSON-RPC error envelope and the error's HTTP status.
// id is the client's raw id, nil for null.
func WriteError(ctx *fasthttp.RequestCtx, id []byte, e *proto.Error) {
	buf := GetBuf()
	*buf = proto.AppendError((*buf)[:0], id, e)
	ctx.SetStatusCode(e.Status)
	if e.RetryAfter > 0 {
		ctx.Response.Header.SetBytesKV(headerRetryAfter, strconv.AppendInt((*buf)[len(*buf):], int64(e.RetryAfter), 10))
	}
	ctx.SetContentTypeBytes(ContentTypeJSON)
	ctx.SetBody(*buf)
	PutBuf(buf)
}

func asError(err error) *proto.Error {
	if e, ok := err.(*proto.Error); ok {
		return e
	}
	return proto.ErrInternal
}

// Scratch buffers for error bodies and batch answers.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func GetBuf() *[]byte { return bufPool.Get().(*[]byte) }

func PutBuf(b *[]byte) {
	if cap(*b) > 64<<10 { // don't keep buffers a rare huge request grew
		return
	}
	bufPool.Put(b)
}

// StatusCodes are the HTTP statuses the gateway answers with, the code label values of
// its request metrics (HTTP routes and websocket calls); any other is "other".
var StatusCodes = [...]int{200, 204, 400, 401, 403, 404, 405, 413, 415, 429, 500, 502, 503, 504}

// StatusIndex is code's index in StatusCodes, or len(StatusCodes) for "other".
func StatusIndex(code int) int {
	for i, c := range StatusCodes {
		if c == code {
			return i
		}
	}
	return len(StatusCodes)
}

// batchWaits gathers the refusals with a known wait among a batch's answers, for its
// HTTP answer's Retry-After, as a single call's refusal carries one.
type batchWaits struct {
	n     int
	first *proto.Error
	secs  int
}

func (w *batchWaits) add(e *proto.Error) {
	if e == nil {
		return
	}
	if w.n++; w.first == nil {
		w.first = e
	}
	w.secs = max(w.secs, e.RetryAfter)
}

// write sets Retry-After on the HTTP answer (ctx nil: a websocket, no headers) of a
// batch of answered elements: the longest wait, so a resend of the batch is not refused
// again. A batch whose every answer is such a refusal (refused whole: its upstream
// exchange met closed gates or spent budgets) takes the refusal's status, as a single
// call does, so HTTP clients and load balancers see the 429 (503) too; one partly
// answered stays 200.
func (w *batchWaits) write(ctx *fasthttp.RequestCtx, answered int) {
	if ctx == nil || w.n == 0 {
		return
	}
	var buf [20]byte
	ctx.Response.Header.SetBytesKV(headerRetryAfter, strconv.AppendInt(buf[:0], int64(w.secs), 10))
	if w.n == answered {
		ctx.SetStatusCode(w.first.Status)
	}
}
