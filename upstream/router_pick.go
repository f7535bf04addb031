// Selection: which upstream takes a call. needOf says what the call requires of an
// upstream (a block, archive state, the served head); pick walks the tiers from strict
// needs to last resort, asking eligible of each upstream; pickFrom draws two different
// upstreams by weight and keeps the less loaded or, by chance weighed by score, the faster.

package upstream

import (
	"math/rand/v2"

	"github.com/infura-gateway/infura-gateway/proto"
)

// need is what a call requires of an upstream.
type need struct {
	block   uint64 // its head must be at least this
	archive bool
	current bool // it must be at the served head (latest state, tags, lookups by hash)
}

func (r *Router) needOf(req *proto.Request) need {
	served := r.served.Load()
	kind, n, ok := req.Block()
	if !ok {
		return need{current: true}
	}
	switch kind {
	case proto.BlockNumber:
		return need{block: n, archive: stateMethods[req.Method] && n+r.cfg.ArchiveDepth < served}
	case proto.BlockHash:
		if h := blockHashParam(req); h != nil {
			if num, ok := r.recentBlock(h); ok {
				return need{block: num}
			}
		}
	}
	return need{current: true}
}

// stateMethods read the state at a block: below ArchiveDepth only archive nodes have
// it. Blocks, transactions, receipts and logs every full node keeps.
var stateMethods = func() (t [proto.NumMethods]bool) {
	for _, name := range []string{"eth_getBalance", "eth_getCode", "eth_getStorageAt", "eth_getTransactionCount",
		"eth_getProof", "eth_call", "eth_estimateGas", "eth_createAccessList"} {
		t[proto.MethodNamed(name)] = true
	}
	return t
}()

// blockHashParam returns the quoted hash of a by-hash call's block parameter.
func blockHashParam(req *proto.Request) []byte {
	if proto.FirstByte(req.Params) != '[' {
		return nil
	}
	s := proto.Nth(req.Params, 0)
	if !s.Present() {
		return nil
	}
	v := s.Bytes(req.Params)
	if v[0] == '{' {
		v = proto.FirstMember(v, "blockHash").Bytes(v)
	}
	return v
}

// strictness says how much pick insists on: the call's needs, then only the upstream's
// own limits, then (every upstream banned, or no archive upstream for old state)
// anything configured, rather than refusing: an upstream banned a moment ago may
// answer again, a full node asked for old state answers that it lacks it, and the
// client learns why not.
type strictness uint8

const (
	strictNeeds strictness = iota
	// healthyLimits is strictLimits for healthy upstreams only: a healthy primary a
	// notification behind the served head is preferred to a fallback.
	healthyLimits
	strictLimits
	lastResort
)

// eligible reports whether u may take a call with n over via, at the served head.
func (r *Router) eligible(u *Upstream, req *proto.Request, n need, via Transport, served uint64, level strictness) bool {
	st := u.health.State()
	switch {
	case !u.servesChain(via): // never another chain, not even as a last resort
		return false
	case st == StateBanned && level != lastResort:
		return false
	case via == TransportWS && (u.mux == nil || !u.mux.Up()):
		return false
	case via == TransportWS && level < strictLimits && u.mux.Suspect(): // mux_probe.go
		return false
	case u.cordoned(): // an operator's hold: not even as a last resort
		return false
	case !u.allows(req):
		return false
	case level != lastResort && u.refusedMethods.refuses(req.Name): // methodrefusal.go
		return false
	case !r.budgetRoom(u): // its budget is spent (budget.go)
		return false
	case !u.gate.open(): // throttled or exhausted, even as a last resort (gate.go)
		return false
	case u.spec.MaxInFlight > 0 && u.inFlight.Load() >= int32(u.spec.MaxInFlight):
		return false
	case n.archive && !u.spec.Archive && level != lastResort:
		return false
	case level == healthyLimits && st != StateHealthy:
		return false
	}
	if level != strictNeeds {
		return true
	}
	head := u.health.Head()
	switch {
	case n.block > 0:
		return head >= n.block
	case n.current:
		return st == StateHealthy && head >= served
	}
	return true
}

// pick chooses an upstream for req: among eligible primaries one of two different
// random choices (weighted), the one with fewer calls in flight when they differ by
// two, else the better by in-flight calls times latency, most of the time (pickFrom).
// Fallbacks only when no primary can take the call: not even a healthy one a moment
// behind the served head (its notification of the last block not in yet, when the
// primary that reported it has failed the call). Requirements on the head are relaxed
// before giving up, so a call for a block nobody has yet still reaches a primary,
// which answers as the chain says.
func (r *Router) pick(req *proto.Request, n need, via Transport, tried []*Upstream) *Upstream {
	set := r.set.Load()
	served := r.served.Load()
	for _, step := range [...]struct {
		level strictness
		tier  Tier
	}{
		{strictNeeds, TierPrimary}, {healthyLimits, TierPrimary}, {strictNeeds, TierFallback},
		{strictLimits, TierPrimary}, {strictLimits, TierFallback},
		{lastResort, TierPrimary}, {lastResort, TierFallback},
	} {
		tier := set.primaries
		if step.tier == TierFallback {
			tier = set.fallbacks
		}
		if u := r.pickFrom(tier, req, n, via, served, step.level, tried); u != nil {
			return u
		}
	}
	return nil
}

func (r *Router) pickFrom(ups []*Upstream, req *proto.Request, n need, via Transport, served uint64, level strictness, tried []*Upstream) *Upstream {
	var cand [16]*Upstream
	list := cand[:0]
	total := 0
	cls := req.Class()
outer:
	for _, u := range ups {
		for _, t := range tried {
			if t == u {
				continue outer
			}
		}
		if r.eligible(u, req, n, via, served, level) {
			list = append(list, u)
			total += u.weight()
		}
	}
	switch len(list) {
	case 0:
		return nil
	case 1:
		return list[0]
	}
	// Two different upstreams: were both drawn from all, an upstream every call waits
	// on (a blackhole, its in-flight calls piling up) would still be "chosen" over
	// itself for 1/n² of the calls (a quarter, with two), whatever its score.
	a := weighted(list, total, nil)
	b := weighted(list, total-a.weight(), a)
	// One holding two calls more than the other, per weight, is not chosen: calls that
	// do not come back pile up there, and it gets no more.
	la := float64(a.inFlight.Load()) / float64(a.spec.Weight)
	lb := float64(b.inFlight.Load()) / float64(b.spec.Weight)
	switch {
	case la >= lb+2:
		return b
	case lb >= la+2:
		return a
	}
	// Otherwise each wins with a probability inversely proportional to its score: the
	// faster mostly, the slower now and then. Always taking the lower score would send
	// nearly every call to whichever mean latency is a little lower, and the other's,
	// measured only on answers, would never be refreshed (an idle upstream's first,
	// cold answer would keep it out for good).
	sa, sb := score(a, cls), score(b, cls)
	if rand.Float64()*(sa+sb) < sa {
		return b
	}
	return a
}

// weighted draws an upstream of list other than except, by weight (Upstream.weight:
// lowered while it dissents in consensus calls); total is the sum of the weights of
// the others.
func weighted(list []*Upstream, total int, except *Upstream) *Upstream {
	x := rand.IntN(total)
	var last *Upstream
	for _, u := range list {
		if u == except {
			continue
		}
		if x -= u.weight(); x < 0 {
			return u
		}
		last = u
	}
	return last
}

// score is the expected wait: latency (of calls of the same class: a client's slow
// eth_calls do not steer its eth_blockNumber away) times the calls already waiting,
// per weight.
func score(u *Upstream, cls proto.Class) float64 {
	lat := u.health.LatencyOf(cls).Seconds()
	if lat == 0 {
		lat = 0.001 // unknown: optimistic, so a new upstream gets tried
	}
	return lat * float64(u.inFlight.Load()+1) / float64(u.spec.Weight)
}
