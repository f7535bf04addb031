package socket

import (
	"strconv"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/gateway/pipeline"
	"github.com/infura-gateway/infura-gateway/proto"
)

// A client's calls: each message read is parsed, admitted (policy, plan, budgets)
// and run through the pipeline; subscriptions join the network's hub.

// handle answers one client message. It reports whether it kept buf (a call goroutine
// owns it until the call ends).
func (c *wsClient) handle(buf *[]byte) bool {
	msg := *buf
	start := time.Now()
	switch proto.FirstByte(msg) {
	case '[':
		return c.startBatch(buf, start)
	case 0:
		c.sendError(nil, proto.ErrParse)
		c.h.calls.observe(proto.ErrParse.Status, start)
		return false
	}
	cl := pipeline.GetCall(c.up, start, start.Add(c.h.cfg.UpstreamTimeout))
	cl.Trace.SetIn(c.traceIn)
	if perr := cl.Req.Parse(msg); perr != nil {
		if proto.RefusalAnswered(perr, cl.Req.ID) { // invalid requests are answered even without an id
			c.sendError(cl.Req.ID, perr)
		}
		c.h.calls.observe(perr.Status, start)
		pipeline.PutCall(cl)
		return false
	}
	cl.ID = cl.Req.ID
	switch string(cl.Req.Name) {
	case "eth_subscribe":
		c.subscribe(cl, start)
		pipeline.PutCall(cl)
		return false
	case "eth_unsubscribe":
		c.unsubscribe(cl)
		c.h.calls.observe(200, start)
		pipeline.PutCall(cl)
		return false
	}
	// The policy first: what it refuses is answered here and never counts as in flight.
	who, refused := c.caller(cl.ID)
	if refused != 0 {
		c.h.calls.observe(refused, start)
		pipeline.PutCall(cl)
		return false
	}
	cl.Who, cl.From.Addr = who, c.addr
	perr := c.h.net.Policy.Admit(&cl.Req)
	if perr == nil {
		perr = c.charge(c.h.pipe.Charge(c.h.net, cl))
	}
	if perr == nil {
		perr = c.admit(1, len(msg))
	}
	if perr != nil {
		if cl.ID != nil {
			c.sendError(cl.ID, perr)
		}
		c.h.calls.observeErr(perr, start)
		pipeline.PutCall(cl)
		return false
	}
	go c.runCall(cl, buf, len(msg), start)
	return true
}

// MaxRefusals is how many limit refusals in a row a client gets answered before it is
// closed with 1008: past its limit, a client that does not slow down is only load.
const MaxRefusals = 100

// charge tracks the outcome of a limit check: refusals in a row close the client.
func (c *wsClient) charge(perr *proto.Error) *proto.Error {
	if perr == nil {
		if c.refusals.Load() != 0 {
			c.refusals.Store(0)
		}
		return nil
	}
	if perr.Status == fasthttp.StatusTooManyRequests && c.refusals.Add(1) == MaxRefusals {
		go c.shutdown(websocket.ClosePolicyViolation, "rate limit exceeded repeatedly: "+perr.Message)
	}
	return perr
}

// admit takes n calls and size request bytes from the connection's budgets.
func (c *wsClient) admit(n, size int) *proto.Error {
	if c.inFlight.Add(int32(n)) > int32(c.h.cfg.WSMaxInFlight) {
		c.leave(int32(n))
		c.h.refused.Inc()
		return errTooManyInFlight
	}
	if c.draining.Load() { // after the count: a drain that saw none in flight sees this refused
		c.leave(int32(n))
		return errDraining
	}
	if !c.pending.Acquire(size) {
		c.leave(int32(n))
		c.h.refused.Inc()
		return errTooManyPendingBytes
	}
	return nil
}

func (c *wsClient) done(n, size int) {
	c.pending.Release(size)
	c.leave(int32(n))
}

// runCall runs one admitted call through the rest of the pipeline and queues its answer.
func (c *wsClient) runCall(cl *pipeline.Call, buf *[]byte, size int, start time.Time) {
	defer c.done(1, size)
	perr := c.h.pipe.Dispatch(c.h.net, cl)
	if perr != nil {
		if cl.ID != nil {
			c.sendError(cl.ID, perr)
		}
	} else if cl.Ans != nil {
		c.send(cl.Ans)
	}
	c.h.calls.observeErr(perr, start)
	pipeline.PutCall(cl)
	putMsgBuf(buf)
}

// startBatch counts a batch's elements against the budgets and runs it on a goroutine.
func (c *wsClient) startBatch(buf *[]byte, start time.Time) bool {
	who, refused := c.caller(nil)
	if refused != 0 {
		c.h.calls.observe(refused, start)
		return false
	}
	n := 0
	if it, err := proto.NewArrayIter(*buf); err == nil {
		for n <= c.h.cfg.MaxBatch {
			if _, ok, err := it.Next(); err != nil || !ok {
				break
			}
			n++
		}
	}
	// A batch larger than -max-batch, or than the connection may have in flight,
	// could never be admitted: refused as too large, not as a limit to retry later.
	var perr *proto.Error
	switch {
	case n > c.h.cfg.MaxBatch:
		perr = pipeline.BatchTooLarge(c.h.cfg.MaxBatch)
	case n > c.h.cfg.WSMaxInFlight:
		perr = batchOverInFlight(c.h.cfg.WSMaxInFlight)
	default:
		perr = c.admit(max(n, 1), len(*buf))
	}
	if perr != nil {
		c.sendError(nil, perr) // one error for the batch, as for a batch over the size cap
		c.h.calls.observe(perr.Status, start)
		return false
	}
	go func() {
		defer c.done(max(n, 1), len(*buf))
		out := getMsgBuf()
		ans, perr := c.h.pipe.ServeBatch(c.h.net, (*out)[:0], *buf, c.up, start.Add(c.h.cfg.UpstreamTimeout), who, pipeline.Origin{Addr: c.addr}, c.traceIn)
		if perr == nil || perr.Status == fasthttp.StatusTooManyRequests {
			perr = c.charge(perr)
		}
		c.h.calls.observeErr(perr, start)
		*out = ans
		switch {
		case perr != nil:
			c.sendError(nil, perr)
			putMsgBuf(out)
		case len(ans) > 0:
			c.enqueue(outMsg{b: ans, buf: out})
		default:
			putMsgBuf(out) // only notifications: nothing to answer
		}
		putMsgBuf(buf)
	}()
	return true
}

// subscribe joins an eth_subscribe on the Mux, within the subscription budgets. Params
// are canonical, so subscriptions that differ only in whitespace share one upstream
// subscription.
//
// Refusals count as calls here; an answer of the hub counts when it arrives (Reply).
func (c *wsClient) subscribe(cl *pipeline.Call, start time.Time) {
	if cl.ID == nil {
		// A notification cannot receive its subscription id: answered with nothing, as
		// HTTP answers one.
		c.h.calls.observe(200, start)
		return
	}
	if perr := c.h.net.Policy.Admit(&cl.Req); perr != nil {
		c.sendError(cl.ID, perr)
		c.h.calls.observe(perr.Status, start)
		return
	}
	who, refused := c.caller(cl.ID)
	if refused != 0 {
		c.h.calls.observe(refused, start)
		return
	}
	// The tenant's plan: the method and its kind, one request and its cost; then the
	// budgets and a subscription slot.
	cl.Who = who
	perr := c.charge(c.h.pipe.Charge(c.h.net, cl))
	if perr == nil {
		perr = c.takeSub()
	}
	if perr != nil {
		c.sendError(cl.ID, perr)
		c.h.calls.observe(perr.Status, start)
		return
	}
	c.owed.Add(1) // before Join: a live group answers within it
	c.subs.Join(cl.Req.Params, cl.ID, c, time.Now().Add(c.h.cfg.UpstreamTimeout))
}

// unsubscribe answers eth_unsubscribe locally: the upstream subscription may be shared,
// and the Mux unsubscribes upstream when its last subscriber leaves. As geth: sent as a
// notification it still ends the subscription (nothing is answered), and an id that is
// not one of this client's subscriptions is an error, not result false.
func (c *wsClient) unsubscribe(cl *pipeline.Call) {
	id, perr := unsubscribeParam(cl.Req.Params)
	var gw []byte
	if perr == nil && id != nil {
		gw = c.groupOf(id) // an extra id (aliases.go) ends one holding of its group
	}
	left := gw != nil && c.subs.Leave(c, gw)
	if left {
		c.released(id, gw)
		c.dropSub()
	}
	switch {
	case cl.ID == nil:
		return
	case perr != nil:
		c.sendError(cl.ID, perr)
		return
	case !left:
		c.sendError(cl.ID, errSubscriptionNotFound)
		return
	}
	buf := getMsgBuf()
	*buf = append(append(append((*buf)[:0], `{"jsonrpc":"2.0","id":`...), cl.ID...), `,"result":true}`...)
	c.enqueue(outMsg{b: *buf, buf: buf})
}

// unsubscribeParam returns the decoded params[0]: nil for a string too long to be a
// subscription id of ours. As geth, a second argument, or a first that is not a string,
// is the caller's mistake (-32602), not a subscription that is gone.
func unsubscribeParam(params []byte) ([]byte, *proto.Error) {
	if proto.FirstByte(params) != '[' {
		return nil, errUnsubscribeParams
	}
	if proto.Nth(params, 1).Present() {
		return nil, errUnsubscribeArgs
	}
	s := proto.Nth(params, 0)
	if !s.Present() || proto.FirstByte(s.Bytes(params)) != '"' {
		return nil, errUnsubscribeParams
	}
	var buf [128]byte
	d, ok := proto.DecodeString(buf[:], s.Bytes(params))
	if !ok {
		return nil, nil
	}
	return append([]byte(nil), d...), nil
}

var (
	errUnsubscribeParams = proto.NewError(proto.CodeInvalidParams, fasthttp.StatusBadRequest,
		`invalid params: eth_unsubscribe takes ["<subscription id>"]`)
	// geth's own words for these two, byte for byte.
	errUnsubscribeArgs      = proto.NewError(proto.CodeInvalidParams, fasthttp.StatusBadRequest, "too many arguments, want at most 1")
	errSubscriptionNotFound = proto.NewError(proto.CodeServer, fasthttp.StatusOK, "subscription not found")
)

// batchOverInFlight is the error of a batch of more requests than one connection may
// have in flight (-ws-max-in-flight): it could never be admitted there.
func batchOverInFlight(limit int) *proto.Error {
	e := *proto.ErrBatchTooLarge
	e.Message = "batch too large: more than " + strconv.Itoa(limit) + " requests, the most one websocket connection may have in flight; split it or send it over HTTP"
	return &e
}
