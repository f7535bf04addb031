package gateway

import (
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/proto"
	"github.com/infura-gateway/infura-gateway/upstream"
)

// POST / is a JSON-RPC 2.0 endpoint any Ethereum client can use as its RPC URL.
// Requests are forwarded as sent (ids and all), so answers carry the client's ids byte
// for byte. Like geth, JSON-RPC-level errors (parse, invalid request, denied method)
// are answered with HTTP 200 and an error object; transport failures (upstream down,
// too slow, body too large) use the HTTP status of the proto error.
func (s *Server) rpc(ctx *fasthttp.RequestCtx) {
	body := ctx.PostBody()
	switch proto.FirstByte(body) {
	case '{':
		s.rpcSingle(ctx, body)
	case '[':
		s.rpcBatch(ctx, body)
	case 0:
		writeRPCError(ctx, nil, proto.ErrEmptyBody)
	default:
		if proto.Valid(body) {
			writeRPCError(ctx, nil, proto.ErrInvalidRequest)
		} else {
			writeRPCError(ctx, nil, proto.ErrParse)
		}
	}
}

func (s *Server) rpcSingle(ctx *fasthttp.RequestCtx, body []byte) {
	var m proto.Message
	end, err := proto.ScanMessage(body, &m)
	if err != nil || proto.SkipWS(body, end) != len(body) {
		writeRPCError(ctx, nil, proto.ErrParse)
		return
	}
	method, perr := s.check(body, &m)
	if perr != nil {
		if m.ID.Present() { // a notification gets no answer, not even an error
			writeRPCError(ctx, m.ID.Bytes(body), perr)
		}
		return
	}
	id := m.ID.Bytes(body)
	deadline := ctx.Time().Add(s.cfg.UpstreamTimeout)
	if len(id) == 0 { // a notification: forward, nothing to cache or coalesce
		err = s.pool.Do(upstream.MethodOf(method), body, &ctx.Response, deadline)
	} else {
		err = s.fetch(ctx, s.pool, upstream.MethodOf(method), body, m.Params.Bytes(body), id, deadline)
	}
	if err != nil {
		writeError(ctx, id, asError(err))
		return
	}
	ctx.Response.Header.SetContentTypeBytes(contentTypeJSON)
	restoreID(&ctx.Response, id)
}

// restoreID makes sure the answer carries the client's id byte for byte, even behind a
// provider that re-encodes ids (1.0 -> 1, big numbers through float64). geth echoes ids
// raw, so this is a comparison that finds them equal.
func restoreID(resp *fasthttp.Response, id []byte) {
	b := resp.Body()
	span := proto.FirstMember(b, "id")
	if !span.Present() || string(span.Bytes(b)) == string(id) {
		return
	}
	buf := getBuf()
	*buf = proto.Splice((*buf)[:0], b, span, id)
	resp.SetBody(*buf)
	putBuf(buf)
}

// check validates a request object's method and applies the deny-list. It returns
// the method name without quotes.
func (s *Server) check(b []byte, m *proto.Message) ([]byte, *proto.Error) {
	if !m.Method.Present() || b[m.Method.Start] != '"' || m.Method.End-m.Method.Start < 3 {
		return nil, errInvalidMethod
	}
	name := b[m.Method.Start+1 : m.Method.End-1]
	if s.deny.denied(name) {
		return name, proto.ErrMethodNotFound
	}
	return name, nil
}

var errInvalidMethod = proto.NewError(proto.CodeInvalidRequest, fasthttp.StatusOK, "invalid request: method must be a non-empty string")

// rpcBatch forwards a batch. Elements the gateway must answer itself (denied methods,
// invalid requests) are taken out; their errors are appended to the upstream's array.
// When every element passes, the body is forwarded untouched.
func (s *Server) rpcBatch(ctx *fasthttp.RequestCtx, body []byte) {
	it, err := proto.NewArrayIter(body)
	if err != nil {
		writeRPCError(ctx, nil, proto.ErrParse)
		return
	}
	var m proto.Message
	n, local := 0, 0
	for {
		el, ok, err := it.Next()
		if err != nil {
			writeRPCError(ctx, nil, proto.ErrParse)
			return
		}
		if !ok {
			break
		}
		n++
		if n > s.cfg.MaxBatch {
			writeError(ctx, nil, batchTooLarge(s.cfg.MaxBatch))
			return
		}
		if _, perr := s.checkElement(el.Bytes(body), &m); perr != nil {
			local++
		}
	}
	if proto.SkipWS(body, it.Pos()) != len(body) {
		writeRPCError(ctx, nil, proto.ErrParse)
		return
	}
	if n == 0 {
		writeRPCError(ctx, nil, proto.ErrEmptyBatch)
		return
	}
	if local == 0 {
		if err := s.pool.Do(upstream.MethodBatch, body, &ctx.Response, time.Now().Add(s.cfg.UpstreamTimeout)); err != nil {
			writeError(ctx, nil, asError(err))
			return
		}
		ctx.Response.Header.SetContentTypeBytes(contentTypeJSON)
		return
	}
	s.rpcMixedBatch(ctx, body, n-local)
}

// rpcMixedBatch is the slow path of a batch holding elements answered locally.
func (s *Server) rpcMixedBatch(ctx *fasthttp.RequestCtx, body []byte, forward int) {
	fwd, errs := getBuf(), getBuf()
	defer putBuf(fwd)
	defer putBuf(errs)
	f, e := append((*fwd)[:0], '['), (*errs)[:0]
	var m proto.Message
	it, _ := proto.NewArrayIter(body)
	for {
		el, ok, _ := it.Next()
		if !ok {
			break
		}
		elb := el.Bytes(body)
		if _, perr := s.checkElement(elb, &m); perr != nil {
			if m.ID.Present() || perr == proto.ErrInvalidRequest {
				if len(e) > 0 {
					e = append(e, ',')
				}
				var id []byte
				if m.ID.Present() {
					id = m.ID.Bytes(elb)
				}
				e = proto.AppendError(e, id, perr)
			}
			continue
		}
		if len(f) > 1 {
			f = append(f, ',')
		}
		f = append(f, elb...)
	}
	f = append(f, ']')
	*fwd, *errs = f, e

	if forward > 0 {
		err := s.pool.Do(upstream.MethodBatch, f, &ctx.Response, time.Now().Add(s.cfg.UpstreamTimeout))
		if err != nil {
			writeError(ctx, nil, asError(err))
			return
		}
	}
	ctx.Response.Header.SetContentTypeBytes(contentTypeJSON)
	up := ctx.Response.Body()
	out := getBuf()
	defer putBuf(out)
	o := (*out)[:0]
	switch {
	case forward == 0 || proto.FirstByte(up) != '[':
		if forward > 0 && len(proto.TrimWS(up)) > 0 {
			// The upstream refused the batch as a whole (an error object): pass it on.
			return
		}
		if len(e) == 0 { // only notifications: nothing to answer
			ctx.Response.ResetBody()
			return
		}
		o = append(append(append(o, '['), e...), ']')
	default:
		up = proto.TrimWS(up)
		o = append(o, up[:len(up)-1]...)
		if len(up) > 2 && len(e) > 0 {
			o = append(o, ',')
		}
		o = append(append(o, e...), ']')
	}
	*out = o
	ctx.SetBody(o)
}

// checkElement validates one batch element, leaving its spans in m.
func (s *Server) checkElement(el []byte, m *proto.Message) ([]byte, *proto.Error) {
	if proto.FirstByte(el) != '{' {
		m.Reset()
		return nil, proto.ErrInvalidRequest
	}
	if _, err := proto.ScanMessage(el, m); err != nil {
		return nil, proto.ErrInvalidRequest
	}
	return s.check(el, m)
}

func batchTooLarge(limit int) *proto.Error {
	e := *proto.ErrBatchTooLarge
	e.Message = "batch too large: more than " + strconv.Itoa(limit) + " requests"
	return &e
}

// writeRPCError answers a JSON-RPC-level error with HTTP 200, as geth does.
func writeRPCError(ctx *fasthttp.RequestCtx, id []byte, e *proto.Error) {
	if e.Status != fasthttp.StatusOK {
		c := *e
		c.Status = fasthttp.StatusOK
		e = &c
	}
	writeError(ctx, id, e)
}

// denyList answers methods by exact name or by prefix (entries ending in '_').
type denyList struct {
	exact    map[string]struct{}
	prefixes []string
}

func newDenyList(entries []string) denyList {
	d := denyList{exact: map[string]struct{}{}}
	for _, e := range entries {
		if strings.HasSuffix(e, "_") || strings.HasSuffix(e, "*") {
			d.prefixes = append(d.prefixes, strings.TrimSuffix(e, "*"))
		} else {
			d.exact[e] = struct{}{}
		}
	}
	return d
}

func (d denyList) denied(method []byte) bool {
	for _, p := range d.prefixes {
		if len(method) >= len(p) && string(method[:len(p)]) == p {
			return true
		}
	}
	_, ok := d.exact[string(method)]
	return ok
}
