package upstream

import (
	"sync"
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
)

// Silent subscriptions. While its socket is up, an upstream's head comes from its
// newHeads subscription alone (followHead). A provider can drop that subscription, and
// every other one on the socket, without closing the socket (Infura does when the node
// behind it changes): the head would freeze, with it the per-head cache, the routing
// of latest and every client subscription on the socket, and nothing would say so. So
// while no head is pushed for a stall period the head is read over HTTP; when the
// chain moved on without a push, its subscriptions are renewed (mux_renew.go).

// newHeadsParams is the head subscription's params, shared with any client newHeads
// group whose canonical params are the same: one upstream subscription for both.
var newHeadsParams = []byte(`["newHeads"]`)

// maxStall caps the stall period: a chain with a slow or unknown block interval (no
// two heads pushed yet; a dev chain making blocks only for transactions) costs one
// HTTP read a minute while silent, and a dead subscription is found within a minute or
// two.
const maxStall = time.Minute

// headWatch is what followHead knows of u's pushed heads.
type headWatch struct {
	mu sync.Mutex
	// known is the last head pushed, or the head read when the subscription was
	// (re)established: every later block should be pushed. knownAt is when; based says
	// known was set at all.
	known   uint64
	knownAt time.Time
	based   bool
	// pushedHead is the last head actually pushed (0: none): unlike known, never set
	// from an HTTP read, so a silent or stalled socket leaves it where its pushes ended.
	pushedHead uint64
	// interval is the time per block between pushes (a moving average; 0: unknown).
	interval time.Duration
	// checkedAt is the last silence check; ahead says it found HTTP ahead of known.
	checkedAt time.Time
	ahead     bool
	// renewals counts renewals with no push since: each doubles the stall period (up to
	// maxStall), so a provider that never delivers costs little.
	renewals uint
	// renewedAt is when u's subscriptions were last subscribed again (renewSilent), with
	// renewedHead its head then: a newHeads group of its own params pushed nothing since
	// counts its pushes from there (subscriptions_silent.go).
	renewedAt   time.Time
	renewedHead uint64
	// silentGroups carries the newHeads groups of their own params found silent on u
	// to followHead, which owns u's renewals (one at a time: a renewal renews them all).
	silentGroups chan silentGroup
}

// pushed records a head the newHeads subscription delivered.
func (w *headWatch) pushed(header []byte, now time.Time) {
	n, ok := proto.ParseQuantity(proto.FirstMember(header, "number").Bytes(header))
	if !ok {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.based && n > w.known && !w.knownAt.IsZero() {
		per := now.Sub(w.knownAt) / time.Duration(n-w.known)
		if w.interval == 0 {
			w.interval = per
		} else {
			w.interval += (per - w.interval) / 4
		}
	}
	w.known, w.knownAt, w.based = n, now, true
	w.ahead, w.renewals = false, 0
	w.pushedHead = n
}

// lastPushed is the last head u's newHeads subscription pushed (0: none yet).
func (w *headWatch) lastPushed() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pushedHead
}

// rebase records n, read over HTTP at the start of a subscription (or while there is
// none), as the head from which every block should be pushed: unless a head was
// pushed since the read started (then that one is newer).
func (w *headWatch) rebase(n uint64, start, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.based && w.knownAt.After(start) {
		return
	}
	w.known, w.knownAt, w.based, w.ahead = n, now, true, false
}

// stall is how long no push may last before the head is read over HTTP: three block
// intervals (a missed slot or two is no silence), at least two head polls, at most
// maxStall, doubled per renewal that brought no push back.
func (w *headWatch) stallLocked(poll time.Duration) time.Duration {
	return stallPeriod(w.interval, poll, w.renewals)
}

// stallPeriod is the stall period for a block interval (0: unknown), head polls of poll
// and renewals that brought no push back.
func stallPeriod(interval, poll time.Duration, renewals uint) time.Duration {
	d := maxStall
	if interval > 0 {
		d = min(3*interval, maxStall)
	}
	ceiling := max(maxStall, 2*poll)
	return min(max(d, 2*poll)<<min(renewals, 6), ceiling)
}

// rebaseHead reads u's head over HTTP as the base its pushes continue from.
func (r *Router) rebaseHead(u *Upstream) {
	start := time.Now()
	if n, ok := r.pollHead(u); ok {
		u.watch.rebase(n, start, time.Now())
	}
}

// checkSilence runs on each head poll tick while u's socket carries its newHeads
// subscription: once no head was pushed for a stall period (nor checked), it reads the
// head over HTTP, which also repairs u's head, and renews the socket's subscriptions
// when the chain moved on without them.
//
// The rule: HTTP at least two blocks past the last push, or past it on two checks in a
// row with no push between. A push in flight when the HTTP answer is read can explain
// one block: the node answers HTTP as soon as it has the block and pushes it a moment
// later. It cannot explain two (the earlier block's push is a whole block interval
// late, after a stall period of at least three), nor one block still unpushed a stall
// period later (a push takes a round trip, not seconds). The second case is what finds
// a dead subscription on a chain slower than the stall period.
func (r *Router) checkSilence(u *Upstream) {
	w := &u.watch
	start := time.Now()
	w.mu.Lock()
	due := start.Sub(maxTime(w.knownAt, w.checkedAt)) >= w.stallLocked(r.cfg.HeadPoll)
	w.mu.Unlock()
	if !due {
		return
	}
	n, ok := r.pollHead(u)
	w.mu.Lock()
	w.checkedAt = time.Now()
	if !ok || w.knownAt.After(start) { // no answer, or a push came meanwhile: not silent
		w.mu.Unlock()
		return
	}
	if !w.based {
		w.known, w.knownAt, w.based = n, w.checkedAt, true
		w.mu.Unlock()
		return
	}
	known := w.known
	renew := n >= known+2 || n > known && w.ahead
	w.ahead = n > known && !renew
	w.mu.Unlock()
	if renew {
		r.renewSilent(u, newHeadsParams, known, n)
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// renewSilent renews u's subscriptions, which the provider stopped delivering: params
// is the one found silent (the router's newHeads, or a client group's with params of
// its own), known its last pushed head, n u's head. Once they are answered the logs
// groups among them query what they missed (subscribed again first, so that no block
// falls between the query and the new subscription), holding their live pushes from
// before the renewal until then, so that the older logs go first. Head groups need
// nothing more: their next head is past a gap, which they backfill in order.
func (r *Router) renewSilent(u *Upstream, params []byte, known, n uint64) {
	// Held from before the renewal: a renewed logs subscription may push a later log
	// before the backfill is answered (subscriptions_hold.go).
	held := r.subs.hold(u)
	u.mux.probeAll() // nothing back on the socket at all: its route is dead, not the subscriptions
	renewed, done := u.mux.renew(params)
	if done == nil {
		r.subs.unhold(held)
		return // not live any more: a reconnect or a resubscribe is under way
	}
	u.metrics.silentSubs.Inc()
	r.log.Warn("upstream websocket subscriptions went silent with the socket open: subscribing again",
		"upstream", u.spec.Name, "silent", string(params), "pushed_head", known, "http_head", n, "subscriptions", len(renewed))
	w := &u.watch
	w.mu.Lock()
	if string(params) == string(newHeadsParams) {
		w.known, w.knownAt, w.ahead = n, time.Now(), false
		w.renewals++
	}
	// After the renewal, under w.mu: a group's check that read the watch before it is
	// older than renewedAt, and its request is dropped (renewGroup); one after it counts
	// its pushes from here.
	w.renewedAt, w.renewedHead = time.Now(), n
	w.mu.Unlock()
	t := time.NewTimer(r.cfg.Mux.RequestTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C: // not answered in time: the socket's deadline sweep fails them; the query is harmless
	case <-u.stop:
		r.subs.unhold(held)
		return
	}
	// The blocks made while they were being subscribed again were pushed to nobody:
	// the query reaches the head as it is now, read once more.
	r.pollHead(u)
	r.subs.renewed(held, known)
}

// silentGroup is a client newHeads group with params of its own that pushed nothing
// from head heard on while u's head moved on, as its check found at at.
type silentGroup struct {
	params []byte
	heard  uint64
	at     time.Time
}

// renewGroup renews u's subscriptions for a silent group, unless they were renewed
// since its check (that renewal covered it) or its subscription is not live (a
// resubscribe is under way).
func (r *Router) renewGroup(u *Upstream, q silentGroup) {
	w := &u.watch
	w.mu.Lock()
	stale := !q.at.After(w.renewedAt)
	w.mu.Unlock()
	if !stale {
		r.renewSilent(u, q.params, q.heard, u.health.Head())
	}
}
