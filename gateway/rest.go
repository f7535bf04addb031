package gateway

import (
	"sync"

	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/proto"
	"github.com/infura-gateway/infura-gateway/upstream"
)

// restRoute describes one of the seed's REST routes: the JSON-RPC call it makes.
// Requests use id 1, so the upstream's answer is returned byte for byte, exactly what
// the node answers to the same call.
type restRoute struct {
	method upstream.Method
	// static is the whole request for routes without a body.
	static []byte
	// prefix starts the request; params appends the validated params from the body.
	prefix []byte
	params func(dst, body []byte) ([]byte, *proto.Error)
}

func staticRoute(name string) restRoute {
	return restRoute{
		method: upstream.MethodNamed(name),
		static: proto.AppendRequest(nil, restID, name, nil),
	}
}

func bodyRoute(name string, params func(dst, body []byte) ([]byte, *proto.Error)) restRoute {
	prefix := proto.AppendRequest(nil, restID, name, []byte("[]"))
	prefix = prefix[:len(prefix)-len("[]}")] // up to and including `"params":`
	return restRoute{method: upstream.MethodNamed(name), prefix: prefix, params: params}
}

var (
	restID                = []byte("1")
	restBlockNumber       = staticRoute("eth_blockNumber")
	restGasPrice          = staticRoute("eth_gasPrice")
	restBlockByNumber     = bodyRoute("eth_getBlockByNumber", proto.AppendBlockByNumberParams)
	restTxByBlockAndIndex = bodyRoute("eth_getTransactionByBlockNumberAndIndex", proto.AppendTxByBlockAndIndexParams)
)

// rest returns the handler of a REST route forwarding to up. It is built once per
// route; a request allocates nothing in the gateway's code.
func (s *Server) rest(r *restRoute, up caller) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		deadline := ctx.Time().Add(s.cfg.UpstreamTimeout)
		req, params := r.static, []byte(nil)
		var buf *[]byte
		if r.params != nil {
			buf = getBuf()
			b, perr := r.params(append((*buf)[:0], r.prefix...), ctx.PostBody())
			if perr != nil {
				*buf = b
				putBuf(buf)
				writeError(ctx, nil, perr)
				return
			}
			req = append(b, '}')
			params = req[len(r.prefix) : len(req)-1]
			*buf = req
		}
		err := s.fetch(ctx, up, r.method, req, params, restID, deadline)
		if buf != nil {
			putBuf(buf)
		}
		if err != nil {
			writeError(ctx, restID, asError(err))
			return
		}
		ctx.Response.Header.SetContentTypeBytes(contentTypeJSON)
	}
}

var contentTypeJSON = []byte("application/json")

// writeError answers with a JSON-RPC error envelope and the error's HTTP status.
// id is the client's raw id, nil for null.
func writeError(ctx *fasthttp.RequestCtx, id []byte, e *proto.Error) {
	buf := getBuf()
	*buf = proto.AppendError((*buf)[:0], id, e)
	ctx.SetStatusCode(e.Status)
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

// Scratch buffers for building upstream requests and error bodies.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) > 64<<10 { // don't keep buffers a rare huge request grew
		return
	}
	bufPool.Put(b)
}
