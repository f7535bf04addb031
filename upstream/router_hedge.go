// Hedging: a read not answered within its class's latency quantile also goes to a
// second upstream, within the HedgeMaxExtra budget; the first answer wins.

package upstream

import (
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
)

// hedgedCall sends a read to the best upstream and, when it has not answered by its own
// latency quantile, to a second one too; the first answer wins. Hedges are capped at
// HedgeMaxExtra of all reads. first is the upstream picked for it, whose policy allows
// hedging; each upstream's policy bounds its attempt, and the first's says whether a
// failure is retried.
func (r *Router) hedgedCall(req *proto.Request, id []byte, deadline time.Time, via Transport, n need, first *Upstream) ([]byte, error) {
	type result struct {
		ans []byte
		err error
		u   *Upstream
	}
	results := make(chan result, 2)
	launch := func(u *Upstream, deadline time.Time, kind string) {
		deadline = u.policyOf(req).bound(deadline)
		go func() {
			ans, cls, err := r.once(u, nil, req, id, deadline, via, kind)
			if err == nil && cls == AnswerMissingData {
				err = errLagging
			}
			results <- result{ans, err, u}
		}()
	}
	// req may point into the caller's buffers: copy it, the goroutines may outlive this call.
	req = cloneRequest(req)
	retry := first.policyOf(req).retriesOr(r.cfg.Retries) > 0
	launch(first, r.attemptDeadline(deadline, retry), "first")
	// The wait is the quantile of the fastest upstream, not of the one picked: an
	// upstream that is slow all the time has a high quantile of its own, and its calls
	// would never be hedged in time.
	cls := req.Class()
	wait := time.Duration(r.hedgeWait[cls].Load())
	if wait <= 0 {
		wait = first.health.Quantile(cls, r.cfg.HedgeQuantile, time.Now())
	}
	if wait <= 0 {
		wait = 50 * time.Millisecond
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	outstanding, hedged := 1, false
	var last result
	for outstanding > 0 {
		select {
		case res := <-results:
			outstanding--
			if res.err == nil {
				if hedged && res.u != first {
					r.m.hedgesWon.Inc()
				}
				return r.clamp(req, res.ans), nil
			}
			last = res
			if !hedged && retry { // the first failed: try another now, as a retry
				if !retryableError(asProtoError(res.err)) {
					continue
				}
				if u, _ := r.pickBudgeted(req, n, via, []*Upstream{first}); u != nil {
					hedged = true
					r.m.retries.Inc()
					launch(u, deadline, "retry")
					outstanding++
				}
			}
		case <-timer.C:
			// The budget: a share of all reads, plus a few so the first reads of a
			// process may hedge too.
			if hedged || float64(r.hedged.Load()) >= r.cfg.HedgeMaxExtra*float64(r.reads.Load())+hedgeBurst {
				continue
			}
			if u, _ := r.pickBudgeted(req, n, via, []*Upstream{first}); u != nil {
				hedged = true
				r.hedged.Add(1)
				r.m.hedges.Inc()
				launch(u, deadline, "hedge")
				outstanding++
			}
		}
	}
	return nil, r.finalError(last.err, via)
}

// hedgeBurst is how many hedges the budget allows beyond its share of reads.
const hedgeBurst = 5

func cloneRequest(r *proto.Request) *proto.Request {
	c := new(proto.Request)
	name := append([]byte(nil), r.Name...)
	c.Set(name, append([]byte(nil), r.Params...))
	if r.Trace != nil {
		// The goroutines may outlive the call, whose trace state is reused after it.
		t := *r.Trace
		c.Trace = &t
	}
	return c
}
