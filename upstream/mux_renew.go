package upstream

import "time"

// Renewing subscriptions the provider went silent on. A provider (Infura does) can
// drop its subscriptions while the socket stays open: no close, no error, just no more
// notifications. The Mux cannot tell that from a quiet chain; the
// router can (router_stall.go: its HTTP head moves, the pushed one does not) and asks
// for a renewal here. The sockets are kept: closing one would fail the calls in flight
// on it (a socket loss answers them "upstream unavailable", and with one upstream there
// is nowhere to retry them), while a renewal touches no call.

// renewal counts the eth_subscribe a renewal sent that are not answered yet.
type renewal struct {
	left int
	done chan struct{} // closed when every one was answered (or its socket lost)
}

// renewed tells g's renewal, if any, that its eth_subscribe was answered. Called with
// subState.mu held.
func (g *group) renewed() {
	r := g.renewing
	if r == nil {
		return
	}
	g.renewing = nil
	if r.left--; r.left == 0 {
		close(r.done)
	}
}

// live reports whether the subscription of params is established upstream: answered,
// on a socket that is up, not being subscribed again.
func (m *Mux) live(params []byte) bool {
	st := &m.subs
	st.mu.Lock()
	defer st.mu.Unlock()
	g := st.groups[string(params)]
	return g != nil && g.upID != "" && !g.pending && g.slot.isUp.Load()
}

// renew subscribes again every subscription the Mux holds, each on the socket that
// carries it, through the reconnect's resubscribe path: the gateway ids stay, the old
// upstream ids are unsubscribed (if the provider still knew them, their notifications
// would come twice), and the time without them is counted as a resubscription's. The
// router saw the subscription of params go silent; the others are renewed with it, as
// nothing else would ever tell that they went silent too (a logs subscription on
// another socket has no head to compare), at the price of one eth_subscribe each. It
// returns the params of the subscriptions renewed and a channel closed once each was
// answered; none when the subscription of params is not live (a resubscribe is under
// way, or its socket is down: that path renews it).
func (m *Mux) renew(params []byte) (renewed []string, done <-chan struct{}) {
	st := &m.subs
	st.mu.Lock()
	defer st.mu.Unlock()
	if g := st.groups[string(params)]; g == nil || g.upID == "" || g.pending || !g.slot.isUp.Load() {
		return nil, nil
	}
	now := time.Now()
	r := &renewal{done: make(chan struct{})}
	var groups []*group
	for _, s := range m.slots {
		if !s.isUp.Load() {
			continue // a socket coming up resubscribes what it carried
		}
		for id, g := range s.subs {
			delete(s.subs, id)
			m.metrics.upstreamSubs.Add(-1)
			m.unsubscribeUpstream(s, id)
			g.upID, g.downSince = "", now
			groups = append(groups, g)
		}
		m.resubscribeLocked(s)
	}
	for _, g := range groups {
		renewed = append(renewed, string(g.params))
		if g.pending {
			g.renewing = r
			r.left++
		}
	}
	if r.left == 0 {
		close(r.done) // the sockets went down meanwhile: their reconnects resubscribe them
	}
	return renewed, r.done
}
