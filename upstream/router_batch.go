// Batches: a whole batch goes to one upstream that allows every method in it, and is
// retried whole on another only when no request in it is a write; when no upstream
// allows them all, its requests go one by one as calls.

package upstream

import (
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
	"github.com/infura-gateway/infura-gateway/tracing"
)

// callBatch sends a batch to one upstream that can take every request in it, retrying
// it whole on another when the exchange failed and no request in it is a write.
func (r *Router) callBatch(b *Batch, deadline time.Time, via Transport) error {
	if !r.oneServesAll(b) {
		return r.callApart(b, deadline, via)
	}
	var n need
	retryable := true
	for _, req := range b.Reqs {
		rn := r.needOf(req)
		n.block = max(n.block, rn.block)
		n.archive = n.archive || rn.archive
		n.current = n.current || rn.current
		retryable = retryable && req.Retryable()
	}
	var probe *proto.Request
	if len(b.Reqs) > 0 {
		probe = b.Reqs[0]
	}
	var tried [maxAttempts]*Upstream
	var lastErr error = errNoUpstream
	for i := 0; i < maxAttempts; i++ {
		u, spent := r.pickBatch(b, probe, n, via, tried[:i])
		if u == nil {
			if i == 0 && spent {
				lastErr = r.errBudget(nil)
			} else if i == 0 {
				lastErr = r.noUpstream(via)
			}
			break
		}
		tried[i] = u
		pol := r.batchPolicy(b, u, retryable)
		more := i < int(pol.retries)
		u.inFlight.Add(1)
		var err error
		d := pol.bound(r.attemptDeadline(deadline, retryable && more))
		kind := "first"
		if i > 0 {
			kind = "retry"
		}
		at := tracing.StartAttempt(b.Trace, u.spec.Name, via.String(), kind)
		if via == TransportWS {
			err = u.mux.CallBatch(b, d)
		} else {
			var tp [tracing.HeaderLen]byte
			err = u.pool.callBatch(b, d, at.Header(&tp, b.Trace))
		}
		if at.Sampled() {
			at.End(proto.MethodBatch.String(), attemptOutcome(nil, AnswerOK, err))
		}
		u.inFlight.Add(-1)
		perr, _ := err.(*proto.Error)
		if n := b.refused; n.class != AnswerOK {
			r.noteAnswer(u, n.class, n.backoff) // refused element by element, back-off stated
		} else if perr != proto.ErrAnswerBudget { // the gateway's own limit says nothing of u
			r.noteAnswer(u, refusalClass(perr), 0)
		}
		if err == nil {
			r.verifyBatch(b, u, deadline, via)
			return nil
		}
		lastErr = err
		sent := perr != proto.ErrUnreachable && perr != proto.ErrOverloaded && !u.gate.refusedUnrun(perr)
		if (!retryable && sent) || !retryableError(perr) || !time.Now().Before(deadline) || !more {
			break
		}
		r.m.retries.Inc()
	}
	lastErr = r.finalError(lastErr, via)
	if e, ok := lastErr.(*proto.Error); ok && e.RetryAfter > 0 {
		b.replaceRefusals(e)
	}
	b.Fail(asProtoError(lastErr))
	return lastErr
}

// pickBatch picks for a batch: every method in it must be allowed, and the upstream's
// budget must have the batch's calls and units (spent: one was passed over for it).
func (r *Router) pickBatch(b *Batch, probe *proto.Request, n need, via Transport, tried []*Upstream) (*Upstream, bool) {
	tried = append([]*Upstream(nil), tried...) // ours to extend
	spent := false
	for range 4 {
		u := r.pick(probe, n, via, tried)
		if u == nil {
			return nil, spent || r.budgetBlocked() != 0
		}
		ok := true
		var units int64
		for _, req := range b.Reqs {
			if !u.allows(req) {
				ok = false
				break
			}
			units += u.costOf(req)
		}
		if ok && r.budgetTake(u, int64(len(b.Reqs)), units) {
			return u, false
		}
		spent = spent || ok
		tried = append(tried, u)
	}
	return nil, spent
}

// oneServesAll reports whether some upstream's configuration (its methods lists,
// send_only) takes every request of b; one flag when no upstream has lists.
func (r *Router) oneServesAll(b *Batch) bool {
	set := r.set.Load()
	if !set.listed {
		return true
	}
	for _, u := range set.all {
		all := true
		for _, req := range b.Reqs {
			all = all && u.allows(req)
		}
		if all {
			return true
		}
	}
	return false
}

// callApart answers each request of b on its own, as a call, one after another: no
// upstream's configuration takes them all (the network's policy refused those no
// upstream takes, so each has one), and sent whole the batch failed, every element
// answered "no upstream available".
func (r *Router) callApart(b *Batch, deadline time.Time, via Transport) error {
	b.start(r.cfg.Pool.Answers)
	for i, req := range b.Reqs {
		ans, err := r.call(nil, req, b.IDs[i], deadline, via)
		b.replace(i, ans, asProtoError(err), err == nil)
	}
	return nil
}
