package gateway

import (
	"bytes"
	"strconv"
	"sync"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/access"
	"github.com/infura-gateway/infura-gateway/gateway/cache"
	"github.com/infura-gateway/infura-gateway/proto"
	"github.com/infura-gateway/infura-gateway/upstream"
)

// The request pipeline. Every transport (POST /, the REST routes, /ws/*,
// /socket2socket) turns its bytes into calls and runs them through the same stages:
//
//	parse    proto.Request.Parse: the envelope checked, the method decoded, params canonical
//	policy   policy.admit: the deny-list; the caller's plan and limits (charge, access.go);
//	         the byte budget for requests waiting upstream
//	cache    cache.serve: head-aware lookup, coalescing of identical calls in flight
//	forward  the upstream (upstream.Pool over HTTP, upstream.Mux over websockets),
//	         which writes the envelope itself: nothing of the client's bytes but params
//	answer   the client's id restored, byte for byte
//
// Transport code only moves bytes and maps errors to its framing (HTTP status,
// websocket close code). Batches run the same stages per element and are answered in
// request order, as geth answers them.

// caller is an upstream: the HTTP pool or a websocket Mux.
type caller interface {
	Call(spare []byte, r *proto.Request, id []byte, deadline time.Time) ([]byte, error)
	CallBatch(b *upstream.Batch, deadline time.Time) error
}

// call carries one JSON-RPC request through the pipeline. Calls are pooled; nothing in
// a call is allocated per request once the pool is warm.
type call struct {
	req proto.Request
	// id is the id the answer carries (raw JSON): the client's, or "1" on the REST
	// routes; nil for a notification, whose answer is dropped.
	id       []byte
	up       caller
	deadline time.Time
	who      *access.Tenant // whose limits the call counts against; nil: none
	settled  bool           // a batch element answered (or refused) before routing

	ans    []byte // the answer: own, or a shared cache entry (never modified)
	own    []byte // the call's own buffer
	params []byte // params built by a REST route
	key    []byte // the cache key

	pol       cache.Policy
	cacheable bool   // a batch element the cache will store the answer of
	block     uint64 // the block a byNumber call asks for
	epoch     uint64 // head epoch the cache lookup was made in
	cached    cacheStatus
}

type cacheStatus uint8

const (
	cacheNone cacheStatus = iota // not through the cache (disabled)
	cacheMiss
	cacheHit
)

var callPool = sync.Pool{New: func() any { return new(call) }}

func getCall(up caller, deadline time.Time) *call {
	c := callPool.Get().(*call)
	c.up, c.deadline = up, deadline
	return c
}

func putCall(c *call) {
	if cap(c.own) > maxPooledAnswer {
		c.own = nil
	}
	c.id, c.up, c.ans, c.own, c.cached, c.cacheable, c.who, c.settled = nil, nil, nil, c.own[:0], cacheNone, false, nil, false
	c.params, c.key = c.params[:0], c.key[:0]
	callPool.Put(c)
}

// maxPooledAnswer keeps one huge answer from pinning its buffer in the pool.
const maxPooledAnswer = 256 << 10

var (
	restID         = []byte("1") // REST answers carry id 1, as the node's own would
	notificationID = []byte("1") // a notification goes upstream with an id, so it counts as in flight until answered
)

// serve runs c through the pipeline. On success c.ans holds the answer with c.id (nil
// for a notification); an error is for the transport to frame.
func (s *Server) serve(c *call) *proto.Error {
	if e := s.policy.admit(&c.req); e != nil {
		return e
	}
	if e := s.charge(c); e != nil {
		return e
	}
	return s.dispatch(c)
}

// dispatch runs c, already admitted by the policy, through the rest of the pipeline.
func (s *Server) dispatch(c *call) *proto.Error {
	size := c.req.Size()
	if !s.pending.acquire(size) {
		return errPendingFull
	}
	defer s.pending.release(size)
	if c.id == nil {
		_ = s.forward(c, notificationID) // nobody to tell about the answer, or an error
		c.ans = nil
		return nil
	}
	if s.cache != nil {
		return s.cacheServe(c)
	}
	return s.forward(c, c.id)
}

// forward sends c upstream; the answer, carrying id, goes to c.ans.
func (s *Server) forward(c *call, id []byte) *proto.Error {
	ans, err := c.up.Call(c.own, &c.req, id, c.deadline)
	c.own = ans
	if err != nil {
		c.ans = nil
		return asError(err)
	}
	c.ans = ans
	return nil
}

// setStored makes a stored answer (id 1) c's answer, with c's id. On the REST routes
// (id 1) the stored bytes are used as they are, without a copy.
func (c *call) setStored(body []byte) {
	if bytes.Equal(c.id, restID) {
		c.ans = body
		return
	}
	span := proto.FirstMember(body, "id")
	c.own = proto.Splice(c.own[:0], body, span, c.id)
	c.ans = c.own
}

// setError makes an error answer c's answer.
func (c *call) setError(e *proto.Error) {
	c.own = proto.AppendError(c.own[:0], c.id, e)
	c.ans = c.own
}

var errPendingFull = proto.NewError(proto.CodeLimitExceeded, 503,
	"gateway busy: too many request bytes waiting on the upstream, retry later")

// batch is the state of one batch through the pipeline, pooled.
type batch struct {
	calls  []*call
	fwd    []int // indexes of the calls that go upstream, in ub order
	shared []int // indexes of the calls to look up in the shared tier first
	ub     upstream.Batch
	spans  []proto.Span // scratch: element spans of the body
}

var batchPool = sync.Pool{New: func() any { return new(batch) }}

// serveBatch answers a JSON-RPC batch: every element goes through the same stages as a
// single call, the elements that need the upstream go to it together in one exchange,
// and the answers are appended to dst in request order (notifications get none; when
// nothing is owed, dst comes back unchanged). An error refuses the batch as a whole: a
// batch costs its tenant the sum of its elements, and is refused whole when that is over
// a limit.
func (s *Server) serveBatch(dst, body []byte, up caller, deadline time.Time, who *access.Tenant) ([]byte, *proto.Error) {
	b := batchPool.Get().(*batch)
	defer s.putBatch(b)
	it, err := proto.NewArrayIter(body)
	if err != nil {
		return dst, proto.ErrParse
	}
	for {
		el, ok, err := it.Next()
		if err != nil {
			return dst, proto.ErrParse
		}
		if !ok {
			break
		}
		if len(b.spans) == s.cfg.MaxBatch {
			return dst, batchTooLarge(s.cfg.MaxBatch)
		}
		b.spans = append(b.spans, el)
	}
	if proto.SkipWS(body, it.Pos()) != len(body) {
		return dst, proto.ErrParse
	}
	if len(b.spans) == 0 {
		return dst, proto.ErrEmptyBatch
	}
	if !s.pending.acquire(len(body)) {
		return dst, errPendingFull
	}
	defer s.pending.release(len(body))

	var n, cost int64
	for _, el := range b.spans {
		c := getCall(up, deadline)
		c.who = who
		b.calls = append(b.calls, c)
		if s.admitElement(c, el.Bytes(body)) {
			n++
			if who != nil {
				cost += s.acc.Cost(&c.req)
			}
		}
	}
	if who != nil && n > 0 {
		if e := who.Spend(n, cost); e != nil {
			return dst, e
		}
	}
	for i, c := range b.calls {
		if !c.settled {
			s.routeElement(b, c, i)
		}
	}
	if len(b.shared) > 0 {
		s.cacheLookupShared(b)
	}
	if b.ub.Len() > 0 {
		_ = up.CallBatch(&b.ub, deadline) // failures are filed per element
		for k, i := range b.fwd {
			c := b.calls[i]
			ans, e := b.ub.Answer(k)
			switch {
			case c.id == nil:
			case e != nil:
				c.setError(e)
			case c.cacheable:
				s.cacheStoreElement(c, ans)
				c.setStored(ans)
			default:
				c.own = append(c.own[:0], ans...)
				c.ans = c.own
			}
		}
	}
	// Answers in request order, as geth gives them; notifications get none. The answer
	// is bounded in bytes like an upstream's: past -max-response-body (cache hits and
	// the shared tier answer without an upstream's bound) each element gets an error.
	start, n := len(dst), 0
	dst = append(dst, '[')
	over := false
	for _, c := range b.calls {
		if c.ans == nil {
			continue
		}
		if n > 0 {
			dst = append(dst, ',')
		}
		if over = over || len(dst)-start+len(c.ans) > s.cfg.MaxResponseBody; over {
			dst = proto.AppendError(dst, c.id, proto.ErrBatchAnswerTooLarge)
		} else {
			dst = append(dst, c.ans...)
		}
		n++
	}
	if n == 0 {
		return dst[:start], nil
	}
	return append(dst, ']'), nil
}

// admitElement runs one batch element through parse, policy and its tenant's plan. It
// reports whether the element goes on; if not, it is settled: c.ans holds its error
// (nil for a refused notification: nothing to say).
func (s *Server) admitElement(c *call, el []byte) bool {
	c.settled = true
	if proto.FirstByte(el) != '{' {
		c.setError(proto.ErrInvalidRequest) // id null: there is no id to give back
		return false
	}
	if perr := c.req.Parse(el); perr != nil {
		c.id = c.req.ID
		if perr == proto.ErrParse { // not reached: the batch as a whole parsed
			perr = proto.ErrInvalidRequest
		}
		c.setError(perr)
		return false
	}
	c.id = c.req.ID
	perr := s.policy.admit(&c.req)
	if perr == nil && c.who != nil && !c.who.Allows(&c.req) {
		perr = c.who.RefuseMethod()
	}
	if perr != nil {
		if c.id != nil {
			c.setError(perr)
		}
		return false
	}
	c.settled = false
	return true
}

// routeElement answers an admitted element from the cache or queues it for the
// upstream exchange.
func (s *Server) routeElement(b *batch, c *call, idx int) {
	upID := notificationID
	if c.id != nil {
		upID = c.id
		if s.cache != nil && s.cachePrepare(c) {
			if s.cacheHit(c) {
				return
			}
			c.cacheable = true
			upID = restID // stored answers carry id 1
			if s.shared != nil && s.cache.Sharable(c.req.Method, c.pol, c.block) {
				b.shared = append(b.shared, idx) // upstream only if Redis lacks it
				return
			}
		}
	}
	b.fwd = append(b.fwd, idx)
	b.ub.Add(&c.req, upID)
}

func (s *Server) putBatch(b *batch) {
	for i, c := range b.calls {
		putCall(c)
		b.calls[i] = nil
	}
	b.calls, b.fwd, b.shared, b.spans = b.calls[:0], b.fwd[:0], b.shared[:0], b.spans[:0]
	b.ub.Reset()
	batchPool.Put(b)
}

func batchTooLarge(limit int) *proto.Error {
	e := *proto.ErrBatchTooLarge
	e.Message = "batch too large: more than " + strconv.Itoa(limit) + " requests"
	return &e
}

// charge counts c against its tenant's limits (nil: not limited).
func (s *Server) charge(c *call) *proto.Error {
	if c.who == nil {
		return nil
	}
	return c.who.Charge(&c.req, s.acc.Cost(&c.req))
}
