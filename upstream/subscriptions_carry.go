// Carrying a subscription group: each group's goroutine (run), the choice of the
// upstream that carries it (canCarry, pickCarrier), subscribing it there and answering
// the clients that waited (establish, attach), and moving it when that upstream can no
// longer carry it.

package upstream

import (
	"bytes"
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
)

// canCarry reports whether u may carry a subscription: not banned, not lagging, its
// socket up, on the router's chain, not cordoned, not send-only.
func canCarry(u *Upstream) bool {
	return u != nil && !u.spec.SendOnly && u.mux != nil && u.mux.Up() && u.health.State() == StateHealthy &&
		u.servesChain(TransportWS) && !u.cordoned()
}

// pickCarrier chooses the upstream for a group: a healthy one with its socket up,
// primaries first, the least loaded of two; one whose sockets are under a probe (a
// call on it timed out: its route may be dead) only when nobody else can.
func (s *Subscriptions) pickCarrier(exclude *Upstream) *Upstream {
	set := s.r.set.Load()
	for _, tier := range [2][]*Upstream{set.primaries, set.fallbacks} {
		var best *Upstream
		for _, u := range tier {
			if u == exclude || !canCarry(u) || u.health.Head() < s.r.served.Load() || u.mux.Suspect() {
				continue
			}
			if best == nil || score(u, proto.ClassCheap) < score(best, proto.ClassCheap) {
				best = u
			}
		}
		if best != nil {
			return best
		}
	}
	// Nobody at the served head: the best carrier behind it (backfill closes the gap),
	// then a suspect one.
	for _, suspect := range [2]bool{false, true} {
		for _, tier := range [2][]*Upstream{set.primaries, set.fallbacks} {
			for _, u := range tier {
				if u != exclude && canCarry(u) && (suspect || !u.mux.Suspect()) {
					return u
				}
			}
		}
	}
	return nil
}

// run is the group's goroutine: it establishes the group on an upstream, delivers its
// notifications and moves it when its upstream can no longer carry it.
func (g *subGroup) run(deadline time.Time) {
	defer close(g.done)
	defer g.detach()
	if !g.establish(deadline) {
		return
	}
	var batch []delivery
	for {
		select {
		case <-g.stop:
			return
		case <-g.in.ready:
			batch = g.in.take(batch)
			for _, d := range batch {
				if d.gen == g.gen {
					g.pushed(d) // subscriptions_hold.go
				}
			}
			if cap(batch) > 64 {
				batch = nil // a burst's array is not kept by an idle group
			}
		case <-g.moveReq:
			if !canCarry(g.up) || g.s.r.removed(g.up) {
				g.move()
			} else {
				g.checkSilence() // subscriptions_silent.go
				g.afterReconnect()
			}
		case <-g.renewReq:
			g.renewalEnded()
		}
	}
}

// establish subscribes the group on a first upstream and answers the waiters.
func (g *subGroup) establish(deadline time.Time) bool {
	if deadline.IsZero() {
		deadline = time.Now().Add(g.s.r.cfg.Mux.RequestTimeout)
	}
	var lastErr error = errNoUpstream
	var tried []*Upstream
	provider := false // an upstream refused it for its rate, quota or key
	for time.Now().Before(deadline) {
		u := g.s.pickCarrierNot(tried)
		if u == nil && provider {
			break // every carrier tried: the gateway's refusal (finalError), not a wait
		}
		if u == nil {
			// Nobody can carry it now (sockets still connecting, every upstream down):
			// wait for the next review's news until the client's deadline; but with no
			// socket up anywhere that has been up before (the nodes are down, not
			// starting), only one review, then fail fast as calls do.
			tried = tried[:0]
			outage := g.s.r.socketsDown()
			select {
			case <-g.stop:
				return false
			case <-time.After(g.s.r.cfg.ReviewInterval):
			}
			if outage && g.s.r.socketsDown() {
				break
			}
			continue
		}
		tried = append(tried, u)
		// One attempt ends a reserve before the client's deadline, as a read's does: a
		// blackholed upstream would otherwise take the whole of it, with a healthy one
		// beside it never asked.
		err := g.attach(u, g.s.r.attemptDeadline(deadline, true))
		if err == nil {
			g.answerWaiters(nil)
			return true
		}
		lastErr = err
		if ref, refused := AsRefused(err); refused {
			if pe := providerRefusal(ref.Class); pe != nil {
				// The provider's rate, quota or key, not the params: noted as a call's
				// refusal would be, and the next upstream is asked.
				g.s.r.noteAnswer(u, ref.Class, ref.Backoff)
				lastErr, provider = pe, true
				continue
			}
			break // the params are the problem, not the upstream
		}
	}
	if lastErr == errNoUpstream {
		lastErr = g.s.r.noUpstream(TransportWS)
	}
	g.answerWaiters(g.s.r.finalError(lastErr, TransportWS))
	return false
}

// pickCarrierNot chooses an upstream for a new group among those not tried yet: one
// whose gate is open (not throttled, not out of quota) and whose sockets are not under
// a probe first, primaries first.
func (s *Subscriptions) pickCarrierNot(tried []*Upstream) *Upstream {
	set := s.r.set.Load()
	var gated *Upstream
	for _, u := range append(append([]*Upstream(nil), set.primaries...), set.fallbacks...) {
		skip := !canCarry(u)
		for _, t := range tried {
			skip = skip || t == u
		}
		switch {
		case skip:
		case u.gate.open() && !u.mux.Suspect(): // under a probe: its route may be dead
			return u
		case gated == nil:
			gated = u
		}
	}
	return gated
}

// answerWaiters answers the clients that asked before the group was live: the gateway
// id, or the error (the upstream's own refusal, or the gateway's).
func (g *subGroup) answerWaiters(err error) {
	s := g.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		for _, w := range s.roster.confirm(g) {
			w.sink.Reply(appendSubResult(nil, w.id, g.gwQuoted))
		}
		g.live = true
	} else {
		for _, w := range s.roster.refuse(g) {
			if r, ok := AsRefused(err); ok {
				w.sink.Reply(appendErrorReply(nil, w.id, r.Error, proto.Span{Start: 0, End: len(r.Error)}))
			} else {
				w.sink.Reply(proto.AppendError(nil, w.id, asProtoError(err)))
			}
		}
	}
	s.maybeEndLocked(g)
}

// attach subscribes the group on u by deadline (zero: the Mux's request timeout);
// deliveries of this generation flow into g.in.
func (g *subGroup) attach(u *Upstream, deadline time.Time) error {
	g.gen++
	gen := g.gen
	g.downs = u.mux.downs.Load() // before: a loss while subscribing is one to close
	unsub, err := u.mux.SubscribeBy(g.params, deadline, func(result []byte) {
		if !g.in.push(delivery{gen: gen, result: bytes.Clone(result)}) {
			g.s.r.m.subDrops.Inc() // the group is far behind; backfill covers heads
		}
	})
	if err != nil {
		return err
	}
	g.up, g.unsub = u, unsub
	g.carrier.Store(u)
	g.rebaseHeads(u)
	return nil
}

func (g *subGroup) detach() {
	if g.unsub != nil {
		g.unsub()
		g.unsub = nil
	}
}

// move carries the group over to another upstream, then closes the gap for its kind.
func (g *subGroup) move() {
	old := g.up
	for attempt := 0; ; attempt++ {
		u := g.s.pickCarrier(old)
		if u == nil {
			if old != nil && canCarry(old) {
				return // nowhere better to go
			}
			// Nowhere to go: wait for the next review.
			return
		}
		oldHead := uint64(0)
		if old != nil {
			oldHead = old.pushedHead()
		}
		g.detach()
		if err := g.attach(u, time.Time{}); err != nil {
			if ref, ok := AsRefused(err); ok && providerRefusal(ref.Class) != nil {
				g.s.r.noteAnswer(u, ref.Class, ref.Backoff) // its rate, quota or key
			}
			g.s.r.log.Warn("cannot move a subscription", "subscription", g.gwID, "to", u.spec.Name, "err", err)
			if attempt >= 2 {
				return
			}
			continue
		}
		g.s.r.m.subMoves.Inc()
		g.s.r.log.Info("subscription moved", "subscription", g.gwID, "from", nameOf(old), "to", u.spec.Name)
		if g.kind == kindLogs {
			g.backfillLogs(u, oldHead)
		}
		return // newHeads: the next head from the new upstream triggers the backfill
	}
}

func nameOf(u *Upstream) string {
	if u == nil {
		return ""
	}
	return u.spec.Name
}
