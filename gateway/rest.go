package gateway

import (
	"strconv"
	"sync"

	"github.com/valyala/fasthttp"

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
func (s *Server) rest(r *restRoute, up caller) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		who, perr := s.acc.Identify(ctx)
		if perr != nil {
			writeError(ctx, nil, perr)
			return
		}
		c := getCall(up, ctx.Time().Add(s.cfg.UpstreamTimeout))
		defer putCall(c)
		c.who = who
		var params []byte
		if r.params != nil {
			c.params, perr = r.params(c.params[:0], ctx.PostBody())
			if perr != nil {
				writeError(ctx, nil, perr)
				return
			}
			params = c.params
		}
		c.req.Set(r.name, params)
		c.id = restID
		if perr := s.serve(c); perr != nil {
			writeError(ctx, restID, perr)
			return
		}
		s.writeAnswer(ctx, c)
	}
}

var (
	contentTypeJSON  = []byte("application/json")
	headerXCache     = []byte("X-Cache")
	headerRetryAfter = []byte("Retry-After")
	valueHit         = []byte("HIT")
	valueMiss        = []byte("MISS")
)

// writeAnswer puts c's answer into the response without copying: the call's own buffer
// is swapped with the response's, a cache entry is referenced as it is.
func (s *Server) writeAnswer(ctx *fasthttp.RequestCtx, c *call) {
	h := &ctx.Response.Header
	h.SetContentTypeBytes(contentTypeJSON)
	switch c.cached {
	case cacheHit:
		h.SetBytesKV(headerXCache, valueHit)
	case cacheMiss:
		h.SetBytesKV(headerXCache, valueMiss)
	}
	switch {
	case c.ans == nil: // a notification
		ctx.Response.ResetBody()
	case len(c.own) > 0 && &c.ans[0] == &c.own[0]:
		c.own = ctx.Response.SwapBody(c.own)
	default:
		ctx.Response.SetBodyRaw(c.ans)
	}
}

// writeError answers with a JSON-RPC error envelope and the error's HTTP status.
// id is the client's raw id, nil for null.
func writeError(ctx *fasthttp.RequestCtx, id []byte, e *proto.Error) {
	buf := getBuf()
	*buf = proto.AppendError((*buf)[:0], id, e)
	ctx.SetStatusCode(e.Status)
	if e.RetryAfter > 0 {
		ctx.Response.Header.SetBytesKV(headerRetryAfter, strconv.AppendInt((*buf)[len(*buf):], int64(e.RetryAfter), 10))
	}
	ctx.SetContentTypeBytes(contentTypeJSON)
	ctx.SetBody(*buf)
	putBuf(buf)
}

func asError(err error) *proto.Error {
	if e, ok := err.(*proto.Error); ok {
		return e
	}
	return proto.ErrInternal
}

// Scratch buffers for error bodies and batch answers.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) > 64<<10 { // don't keep buffers a rare huge request grew
		return
	}
	bufPool.Put(b)
}
