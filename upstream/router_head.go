package upstream

import (
	"encoding/base64"
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
)

func base64Encode(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// followHead keeps u's head: from a newHeads subscription on its socket when it has
// one (free: the node pushes it), by polling the latest block otherwise. It reads the
// head once more each time a socket, or the HTTP transport, comes back up, and when u
// proves its chain after a head it read was dropped (checkHead): newHeads reports only
// new blocks, and a node restarted on a new chain, or further back, may make none.
// While none of its sockets is up it polls, as without one.
func (r *Router) followHead(u *Upstream) {
	defer u.done.Done()
	if u.mux != nil {
		backoff := 100 * time.Millisecond
		for {
			unsub, err := u.mux.Subscribe(newHeadsParams, func(header []byte) {
				u.watch.pushed(header, time.Now())
				r.observeHead(u, header)
			})
			if err == nil {
				select {
				case <-u.headCheck: // a socket came up before: the read below covers it
				default:
				}
				downs := u.mux.downs.Load()
				r.rebaseHead(u) // newHeads reports only later heads: read the current one once
				poll := time.NewTicker(r.cfg.HeadPoll)
				for {
					select {
					case <-u.stop:
						poll.Stop()
						unsub()
						return
					case <-u.headCheck:
						r.socketUp(u, &downs)
					case q := <-u.watch.silentGroups: // subscriptions_silent.go
						r.renewGroup(u, q)
					case <-poll.C:
						if !u.mux.Up() || !u.mux.live(newHeadsParams) {
							// No socket, or newHeads being subscribed again: poll, as
							// without a websocket.
							r.rebaseHead(u)
						} else {
							r.checkSilence(u) // router_stall.go: an HTTP read only while no head is pushed
						}
					}
				}
			}
			select {
			case <-u.stop:
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 5*time.Second)
		}
	}
	t := time.NewTicker(r.cfg.HeadPoll)
	defer t.Stop()
	for {
		r.pollHead(u)
		select {
		case <-u.stop:
			return
		case <-t.C:
		case <-u.headCheck: // at once rather than a poll later
		}
	}
}

var (
	methodGetBlockByNumber = []byte("eth_getBlockByNumber")
	latestHeaderParams     = []byte(`["latest",false]`)
	methodBlockNumber      = []byte("eth_blockNumber")
)

// socketUp reads u's head once more: a socket of u came up (checkHead). It is the base
// the pushes continue from (rebaseHead) only when the newHeads subscription may have
// been subscribed again since the last base: it is not live, or a socket was lost with
// subscriptions on it (downs, as of that base). A sibling socket coming up while
// newHeads stayed live says nothing of its pushes; rebased there, the blocks the HTTP
// head is past the last push (a silence the next check would find) were forgotten, and
// with a chain that then stands the silence was never found.
func (r *Router) socketUp(u *Upstream, downs *uint64) {
	if d := u.mux.downs.Load(); d != *downs || !u.mux.live(newHeadsParams) {
		*downs = d
		r.rebaseHead(u)
		return
	}
	r.pollHead(u)
}

// pollHead reads u's latest block header over HTTP and returns its number. An answer
// older than a head u pushed while it was asked is dropped: it would look like the
// chain going back.
func (r *Router) pollHead(u *Upstream) (uint64, bool) {
	if !u.gate.mayPoll(time.Now().UnixNano()) {
		return 0, false // out of its quota (gate.go)
	}
	var req proto.Request
	req.Set(methodGetBlockByNumber, latestHeaderParams)
	at := u.health.headAt.Load()
	ans, err := r.poolCall(u, &req, time.Now().Add(min(r.cfg.Pool.MaxConnWaitTimeout, 2*r.cfg.HeadPoll)))
	if err != nil {
		return 0, false
	}
	header := proto.FirstMember(ans, "result").Bytes(ans)
	n, ok := proto.ParseQuantity(proto.FirstMember(header, "number").Bytes(header))
	if ok && n < u.health.Head() && u.health.headAt.Load() != at {
		return n, true
	}
	r.observeHead(u, header)
	return n, ok
}

// observeHead records a header u reported and moves the served head: up whenever any
// upstream has a higher block; down only when the upstream that set it goes back
// itself (a reorg or a new chain) and nobody else is higher. Traffic moving from one
// upstream to a lagging one never moves it down.
//
// Only the heads of upstreams that may serve calls at the served head move it: not a
// banned upstream's while another may serve, not a cordoned one's, and a fallback's
// only while no primary is healthy. Calls that must be at the served head go to
// upstreams that have it; were a banned primary or a fallback to report a block a
// moment before the healthy primaries, that moment's calls would go to the fallback.
// A banned upstream with no other beside it (the only node, back from a restart and
// not yet readmitted) is the only word on the chain: its heads count.
func (r *Router) observeHead(u *Upstream, header []byte) {
	n, ok := proto.ParseQuantity(proto.FirstMember(header, "number").Bytes(header))
	if !ok {
		return
	}
	hash := proto.FirstMember(header, "hash").Bytes(header)
	now := time.Now()
	u.health.setHead(n, now)
	if !u.onChain() {
		// Another chain's head (or one not proved yet) is not this chain's. Marked
		// before the second look, so that a proof landing between the two either is
		// seen here or sees the mark (chainAnswer) and has the head read again.
		u.headDropped.Store(true)
		if !u.onChain() {
			return
		}
	}
	r.headMu.Lock()
	defer r.headMu.Unlock()
	r.recent.add(hash, n)
	if st := u.health.State(); st == StateBanned && r.othersServe(u) || u.cordoned() || u.spec.Tier == TierFallback && r.healthyPrimary() {
		return
	}
	served := r.served.Load()
	switch {
	case !r.headKnown.Load() || n > served:
	case u == r.servedFrom && n == served && string(hash) != string(r.servedHash): // a reorg at the head
	case u == r.servedFrom && n < served && !r.anyAtLeast(served, u): // the chain itself went back
	default:
		return
	}
	r.served.Store(n)
	r.headKnown.Store(true)
	r.servedFrom, r.servedHash, r.servedAt = u, append(r.servedHash[:0], hash...), now
	r.m.servedHead.Store(n)
	if r.cfg.OnHead != nil {
		r.cfg.OnHead(header)
	}
}

// healthyPrimary reports whether a primary upstream is healthy.
func (r *Router) healthyPrimary() bool {
	for _, u := range r.set.Load().primaries {
		if u.health.State() == StateHealthy && u.onChain() && !u.spec.SendOnly {
			return true
		}
	}
	return false
}

// othersServe reports whether an upstream other than u may serve calls: on the chain,
// not banned, not cordoned, not a relay for sends.
func (r *Router) othersServe(u *Upstream) bool {
	for _, o := range r.set.Load().all {
		if o != u && o.health.State() != StateBanned && !o.cordoned() && o.onChain() && !o.spec.SendOnly {
			return true
		}
	}
	return false
}

// anyAtLeast reports whether an upstream other than except, not banned, has head ≥ n.
func (r *Router) anyAtLeast(n uint64, except *Upstream) bool {
	for _, u := range r.set.Load().all {
		if u != except && u.health.State() != StateBanned && u.onChain() && u.health.Head() >= n {
			return true
		}
	}
	return false
}

// recentBlock returns the number of a recent block by its (quoted) hash.
func (r *Router) recentBlock(hash []byte) (uint64, bool) {
	r.headMu.Lock()
	defer r.headMu.Unlock()
	return r.recent.get(hash)
}

// hashRing maps the hashes of the last heads seen to their numbers.
type hashRing struct {
	hashes [256][68]byte
	nums   [256]uint64
	next   int
}

func (h *hashRing) add(hash []byte, n uint64) {
	if len(hash) == 0 || len(hash) > 68 {
		return
	}
	if _, ok := h.get(hash); ok {
		return
	}
	h.hashes[h.next] = [68]byte{}
	copy(h.hashes[h.next][:], hash)
	h.nums[h.next] = n
	h.next = (h.next + 1) % len(h.nums)
}

func (h *hashRing) get(hash []byte) (uint64, bool) {
	if len(hash) == 0 || len(hash) > 68 {
		return 0, false
	}
	var k [68]byte
	copy(k[:], hash)
	for i := range h.hashes {
		if h.hashes[i] == k {
			return h.nums[i], true
		}
	}
	return 0, false
}

// reviewLoop re-evaluates every upstream's state, probes banned and idle ones, and
// keeps the state metrics.
func (r *Router) reviewLoop() {
	defer r.wg.Done()
	t := time.NewTicker(r.cfg.ReviewInterval)
	defer t.Stop()
	probing := map[*Upstream]bool{}
	done := make(chan *Upstream, 64)
	for {
		select {
		case <-r.stop:
			for len(probing) > 0 { // let probes under way finish
				delete(probing, <-done)
			}
			return
		case u := <-done:
			delete(probing, u)
			continue
		case <-t.C:
		}
		now := time.Now()
		r.review(now)
		r.subs.review()
		for _, u := range r.set.Load().all {
			if probing[u] {
				continue
			}
			banned := u.health.probeDue(now)
			idle := u.health.State() != StateBanned && !u.spec.SendOnly && // a relay is asked nothing but sends
				now.Sub(u.metrics.LastOK(TransportHTTP)) >= r.cfg.ProbeInterval &&
				now.Sub(u.metrics.LastOK(TransportWS)) >= r.cfg.ProbeInterval
			if banned || idle {
				probing[u] = true
				go func() {
					r.probe(u, banned)
					done <- u
				}()
			}
		}
	}
}

// review applies the head and latency rules to every upstream.
func (r *Router) review(now time.Time) {
	set := r.set.Load()
	var best uint64
	// Per method class: each is judged against the same class on the best upstream.
	var bestQ, hedgeWait [proto.NumClasses]time.Duration
	const q = 0.9
	for _, u := range set.all {
		if u.health.State() == StateBanned || !u.onChain() || u.spec.SendOnly {
			continue // another chain's head would make this chain's upstreams look behind
		}
		best = max(best, u.health.Head())
		for c := range proto.NumClasses {
			// Of enough answers only: a fallback serving a few probes on a machine stalled
			// for a moment would make every primary look slow (both banned at once).
			if uq := u.health.judgedQuantile(c, q, now); uq > 0 && (bestQ[c] == 0 || uq < bestQ[c]) {
				bestQ[c] = uq
			}
			if r.cfg.HedgeQuantile > 0 {
				if hq := u.health.Quantile(c, r.cfg.HedgeQuantile, now); hq > 0 && (hedgeWait[c] == 0 || hq < hedgeWait[c]) {
					hedgeWait[c] = hq
				}
			}
		}
	}
	for c := range hedgeWait {
		r.hedgeWait[c].Store(int64(hedgeWait[c]))
	}
	for _, u := range set.all {
		before := State(u.seen.Load())
		after := u.health.review(best, &bestQ, q, now)
		if before != after {
			r.stateChanged(u, before, after)
		}
	}
}

func (r *Router) stateChanged(u *Upstream, from, to State) {
	u.seen.Store(uint32(to))
	r.log.Warn("upstream state changed", "upstream", u.spec.Name, "from", from.String(), "to", to.String(),
		"reason", u.health.status(r.served.Load(), time.Now()).Reason)
	if to == StateBanned {
		r.m.failovers.Inc()
	}
}

// probe makes one cheap call on u: a banned upstream is readmitted after enough
// successes in a row; an idle one proves it still answers.
func (r *Router) probe(u *Upstream, banned bool) {
	if !u.gate.mayPoll(time.Now().UnixNano()) {
		return // out of its quota (gate.go)
	}
	before := u.health.State()
	if banned && r.cfg.ChainID != 0 {
		// Readmission asks the chain first: the node behind the URL may have changed
		// while it was out. An answer of another chain makes it wrong_chain (chain.go),
		// whatever its health says; no answer is a failed probe.
		got, err := r.askChain(u)
		r.chainAnswer(u, TransportHTTP, got, err)
		if err != nil {
			now := time.Now()
			u.health.probed(false, 0, err.Error(), now)
			if after := u.health.State(); after != before {
				r.stateChanged(u, before, after)
			}
			return
		}
	}
	var req proto.Request
	req.Set(methodBlockNumber, nil)
	start := time.Now()
	ans, err := r.poolCall(u, &req, start.Add(min(r.cfg.ProbeInterval, r.cfg.Pool.MaxConnWaitTimeout)))
	if banned {
		errText := ""
		if err != nil {
			errText = err.Error()
		}
		now := time.Now()
		u.health.probed(err == nil, now.Sub(start), errText, now)
		if after := u.health.State(); after != before {
			r.stateChanged(u, before, after)
		}
	}
	if err == nil {
		if n, ok := proto.ParseQuantity(proto.FirstMember(ans, "result").Bytes(ans)); ok && n > u.health.Head() && u.mux == nil && !u.spec.SendOnly {
			u.health.setHead(n, time.Now())
		}
	}
}
