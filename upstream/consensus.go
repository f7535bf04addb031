// Consensus: reads of the configured methods are asked of k distinct upstreams in
// parallel (each picked, budgeted, checked and classified as any attempt) and answered
// only when m of them agree. Agreement is byte equality of the answers' result member
// (or error member) with insignificant whitespace removed: members are compared in
// the order the nodes wrote them, so nodes of different clients that order fields
// differently disagree (configure consensus over upstreams of one client, or for
// methods whose result is a scalar). A dissenter is counted in wrong_answers{check=
// "consensus"}; one whose share of dissent (an exponentially weighted mean over its
// votes) rises past dissentHigh has its routing weight divided by lowWeightDivisor
// until it falls back under dissentLow.

package upstream

import (
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
)

// ConsensusConfig is a network's consensus: reads of Methods go to Upstreams distinct
// upstreams, answered when Agree of them agree. Timeout, when above 0, bounds the
// whole call (else the call's deadline does).
type ConsensusConfig struct {
	Methods   []string
	Upstreams int
	Agree     int
	Timeout   time.Duration
}

// MaxConsensusUpstreams bounds k.
const MaxConsensusUpstreams = maxAttempts

// Validate checks c (nil: off).
func (c *ConsensusConfig) Validate() error {
	if c == nil {
		return nil
	}
	switch {
	case len(c.Methods) == 0:
		return errors.New("methods: list at least one read method")
	case c.Upstreams < 2 || c.Upstreams > MaxConsensusUpstreams:
		return fmt.Errorf("upstreams %d: want 2 to %d", c.Upstreams, MaxConsensusUpstreams)
	case c.Agree < 1 || c.Agree > c.Upstreams:
		return fmt.Errorf("agree %d: want 1 to upstreams (%d)", c.Agree, c.Upstreams)
	case c.Timeout < 0:
		return errors.New("timeout must not be negative")
	}
	for _, m := range c.Methods {
		if err := consensusMethod(m); err != nil {
			return err
		}
	}
	return nil
}

// consensusMethod checks that m may be under consensus: a read the gateway knows by
// name; never a send (asking k upstreams would send it k times) nor a filter or a
// subscription (they live on the node that made them).
func consensusMethod(m string) error {
	meth := proto.MethodNamed(m)
	switch {
	case meth == proto.MethodOther:
		return fmt.Errorf("method %q: not a method the gateway knows by name", m)
	case proto.IsWrite([]byte(m)):
		return fmt.Errorf("method %q: a send is never asked of several upstreams", m)
	}
	switch m {
	case "eth_newFilter", "eth_newBlockFilter", "eth_newPendingTransactionFilter", "eth_getFilterChanges",
		"eth_getFilterLogs", "eth_uninstallFilter", "eth_subscribe", "eth_unsubscribe", "eth_accounts",
		"eth_sign", "eth_signTransaction":
		return fmt.Errorf("method %q: filters, subscriptions and account calls live on one node: no consensus", m)
	}
	return nil
}

// consensus is the router's consensus as set: on[m] for the methods under it.
type consensus struct {
	on       [proto.NumMethods]bool
	k, m     int
	timeout  time.Duration
	disagree *proto.Error
}

var errDisagree = proto.NewError(proto.CodeServer, 502, "upstreams disagree")

// SetConsensus sets the router's consensus (nil: off). c must be valid.
func (r *Router) SetConsensus(c *ConsensusConfig) error {
	if err := c.Validate(); err != nil {
		return fmt.Errorf("consensus: %w", err)
	}
	if c == nil {
		r.consensus.Store(nil)
		return nil
	}
	cs := &consensus{k: c.Upstreams, m: c.Agree, timeout: c.Timeout, disagree: errDisagree}
	for _, m := range c.Methods {
		cs.on[proto.MethodNamed(m)] = true
	}
	r.consensus.Store(cs)
	return nil
}

// underConsensus returns the consensus req is under, nil if none: one load and one
// table lookup for every call.
func (r *Router) underConsensus(req *proto.Request) *consensus {
	cs := r.consensus.Load()
	if cs == nil || !cs.on[req.Method] || !req.Retryable() {
		return nil
	}
	return cs
}

// vote is one upstream's answer in a consensus call.
type vote struct {
	u   *Upstream
	ans []byte
	key string // the canonical result (or error) bytes; "" when the attempt failed
	err error
}

// consensusCall asks cs.k distinct upstreams and answers when cs.m agree.
func (r *Router) consensusCall(cs *consensus, spare []byte, req *proto.Request, id []byte, deadline time.Time, via Transport) ([]byte, error) {
	if cs.timeout > 0 {
		if d := time.Now().Add(cs.timeout); d.Before(deadline) {
			deadline = d
		}
	}
	n := r.needOf(req)
	var tried [maxAttempts]*Upstream
	picked := tried[:0]
	for len(picked) < cs.k {
		u, _ := r.pickBudgeted(req, n, via, picked)
		if u == nil {
			break
		}
		picked = append(picked, u)
	}
	if len(picked) < cs.m {
		return spare[:0], r.finalError(errNoConsensusUpstreams, via)
	}
	// The attempts may outlive this call (it answers once m agree): req and id may
	// point into the caller's buffers.
	req, id = cloneRequest(req), append([]byte(nil), id...)
	votes := make(chan vote, len(picked))
	for _, u := range picked {
		go func() {
			ans, _, err := r.once(u, nil, req, id, u.policyOf(req).bound(deadline), via, "consensus")
			v := vote{u: u, ans: ans, err: err}
			if err == nil {
				v.key = voteKey(ans)
			}
			votes <- v
		}()
	}
	var got [maxAttempts]vote
	var lastErr error = errNoConsensusUpstreams
	for i := range picked {
		v := <-votes
		got[i] = v
		if v.err != nil {
			lastErr = v.err
			continue
		}
		agree := 0
		for _, w := range got[:i+1] {
			if w.err == nil && w.key == v.key {
				agree++
			}
		}
		if agree >= cs.m {
			// The answer stands; the rest are judged against it as they come in.
			go r.judge(req, v.key, got[:i+1], votes, len(picked)-i-1)
			return append(spare[:0], r.clamp(req, v.ans)...), nil
		}
	}
	answered := 0
	for _, v := range got[:len(picked)] {
		if v.err == nil {
			answered++
		}
	}
	if answered < cs.m {
		return spare[:0], r.finalError(lastErr, via)
	}
	return spare[:0], cs.disagree
}

var errNoConsensusUpstreams = proto.NewError(proto.CodeServer, 503,
	"not enough upstreams answered to reach the configured consensus")

// judge counts the votes of a consensus call against its answer (key): those in seen,
// and the more still to come on votes.
func (r *Router) judge(req *proto.Request, key string, seen []vote, votes <-chan vote, more int) {
	for _, v := range seen {
		r.tally(req, v, key)
	}
	for range more {
		r.tally(req, <-votes, key)
	}
}

func (r *Router) tally(req *proto.Request, v vote, key string) {
	if v.err != nil {
		return // a failed attempt is not a vote (and its failure is counted as such)
	}
	dissent := v.key != key
	if dissent {
		r.wrongAnswer(v.u, req, checkConsensus)
	}
	v.u.integ.noteVote(dissent, v.u.spec.Name, r)
}

// voteKey is the canonical bytes of an answer's result (or error) member: compacted.
func voteKey(ans []byte) string {
	s := proto.FirstMember(ans, "result")
	if !s.Present() {
		s = proto.FirstMember(ans, "error")
	}
	return "r" + string(proto.AppendCompact(nil, s.Bytes(ans)))
}

// The dissent of an upstream is an exponentially weighted mean of its votes (1: it
// dissented): past dissentHigh its routing weight is divided by lowWeightDivisor,
// under dissentLow it is restored.
const (
	dissentAlpha     = 0.1
	dissentHigh      = 0.25
	dissentLow       = 0.1
	lowWeightDivisor = 10
)

// noteVote moves the dissent mean by one vote, and the weight with it.
func (s *integrityState) noteVote(dissent bool, name string, r *Router) {
	x := 0.0
	if dissent {
		x = 1
	}
	for {
		old := s.dissent.Load()
		mean := math.Float64frombits(old)
		mean += dissentAlpha * (x - mean)
		if s.dissent.CompareAndSwap(old, math.Float64bits(mean)) {
			switch {
			case mean > dissentHigh && !s.lowered.Load():
				s.lowered.Store(true)
				r.log.Warn("upstream dissents in consensus calls: its routing weight is lowered", "upstream", name)
			case mean < dissentLow && s.lowered.Load():
				s.lowered.Store(false)
				r.log.Info("upstream agrees again in consensus calls: its routing weight is restored", "upstream", name)
			}
			return
		}
	}
}

// weight is u's routing weight in pickFrom's draw, in tenths: its configured weight,
// a tenth of it while it dissents in consensus calls.
func (u *Upstream) weight() int {
	if u.integ.lowered.Load() {
		return u.spec.Weight
	}
	return u.spec.Weight * lowWeightDivisor // in tenths: a weight of 1 can be lowered too
}

// consensusVotes are the integrity state's consensus fields.
type consensusVotes struct {
	dissent atomic.Uint64 // float64 bits: the mean of dissent
	lowered atomic.Bool
}
