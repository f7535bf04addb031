// A logs subscription that stays on its upstream through a lost socket (one upstream,
// or none better to move to) is sent again by the Mux on the socket that comes back:
// its gateway id stays, but the logs of the blocks made while it was away were pushed
// to nobody. Heads close such a gap themselves (the next head is past it); a logs group
// asks for what it missed with eth_getLogs once its subscription is live again, before
// it delivers the next log, as after a move.

package upstream

// socketLost records where u's pushes ended when a socket of u was lost with
// subscriptions on it (Mux OnDown: under the Mux's lock, so no call to it here).
func (u *Upstream) socketLost() { u.downHead.Store(u.pushedHead()) }

// pushedHead is where u's subscriptions' logs are known delivered up to: the last head
// its newHeads subscription pushed, not its head, which moves on over HTTP while a
// silent or lost socket pushes nothing (those blocks' logs are due); its head when none
// was pushed (it came over HTTP alone), or when that is lower.
func (u *Upstream) pushedHead() uint64 {
	n := u.health.Head()
	if p := u.watch.lastPushed(); p > 0 {
		n = min(n, p)
	}
	return n
}

// afterReconnect runs on the group's goroutine before each live log it delivers and on
// each review: once a loss of its upstream's sockets is known and its subscription is
// live again, it reads the head (the blocks made while it was subscribed again were
// pushed to nobody) and queries the logs since the last head pushed before the loss,
// delivering those it has not delivered, in block order, before the newer ones.
func (g *subGroup) afterReconnect() {
	u := g.up
	if g.kind != kindLogs || u == nil || u.mux == nil {
		return
	}
	n := u.mux.downs.Load()
	if n == g.downs || !u.mux.live(g.params) {
		return
	}
	g.downs = n
	g.s.r.pollHead(u)
	g.backfillLogs(u, u.downHead.Load())
}
