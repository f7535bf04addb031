// Client newHeads subscriptions with params of their own (["newHeads", {options}]) are
// upstream subscriptions of their own: the router's silence check (router_stall.go)
// watches only its own ["newHeads"], which the client groups of those params share. A
// provider that drops only such a subscription, or one on a socket other than the
// router's, would leave it silent for as long as the router's kept pushing. So each
// such group checks its own pushes against its upstream's head, which the router knows
// (pushed to it, or read over HTTP while silent): no read of its own.

package upstream

import (
	"bytes"
	"time"
)

// headSilence is what a newHeads group with params of its own knows of its pushes
// (nil for other groups). Owned by the group's goroutine.
type headSilence struct {
	// heard is the last head pushed, or u's head when it was (re)subscribed: every later
	// block should be pushed. heardAt is when; 0: not known yet.
	heard     uint64
	heardAt   time.Time
	checkedAt time.Time
	ahead     bool // the last check found u's head past heard
	// renewals counts renewals asked with no push since: each doubles the stall period,
	// so a provider that takes the subscription and never delivers costs little.
	renewals uint
}

// heardHead records a head the group's upstream subscription pushed.
func (g *subGroup) heardHead(n uint64) {
	if h := g.silence; h != nil {
		h.heard, h.heardAt, h.ahead, h.renewals = n, time.Now(), false, 0
	}
}

// rebaseHeads starts counting pushes from u's head: the group was subscribed on u, a
// provider whose renewals it has not tried yet. The first time it makes the group's
// headSilence, here rather than in Join: on the group's goroutine, not the client's,
// whose stack Join's frame would deepen.
func (g *subGroup) rebaseHeads(u *Upstream) {
	if g.kind != kindNewHeads || bytes.Equal(g.params, newHeadsParams) {
		return // the router's own params: checked with its head (router_stall.go)
	}
	if g.silence == nil {
		g.silence = new(headSilence)
	}
	h := g.silence
	h.heard, h.heardAt, h.ahead, h.renewals = u.health.Head(), time.Now(), false, 0
}

// checkSilence runs on each review while the group stays on its upstream u: once no
// head was pushed to it for u's stall period (nor checked), it compares its last push
// with u's head, by the router's rule (checkSilence in router_stall.go): two blocks
// past it, or past it on two checks in a row with no push between, means the
// subscription is dead, and u's followHead is asked to renew u's subscriptions. Pushes
// waiting in the group's queue are pushes: no check then.
func (g *subGroup) checkSilence() {
	h, u := g.silence, g.up
	if h == nil || u == nil || u.mux == nil {
		return
	}
	w := &u.watch
	w.mu.Lock()
	now := time.Now() // under w.mu: ordered against renewSilent's renewedAt
	interval, renewedAt, renewedHead := w.interval, w.renewedAt, w.renewedHead
	w.mu.Unlock()
	if renewedAt.After(h.heardAt) {
		// u's subscriptions, this one among them, were subscribed again since its last
		// push: every block after u's head then should be pushed.
		h.heard, h.heardAt, h.ahead = renewedHead, renewedAt, false
	}
	if now.Sub(maxTime(h.heardAt, h.checkedAt)) < stallPeriod(interval, g.s.r.cfg.HeadPoll, h.renewals) || g.in.pending() {
		return
	}
	h.checkedAt = now
	n := u.health.Head()
	if h.heard == 0 {
		h.heard = n // u's head was not known when it was subscribed: from here on
		return
	}
	renew := n >= h.heard+2 || n > h.heard && h.ahead
	h.ahead = n > h.heard && !renew
	if !renew {
		return
	}
	if !u.mux.live(g.params) {
		// Being subscribed again (a reconnect, a refusal's retry): that path closes the
		// gap; pushes count from now.
		h.heard, h.heardAt, h.ahead = n, now, false
		return
	}
	h.renewals++
	select {
	case w.silentGroups <- silentGroup{params: g.params, heard: h.heard, at: now}:
	default: // a renewal is asked already: it renews every subscription on u
	}
}

// pending reports whether notifications wait to be handled.
func (d *deliveries) pending() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.q) > 0
}
