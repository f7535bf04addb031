// The call path: the Caller the pipeline forwards to, one call tried on up to
// Retries+1 upstreams (call, once), the deadline of each attempt, which errors and
// answers another upstream may do better on, and eth_blockNumber kept at the served head.

package upstream

import (
	"strconv"
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
	"github.com/infura-gateway/infura-gateway/tracing"
)

// HTTP and WS are the router as the pipeline's callers: calls over each transport.
func (r *Router) HTTP() Caller { return routed{r, TransportHTTP} }
func (r *Router) WS() Caller   { return routed{r, TransportWS} }

// Caller is an upstream the pipeline forwards to.
type Caller interface {
	Call(spare []byte, req *proto.Request, id []byte, deadline time.Time) ([]byte, error)
	CallBatch(b *Batch, deadline time.Time) error
}

type routed struct {
	r   *Router
	via Transport
}

func (x routed) Call(spare []byte, req *proto.Request, id []byte, deadline time.Time) ([]byte, error) {
	return x.r.call(spare, req, id, deadline, x.via)
}

func (x routed) CallBatch(b *Batch, deadline time.Time) error {
	return x.r.callBatch(b, deadline, x.via)
}

// maxAttempts bounds the upstreams one call may be tried on.
const maxAttempts = 8

var errNoUpstream = proto.NewError(proto.CodeServer, 503,
	"no upstream available: every upstream that can take this call is at its in-flight limit, or none is configured for it")

func (r *Router) call(spare []byte, req *proto.Request, id []byte, deadline time.Time, via Transport) ([]byte, error) {
	return r.callAvoiding(spare, req, id, deadline, via, nil)
}

// callAvoiding is call on any upstream but avoid (nil: any), never hedged when it
// avoids one: a batch element asked again after avoid answered it wrongly.
func (r *Router) callAvoiding(spare []byte, req *proto.Request, id []byte, deadline time.Time, via Transport, avoid *Upstream) ([]byte, error) {
	if avoid == nil {
		if cs := r.underConsensus(req); cs != nil {
			return r.consensusCall(cs, spare, req, id, deadline, via)
		}
	}
	n := r.needOf(req)
	retryable := req.Retryable()
	var first *Upstream
	// reads counts only what the hedging budget needs: a counter every request writes
	// is a cache line the cores pass back and forth.
	if retryable && r.cfg.HedgeQuantile > 0 && avoid == nil {
		r.reads.Add(1)
		// Whether the read may be hedged is the policy of the upstream it goes to first
		// (its budget already taken: it is the first attempt either way).
		var spent bool
		first, spent = r.pickBudgeted(req, n, via, nil)
		for end := int64(0); first == nil && spent; {
			if end == 0 {
				end = r.budgetEnd()
			}
			if !r.waitBudget(int64(len(req.Name)+len(req.Params)), end, deadline) {
				return spare[:0], r.errBudget(req)
			}
			first, spent = r.pickBudgeted(req, n, via, nil)
		}
		if first == nil {
			return spare[:0], r.noUpstream(via)
		}
		if first.policyOf(req).hedge {
			return r.hedgedCall(req, id, deadline, via, n, first)
		}
	}
	// tried[:off+i] are the upstreams attempt i may not go to: avoid, and those tried.
	var tried [maxAttempts + 1]*Upstream
	off := 0
	if avoid != nil {
		tried[0], off = avoid, 1
	}
	var lastErr error = errNoUpstream
	var waitEnd int64
	for i := 0; i < maxAttempts; i++ {
		u, spent := first, false
		if i > 0 || u == nil {
			u, spent = r.pickBudgeted(req, n, via, tried[:off+i])
		}
		for u == nil && spent {
			// Every upstream that could take it is at its budget: wait briefly for one.
			if waitEnd == 0 {
				waitEnd = r.budgetEnd()
			}
			if !r.waitBudget(int64(len(req.Name)+len(req.Params)), waitEnd, deadline) {
				break
			}
			u, spent = r.pickBudgeted(req, n, via, tried[:off+i])
		}
		if u == nil {
			if i == 0 && spent {
				lastErr = r.errBudget(req)
			} else if i == 0 {
				lastErr = r.noUpstream(via)
			}
			break
		}
		tried[off+i] = u
		kind := "first"
		if i > 0 {
			kind = "retry"
		}
		// A failed read goes on to another upstream as the policy of the one it failed
		// on says; a write only if it never left (or was refused unrun), as -retries says.
		pol := u.policyOf(req)
		more := i < min(pol.retriesOr(r.cfg.Retries), maxAttempts-1)
		if !retryable {
			more = i < min(r.cfg.Retries, maxAttempts-1)
		}
		ans, cls, err := r.once(u, spare, req, id, pol.bound(r.attemptDeadline(deadline, retryable && more)), via, kind)
		spare = ans
		if err == nil && cls != AnswerMissingData {
			return r.clamp(req, ans), nil
		}
		if err == nil {
			err = errLagging
		}
		lastErr = err
		perr, _ := err.(*proto.Error)
		// A write may go elsewhere only if it never left, or a provider refused it
		// before running it (refusedByProvider).
		sent := perr != proto.ErrUnreachable && perr != proto.ErrOverloaded && !u.gate.refusedUnrun(perr)
		if (!retryable && sent) || !retryableError(perr) || !time.Now().Before(deadline) || !more {
			break
		}
		r.m.retries.Inc()
	}
	if lastErr == errLagging {
		return spare, nil // the last answer stands: the node's own "header not found"
	}
	return spare[:0], r.finalError(lastErr, via)
}

// attemptDeadline is the deadline of one attempt of a call: the call's own, less a
// reserve for a retry on another upstream when the call may be retried (canRetry),
// another upstream is configured and the call has time for both. The reserve is
// Health.SlowMin, the time an upstream may take before it counts as slow. Without it
// an upstream that takes calls and never answers (a blackhole) would hold them until
// the client's deadline, and the reads among them would fail instead of being retried.
func (r *Router) attemptDeadline(deadline time.Time, canRetry bool) time.Time {
	reserve := r.cfg.Health.SlowMin
	if !canRetry || reserve <= 0 || len(r.set.Load().all) < 2 || time.Until(deadline) < 2*reserve {
		return deadline
	}
	return deadline.Add(-reserve)
}

// errLagging marks an answer that says the upstream lacks the block ("header not
// found", "missing trie node"): another upstream may have it.
var errLagging = proto.NewError(proto.CodeServer, 502, "upstream lacks the block")

// once makes one call on u, the attempt kind (first, retry, hedge) of its call: a span
// of its own when the call is traced. Over HTTP the attempt carries the call's
// traceparent and request id; a websocket frame has no headers to carry them.
func (r *Router) once(u *Upstream, spare []byte, req *proto.Request, id []byte, deadline time.Time, via Transport, kind string) ([]byte, AnswerClass, error) {
	u.inFlight.Add(1)
	defer u.inFlight.Add(-1)
	at := tracing.StartAttempt(req.Trace, u.spec.Name, via.String(), kind)
	var ans []byte
	var n note
	var err error
	if via == TransportWS {
		ans, n, err = u.mux.call(spare, req, id, deadline)
	} else {
		var tp [tracing.HeaderLen]byte
		ans, n, err = u.pool.call(spare, req, id, deadline, at.Header(&tp, req.Trace))
	}
	if err == nil && n.class == AnswerOK {
		// Integrity (integrity.go): a wrong answer is the upstream broken, a null from
		// behind the served head is missing data; neither is returned as an answer.
		if c, lagging := r.verify(u, req, ans); c != checkNone {
			r.wrongAnswer(u, req, c)
			n.class, err, ans = AnswerBroken, errWrongAnswer, ans[:0]
		} else if lagging {
			n.class, err, ans = AnswerMissingData, errNullLagging, ans[:0]
		}
	}
	if err != proto.ErrAnswerBudget { // the gateway's own limit says nothing of u
		r.noteAnswer(u, n.class, n.backoff)
	}
	if n.class == AnswerMethodRefused && err != nil {
		r.methodRefused(u, req)
	}
	if at.Sampled() { // the outcome (a scan of the answer) is worked out only for a span
		at.End(req.Method.String(), attemptOutcome(ans, n.class, err))
	}
	return ans, n.class, err
}

// pickBudgeted is pick, and a take from the budget of the upstream picked: one whose
// take fails is passed over for this call and another picked. spent reports that one
// was passed over for its budget (or is skipped for it now).
func (r *Router) pickBudgeted(req *proto.Request, n need, via Transport, tried []*Upstream) (u *Upstream, spent bool) {
	for {
		if u = r.pick(req, n, via, tried); u == nil {
			return nil, spent || r.budgetBlocked() != 0
		}
		if r.budgetTake(u, 1, u.costOf(req)) {
			return u, spent
		}
		spent = true
		tried = append(tried, u) // within the caller's array: no allocation up to maxAttempts
	}
}

// attemptOutcome is the outcome class of an attempt, for its span.
func attemptOutcome(ans []byte, cls AnswerClass, err error) string {
	if err == nil {
		switch {
		case cls == AnswerMissingData:
			return "lagging"
		case proto.IsErrorResponse(ans):
			return "rpc_error"
		}
		return "ok"
	}
	switch asProtoError(err) {
	case proto.ErrTimeout:
		return "timeout"
	case proto.ErrUnreachable, proto.ErrUnavailable:
		return "unavailable"
	case proto.ErrOverloaded, proto.ErrAnswerBudget:
		return "overloaded"
	case proto.ErrRateLimited, errThrottled, errExhausted:
		return "rate_limited"
	case errWrongAnswer:
		return "wrong_answer"
	case errNullLagging:
		return "lagging"
	}
	return "error"
}

// retryableError reports whether another upstream may do better: the transport failed,
// the upstream was overloaded, rate limited or broken. A JSON-RPC error that is the
// answer (execution reverted, invalid params) is never retried.
func retryableError(e *proto.Error) bool {
	switch e {
	case proto.ErrUnavailable, proto.ErrUnreachable, proto.ErrTimeout, proto.ErrOverloaded,
		proto.ErrRateLimited, proto.ErrBadUpstream, errLagging, errUpstreamAuth, errThrottled, errExhausted, errMethodRefused,
		errWrongAnswer, errNullLagging:
		return true
	}
	return false
}

// retryableAnswer reports whether an answer is an error saying this node lacks what
// was asked, where another node may have it (the generic rules' missing_data).
func retryableAnswer(ans []byte) bool {
	return proto.IsErrorResponse(ans) && genericClassifier.classifyBody(0, ans, nil, nil).class == AnswerMissingData
}

// clamp keeps eth_blockNumber from going backwards when the answer came from an
// upstream behind the served head.
func (r *Router) clamp(req *proto.Request, ans []byte) []byte {
	if string(req.Name) != "eth_blockNumber" {
		return ans
	}
	served := r.served.Load()
	res := proto.FirstMember(ans, "result")
	n, ok := proto.ParseQuantity(res.Bytes(ans))
	if !ok || n >= served {
		return ans
	}
	var q [24]byte
	v := append(strconv.AppendUint(append(q[:0], `"0x`...), served, 16), '"')
	return proto.Splice(make([]byte, 0, len(ans)+8), ans, res, v)
}

func asProtoError(err error) *proto.Error {
	if e, ok := err.(*proto.Error); ok {
		return e
	}
	return proto.ErrInternal
}

var errNotConfigured = proto.NewError(proto.CodeServer, 503, "upstream not configured")

// CallOn makes req once on the upstream named name, over HTTP, as one attempt of the
// router's own (health, metrics and the attempt's span as any call's), never retried
// nor hedged: a broadcast (gateway/broadcast) sends a transaction to each of its
// targets so. The upstream must serve the router's chain, allow the method and have
// room under its max_in_flight; a banned one is still tried (a broadcast wants every
// target, and a send is one cheap call).
func (r *Router) CallOn(name string, spare []byte, req *proto.Request, id []byte, deadline time.Time) ([]byte, error) {
	var u *Upstream
	for _, x := range r.set.Load().all {
		if x.spec.Name == name {
			u = x
			break
		}
	}
	switch {
	case u == nil:
		return spare[:0], errNotConfigured
	case !u.servesChain(TransportHTTP):
		return spare[:0], r.noUpstream(TransportHTTP)
	case !u.allows(req):
		return spare[:0], proto.ErrMethodNotFound
	case u.spec.MaxInFlight > 0 && u.inFlight.Load() >= int32(u.spec.MaxInFlight):
		return spare[:0], proto.ErrOverloaded
	case !u.gate.open(): // throttled or out of quota: the provider would refuse it unrun
		return spare[:0], r.finalError(errThrottled, TransportHTTP)
	case !r.budgetTake(u, 1, u.costOf(req)): // a target's budget is spent like any call's
		return spare[:0], r.errBudget(req)
	}
	ans, _, err := r.once(u, spare, req, id, deadline, TransportHTTP, "broadcast")
	if err != nil {
		// The provider's throttle or quota met here answers as the closed gate above
		// does: the gateway's refusal with its Retry-After, not the bare attempt error.
		err = r.finalError(err, TransportHTTP)
	}
	return ans, err
}
