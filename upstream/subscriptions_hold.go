// A logs group whose upstream subscription is renewed after a silence
// (router_stall.go) queries the logs it missed with eth_getLogs once the renewal is
// answered. The renewed subscription can push a log of a later block before that
// query's answer: delivered at once, it would go out before the older ones, and it
// would move the group's coverage past them, so the query would skip them. So from
// before the renewal until its backfill is delivered the group holds its live pushes
// (bounded in bytes), then delivers them, each log once.

package upstream

// maxHeldBytes bounds the pushes a logs group holds while a renewal is under way
// (about a round trip and two HTTP reads): past it a push is dropped and counted, as
// past a full delivery queue; the backfill still delivers the blocks it reaches.
const maxHeldBytes = 4 << 20

// hold has every logs group u carries hold its live pushes: u's subscriptions are
// about to be subscribed again. It returns them, for renewed or unhold.
func (s *Subscriptions) hold(u *Upstream) []*subGroup {
	s.mu.Lock()
	defer s.mu.Unlock()
	var held []*subGroup
	for _, g := range s.groups {
		if g.kind == kindLogs && g.carrier.Load() == u {
			g.holds.Add(1)
			held = append(held, g)
		}
	}
	return held
}

// renewed hears that the renewal of the groups held is answered, their upstream
// subscriptions silent from block from on: each queries the blocks since with
// eth_getLogs, as after a move, delivers the logs it has not delivered yet, then what
// it held.
func (s *Subscriptions) renewed(held []*subGroup, from uint64) {
	for _, g := range held {
		g.renewFrom.Store(from)
		g.backfill.Store(true)
		g.endHold()
	}
}

// unhold ends a hold whose renewal did not happen: the groups deliver what they held.
func (s *Subscriptions) unhold(held []*subGroup) {
	for _, g := range held {
		g.endHold()
	}
}

func (g *subGroup) endHold() {
	g.holds.Add(-1)
	select {
	case g.renewReq <- struct{}{}:
	default: // one is pending: it reads the newest state
	}
}

// pushed takes a live push of the group's upstream subscription: held while a
// renewal's backfill is due, else delivered (after the logs a lost socket missed,
// subscriptions_reconnect.go).
func (g *subGroup) pushed(d delivery) {
	if g.holding() {
		g.keep(d)
		return
	}
	g.afterReconnect()
	g.handle(d.result)
}

// holding reports whether a live push must wait for a renewal's backfill: a renewal
// holds the group, or one ended and its backfill has not run yet, or pushes are held
// already (they go out in order). The hold ends (renewed, on followHead's goroutine)
// before the group's goroutine runs the backfill (renewalEnded): a push taken in
// between, delivered at once, went out before the missed logs and moved coverTo past
// them, so the backfill skipped them. renewed sets backfill before it ends the hold,
// and only renewalEnded clears it.
func (g *subGroup) holding() bool {
	return g.holds.Load() > 0 || g.backfill.Load() || len(g.held) > 0
}

// keep holds a live push until the renewal's backfill is delivered.
func (g *subGroup) keep(d delivery) {
	if g.heldSize+len(d.result) > maxHeldBytes {
		g.s.r.m.subDrops.Inc()
		return
	}
	g.held = append(g.held, d)
	g.heldSize += len(d.result)
}

// renewalEnded runs on the group's goroutine when a renewal ended: the backfill it
// asked for, then, once no renewal holds the group any more, the pushes held, in the
// order they came; those the backfill delivered are not delivered again.
func (g *subGroup) renewalEnded() {
	if g.backfill.Swap(false) {
		g.backfillLogs(g.up, g.renewFrom.Load())
	}
	if g.holds.Load() > 0 {
		return
	}
	held := g.held
	g.held, g.heldSize = nil, 0
	for _, d := range held {
		g.handle(d.result)
	}
}
