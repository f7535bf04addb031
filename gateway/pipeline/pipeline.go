// Package pipeline runs every call, whatever its transport, through the same stages,
// for the network the call resolved to:
//
//	parse    proto.Request.Parse: the envelope checked, the method decoded, params canonical
//	policy   network.Policy.Admit: the deny-list; then the caller's plan and limits
//	         (access.Tenant.Charge); the byte budget for requests waiting upstream
//	cache    the network's cache (cache.go here): head-aware lookup, coalescing of
//	         identical calls in flight, the shared tier behind it
//	forward  the network's upstream (upstream.Pool over HTTP, upstream.Mux over
//	         websockets), which writes the envelope itself: nothing of the client's bytes
//	         but params
//	answer   the client's id restored, byte for byte (answer.go: HTTP answers and errors)
//
// Transport code (rest/, rpc/, socket/) only moves bytes and maps errors to its framing
// (HTTP status, websocket close code). Batches run the same stages per element and are
// answered in request order, as geth answers them. An eth_getLogs over a range goes to
// the network's logs splitter (gateway/logs) before the cache stage. It imports access/,
// cache/, network/, logs/, config/, sharedcache/, upstream/ and proto/.
package pipeline

import (
	"bytes"
	"strconv"
	"sync"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/access"
	"github.com/infura-gateway/infura-gateway/gateway/cache"
	"github.com/infura-gateway/infura-gateway/gateway/config"
	"github.com/infura-gateway/infura-gateway/gateway/filters"
	"github.com/infura-gateway/infura-gateway/gateway/logs"
	"github.com/infura-gateway/infura-gateway/gateway/network"
	"github.com/infura-gateway/infura-gateway/proto"
	"github.com/infura-gateway/infura-gateway/tracing"
	"github.com/infura-gateway/infura-gateway/upstream"
)

// Pipeline is what every network's calls share: the access control that prices them
// and the bounds of a batch. The byte budget of requests waiting upstream is each
// network's own (network.Pending).
type Pipeline struct {
	access          *access.Access
	maxBatch        int
	maxResponseBody int
	tracer          *tracing.Tracer // nil: tracing off
	// answers counts the large answers being written to clients (held.go); nil: none.
	answers *upstream.AnswerBudget
}

// New makes the pipeline of a gateway: calls priced by acc, bounded by cfg, the
// answers it writes counted in answers.
func New(cfg *config.Config, acc *access.Access, answers *upstream.AnswerBudget) *Pipeline {
	return &Pipeline{access: acc, maxBatch: cfg.MaxBatch,
		maxResponseBody: cfg.MaxResponseBody, answers: answers}
}

// Call carries one JSON-RPC request through the pipeline. Calls are pooled; nothing in
// a call is allocated per request once the pool is warm.
type Call struct {
	Req proto.Request
	// ID is the id the answer carries (raw JSON): the client's, or "1" on the REST
	// routes; nil for a notification, whose answer is dropped.
	ID       []byte
	up       network.Caller
	start    time.Time // when the request came (zero: a batch element), the cache's now
	deadline time.Time
	Who      *access.Tenant // whose limits the call counts against; nil: none
	From     Origin         // where it came from: scopes its filters when Who is nil
	settled  bool           // a batch element answered (or refused) before routing
	waited   *proto.Error   // the refusal with a known wait (RetryAfter) it was answered

	Ans    []byte // the answer: own, or a shared cache entry (never modified)
	Own    []byte // the call's own buffer
	Params []byte // params built by a REST route
	key    []byte // the cache key

	pol       cache.Policy
	cacheable bool   // a batch element the cache will store the answer of
	block     uint64 // the block a byNumber call asks for
	epoch     uint64 // head epoch the cache lookup was made in
	Cached    CacheStatus

	// Trace is the call's span (when sampled) and request id; Req.Trace points here.
	Trace tracing.Call
}

type CacheStatus uint8

const (
	CacheNone CacheStatus = iota // not through the cache (disabled)
	CacheMiss
	CacheHit
)

var callPool = sync.Pool{New: func() any {
	c := new(Call)
	c.Req.Trace = &c.Trace
	return c
}}

// GetCall is a call to up that came at start (the request's time: no clock is read
// for it again; zero when unknown) and ends at deadline.
func GetCall(up network.Caller, start, deadline time.Time) *Call {
	c := callPool.Get().(*Call)
	c.up, c.start, c.deadline = up, start, deadline
	return c
}

func PutCall(c *Call) {
	if cap(c.Own) > maxPooledAnswer {
		c.Own = nil
	}
	c.ID, c.up, c.Ans, c.Own, c.Cached, c.cacheable, c.Who, c.settled = nil, nil, nil, c.Own[:0], CacheNone, false, nil, false
	c.waited = nil
	c.From = Origin{}
	c.Params, c.key = c.Params[:0], c.key[:0]
	c.Trace.Reset()
	callPool.Put(c)
}

// maxPooledAnswer keeps one huge answer from pinning its buffer in the pool.
const maxPooledAnswer = 256 << 10

var (
	RestID         = []byte("1") // REST answers carry id 1, as the node's own would
	notificationID = []byte("1") // a notification goes upstream with an id, so it counts as in flight until answered
)

// Serve runs c through n's pipeline. On success c.Ans holds the answer with c.ID (nil
// for a notification); an error is for the transport to frame.
func (p *Pipeline) Serve(n *network.Network, c *Call) *proto.Error {
	if !p.tracer.Begin(&c.Trace, c.Req.Method.String(), n.Name) {
		return p.serve(n, c)
	}
	e := p.serve(n, c)
	endCall(c, e)
	return e
}

func (p *Pipeline) serve(n *network.Network, c *Call) *proto.Error {
	if e := n.Policy.Admit(&c.Req); e != nil {
		return e
	}
	if e := p.Charge(n, c); e != nil {
		return e
	}
	return p.dispatch(n, c)
}

// Dispatch runs c, already admitted by n's policy and charged, through the rest of
// the pipeline (traced from here: the websocket transport admits calls itself).
func (p *Pipeline) Dispatch(n *network.Network, c *Call) *proto.Error {
	if !p.tracer.Begin(&c.Trace, c.Req.Method.String(), n.Name) {
		return p.dispatch(n, c)
	}
	e := p.dispatch(n, c)
	endCall(c, e)
	return e
}

func (p *Pipeline) dispatch(n *network.Network, c *Call) *proto.Error {
	size := c.Req.Size()
	if !n.Pending.Acquire(size) {
		return errPendingFull
	}
	defer n.Pending.Release(size)
	if n.Filters != nil && filters.Owns(c.Req.Method) {
		return p.serveFilter(n, c)
	}
	if n.Broadcast.Handles(&c.Req) {
		return broadcast(n, c)
	}
	if c.ID == nil {
		_ = forward(c, notificationID) // nobody to tell about the answer, or an error
		c.Ans = nil
		return nil
	}
	if c.Req.Method == methodGetLogs && n.Logs != nil {
		if !n.Logs.Small(&c.Req, c.Who.LogsMaxRange()) {
			if done, e := p.serveLogs(n, c); done {
				return e
			}
		} else {
			e := p.cacheOrForward(n, c)
			if e != nil || c.Ans == nil || !n.Logs.CapError(c.Ans) {
				return e
			}
			// The node caps below what the gateway knew: the splitter learns the cap from
			// its text and answers in chunks (else the node's answer stands).
			if done, e := p.serveLogs(n, c); done {
				return e
			}
			return nil
		}
	}
	return p.cacheOrForward(n, c)
}

// cacheOrForward answers c from the cache or the upstream.
func (p *Pipeline) cacheOrForward(n *network.Network, c *Call) *proto.Error {
	if n.Cache != nil {
		return p.cacheServe(n, c)
	}
	return forward(c, c.ID)
}

var methodGetLogs = proto.MethodNamed("eth_getLogs")

// serveLogs answers an eth_getLogs the network splits into chunks (gateway/logs); done
// is false for one that goes on as any call (a blockHash, both bounds at the head).
func (p *Pipeline) serveLogs(n *network.Network, c *Call) (done bool, e *proto.Error) {
	if n.Logs == nil {
		return false, nil
	}
	ans, done, e := n.Logs.Serve(c.Own[:0], c.up, &c.Req, c.ID, c.deadline,
		logs.Limits{MaxRange: c.Who.LogsMaxRange(), MaxBytes: p.maxResponseBody, Answers: p.answers})
	if !done {
		return false, nil
	}
	c.Own = ans
	if e != nil {
		c.Ans = nil
		return true, e
	}
	c.Ans = ans
	if n.Cache != nil {
		c.Cached = CacheMiss // for X-Cache: the answer as a whole came from no one entry
	}
	return true, nil
}

// logsAfterCap answers in chunks a batch's one-chunk eth_getLogs the node refused for a
// cap (CapError learned it), as a single call is; false: the node's answer stands.
func (p *Pipeline) logsAfterCap(n *network.Network, c *Call) bool {
	done, e := p.serveLogs(n, c)
	if done && e != nil {
		c.setError(e)
	}
	return done
}

// forward sends c upstream; the answer, carrying id, goes to c.Ans.
func forward(c *Call, id []byte) *proto.Error {
	ans, err := c.up.Call(c.Own, &c.Req, id, c.deadline)
	c.Own = ans
	if err != nil {
		c.Ans = nil
		return asError(err)
	}
	c.Ans = ans
	return nil
}

// broadcast sends c, a send the network broadcasts, to its targets (gateway/broadcast);
// a notification's answer is dropped.
func broadcast(n *network.Network, c *Call) *proto.Error {
	id := c.ID
	if id == nil {
		id = notificationID
	}
	ans, err := n.Broadcast.Send(c.Own, &c.Req, id, c.deadline)
	c.Own, c.Ans = ans, nil
	switch {
	case c.ID == nil:
		return nil
	case err != nil:
		return asError(err)
	}
	c.Ans = ans
	return nil
}

// setStored makes a stored answer (id 1) c's answer, with c's id. On the REST routes
// (id 1) the stored bytes are used as they are, without a copy.
func (c *Call) setStored(body []byte) {
	if bytes.Equal(c.ID, RestID) {
		c.Ans = body
		return
	}
	span := proto.FirstMember(body, "id")
	c.Own = proto.Splice(c.Own[:0], body, span, c.ID)
	c.Ans = c.Own
}

// setError makes an error answer c's answer.
func (c *Call) setError(e *proto.Error) {
	c.Own = proto.AppendError(c.Own[:0], c.ID, e)
	c.Ans = c.Own
	if e.RetryAfter > 0 {
		c.waited = e
	}
}

// errPendingFull refuses a call or a batch that would pass -max-pending-bytes: the
// calls in flight end within the upstream timeout, so a second is worth waiting.
var errPendingFull = &proto.Error{Code: proto.CodeLimitExceeded, Status: 503, RetryAfter: 1,
	Message: "gateway busy: too many request bytes waiting on the upstream, retry later"}

// batch is the state of one batch through the pipeline, pooled.
type batch struct {
	calls  []*Call
	fwd    []int // indexes of the calls that go upstream, in ub order
	shared []int // indexes of the calls to look up in the shared tier first
	ub     upstream.Batch
	spans  []proto.Span // scratch: element spans of the body
	trace  tracing.Call // the batch's span and request id
	from   Origin
}

var batchPool = sync.Pool{New: func() any { return new(batch) }}

// ServeBatch answers a JSON-RPC batch: every element goes through the same stages as a
// single call, the elements that need the upstream go to it together in one exchange,
// and the answers are appended to dst in request order (notifications get none; when
// nothing is owed, dst comes back unchanged). An error refuses the batch as a whole: a
// batch costs its tenant the sum of its elements, and is refused whole when that is over
// a limit.
//
// in is the batch's traceparent and request id: the batch gets a span when sampled,
// its elements spans of their own as its children.
func (p *Pipeline) ServeBatch(n *network.Network, dst, body []byte, up network.Caller, deadline time.Time, who *access.Tenant, from Origin, in tracing.In) ([]byte, *proto.Error) {
	b := batchPool.Get().(*batch)
	defer putBatch(b)
	b.from = from
	b.trace.SetIn(in)
	b.ub.Trace = &b.trace
	if !p.tracer.Begin(&b.trace, proto.MethodBatch.String(), n.Name) {
		return p.serveBatch(n, b, dst, body, up, deadline, who)
	}
	dst, e := p.serveBatch(n, b, dst, body, up, deadline, who)
	endBatch(b, e)
	return dst, e
}

func (p *Pipeline) serveBatch(n *network.Network, b *batch, dst, body []byte, up network.Caller, deadline time.Time, who *access.Tenant) ([]byte, *proto.Error) {
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
		if len(b.spans) == p.maxBatch {
			return dst, BatchTooLarge(p.maxBatch)
		}
		b.spans = append(b.spans, el)
	}
	if proto.SkipWS(body, it.Pos()) != len(body) {
		return dst, proto.ErrParse
	}
	if len(b.spans) == 0 {
		return dst, proto.ErrEmptyBatch
	}
	if !n.Pending.Acquire(len(body)) {
		return dst, errPendingFull
	}
	defer n.Pending.Release(len(body))

	var count, cost int64
	for _, el := range b.spans {
		c := GetCall(up, time.Time{}, deadline)
		c.Who, c.From = who, b.from
		b.calls = append(b.calls, c)
		tracing.BeginChild(&c.Trace, &b.trace, "element")
		if p.admitElement(n, c, el.Bytes(body)) {
			count++
			if who != nil {
				cost += p.access.Cost(&c.Req)
			}
		}
	}
	if who != nil && count > 0 {
		if e := who.Spend(count, cost); e != nil {
			return dst, e
		}
		who.CountNetwork(n.Index, n.Name, count)
	}
	for i, c := range b.calls {
		if !c.settled {
			p.routeElement(n, b, c, i)
		}
	}
	if len(b.shared) > 0 {
		p.cacheLookupShared(n, b)
	}
	if b.ub.Len() > 0 {
		_ = up.CallBatch(&b.ub, deadline) // failures are filed per element
		for k, i := range b.fwd {
			c := b.calls[i]
			ans, e := b.ub.Answer(k)
			switch {
			case c.ID == nil:
			case e != nil:
				c.setError(e)
			case c.Req.Method == methodGetLogs && n.Logs != nil && n.Logs.CapError(ans) && p.logsAfterCap(n, c):
			case c.cacheable:
				p.cacheStoreElement(n, c, ans)
				c.setStored(ans)
			default:
				// Read in place: the batch's answers stay valid, and counted in the
				// answer budget, until putBatch, after the answer below is written.
				c.Ans = ans
			}
		}
	}
	// Answers in request order, as geth gives them; notifications get none. The answer
	// is bounded in bytes like an upstream's: past -max-response-body (cache hits and
	// the shared tier answer without an upstream's bound) each element gets an error.
	start, k := len(dst), 0
	dst = append(dst, '[')
	over := false
	var waits batchWaits
	for _, c := range b.calls {
		if c.Ans == nil {
			continue
		}
		if k > 0 {
			dst = append(dst, ',')
		}
		if over = over || len(dst)-start+len(c.Ans) > p.maxResponseBody; over {
			dst = proto.AppendError(dst, c.ID, proto.ErrBatchAnswerTooLarge)
			c.waited = nil
		} else {
			dst = append(dst, c.Ans...)
		}
		waits.add(c.waited)
		k++
	}
	if k == 0 {
		return dst[:start], nil
	}
	waits.write(b.from.Ctx, k)
	return append(dst, ']'), nil
}

// admitElement runs one batch element through parse, policy and its tenant's plan. It
// reports whether the element goes on; if not, it is settled: c.Ans holds its error
// (nil for a refused notification: nothing to say).
func (p *Pipeline) admitElement(n *network.Network, c *Call, el []byte) bool {
	c.settled = true
	if proto.FirstByte(el) != '{' {
		c.setError(proto.ErrInvalidRequest) // id null: there is no id to give back
		return false
	}
	if perr := c.Req.Parse(el); perr != nil {
		c.ID = c.Req.ID
		if perr == proto.ErrParse { // not reached: the batch as a whole parsed
			perr = proto.ErrInvalidRequest
		}
		if proto.RefusalAnswered(perr, c.ID) {
			c.setError(perr)
		}
		return false
	}
	c.ID = c.Req.ID
	perr := n.Policy.Admit(&c.Req)
	if perr == nil && c.Who != nil && !c.Who.Allows(&c.Req) {
		perr = c.Who.RefuseMethod()
	}
	if perr != nil {
		if c.ID != nil {
			c.setError(perr)
		}
		return false
	}
	c.settled = false
	return true
}

// routeElement answers an admitted element from the cache or queues it for the
// upstream exchange.
func (p *Pipeline) routeElement(n *network.Network, b *batch, c *Call, idx int) {
	if n.Filters != nil && filters.Owns(c.Req.Method) {
		if e := p.serveFilter(n, c); e != nil && c.ID != nil {
			c.setError(e)
		}
		return
	}
	if n.Broadcast.Handles(&c.Req) {
		// Not in the batch's exchange with one upstream: it goes to every target.
		if e := broadcast(n, c); e != nil && c.ID != nil {
			c.setError(e)
		}
		return
	}
	upID := notificationID
	// A one-chunk query goes in the batch's exchange (through the splitter each was a
	// round trip after the last), as a single one goes on as any call.
	if c.ID != nil && c.Req.Method == methodGetLogs && n.Logs != nil && !n.Logs.Small(&c.Req, c.Who.LogsMaxRange()) {
		if done, e := p.serveLogs(n, c); done {
			if e != nil {
				c.setError(e)
			}
			return
		}
	}
	if c.ID != nil {
		upID = c.ID
		if n.Cache != nil && p.cachePrepare(n, c) {
			if p.cacheHit(n, c) {
				return
			}
			c.cacheable = true
			upID = RestID // stored answers carry id 1
			if n.Shared != nil && n.Cache.Sharable(c.Req.Method, c.pol, c.block) && n.SharedOn() {
				b.shared = append(b.shared, idx) // upstream only if Redis lacks it
				return
			}
		}
	}
	b.fwd = append(b.fwd, idx)
	b.ub.Add(&c.Req, upID)
}

func putBatch(b *batch) {
	for i, c := range b.calls {
		PutCall(c)
		b.calls[i] = nil
	}
	b.calls, b.fwd, b.shared, b.spans = b.calls[:0], b.fwd[:0], b.shared[:0], b.spans[:0]
	b.ub.Reset()
	b.trace.Reset()
	b.from = Origin{}
	batchPool.Put(b)
}

// BatchTooLarge is the error of a batch of more than limit requests.
func BatchTooLarge(limit int) *proto.Error {
	e := *proto.ErrBatchTooLarge
	e.Message = "batch too large: more than " + strconv.Itoa(limit) + " requests"
	return &e
}

// Charge counts c, a call on network n, against its tenant's limits (nil: not
// limited), and in the tenant's usage of n.
func (p *Pipeline) Charge(n *network.Network, c *Call) *proto.Error {
	if c.Who == nil {
		return nil
	}
	if e := c.Who.Charge(&c.Req, p.access.Cost(&c.Req)); e != nil {
		return e
	}
	c.Who.CountNetwork(n.Index, n.Name, 1)
	return nil
}
