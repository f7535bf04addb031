// The chain-id check (RouterConfig.ChainID): an upstream serves only once it answered
// eth_chainId with the router's chain, per transport. HTTP is asked at start (Start
// waits for the first answers, at most ChainWait), again every ProbeInterval while it
// has not proved its chain, before a banned upstream is readmitted, and on reload; each
// websocket asks on its own socket as it connects and carries nothing until it proved
// it (mux_conn.go). An answer of another chain on either transport makes the upstream
// wrong_chain: never picked, never carrying a subscription, its heads ignored, until
// both transports answer the right chain again. There is no fallback to another chain:
// with no upstream of the chain the router answers errNoChain (503).

package upstream

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
)

// DefaultChainWait bounds Start's wait for the first eth_chainId answers when
// RouterConfig.ChainWait is 0: long enough for a remote provider's handshake, short
// enough that a dead upstream does not hold the gateway's start for long.
const DefaultChainWait = 10 * time.Second

// What an upstream proved, as bits of chainCheck.bits.
const (
	chainOnHTTP uint32 = 1 << TransportHTTP // its HTTP endpoint answered the chain
	chainOnWS   uint32 = 1 << TransportWS   // one of its sockets answered the chain
	chainWrong  uint32 = 1 << 2             // an answer on either transport was another chain
)

// chainCheck is one upstream's chain verdict.
type chainCheck struct {
	bits atomic.Uint32 // read on every pick: what the upstream proved
	seen atomic.Uint64 // the chain id on /status and metrics: the wrong one while wrong
	mu   sync.Mutex    // orders answers, for the verdict and its log lines
	last [numTransports]uint64

	first   chan struct{} // closed when the first HTTP check ended, answered or not
	once    sync.Once
	recheck chan struct{} // asks the HTTP check loop to ask again now
}

var methodChainID = []byte("eth_chainId")

// Errors of a socket that has not proved its chain (mux_conn.go): it is closed and
// dialed again after a backoff.
var (
	errWrongChain    = errors.New("upstream answers another chain")
	errChainUnproven = errors.New("upstream did not answer eth_chainId")
)

// initChain sets u's verdict before it starts: proved on both transports when there is
// no check, nothing proved otherwise.
func (r *Router) initChain(u *Upstream) {
	if r.cfg.ChainID == 0 {
		u.chain.bits.Store(chainOnHTTP | chainOnWS)
		return
	}
	u.chain.first = make(chan struct{})
	u.chain.recheck = make(chan struct{}, 1)
}

// servesChain reports whether u may take a call over via: it proved the chain there
// and answered no other. One atomic load: it is on every pick.
func (u *Upstream) servesChain(via Transport) bool {
	b := u.chain.bits.Load()
	return b&chainWrong == 0 && b&(1<<via) != 0
}

// onChain reports whether u proved the chain on a transport and answered no other: its
// heads count, it may be the best head.
func (u *Upstream) onChain() bool {
	b := u.chain.bits.Load()
	return b&chainWrong == 0 && b&(chainOnHTTP|chainOnWS) != 0
}

// wrongChain reports whether u answered another chain.
func (u *Upstream) wrongChain() bool { return u.chain.bits.Load()&chainWrong != 0 }

// chainAnswer records what u answered over via: its chain id, or err when it did not
// answer one (an error says nothing about the chain: the last answer stands). It logs
// each change of verdict once.
func (r *Router) chainAnswer(u *Upstream, via Transport, got uint64, err error) {
	want := r.cfg.ChainID
	if want == 0 || err != nil {
		return
	}
	c := &u.chain
	c.mu.Lock()
	before := c.bits.Load()
	c.last[via] = got
	var bits uint32
	seen := want
	for t, id := range c.last {
		switch {
		case id == want:
			bits |= 1 << t
		case id != 0:
			bits |= chainWrong
			seen = id
		}
	}
	c.bits.Store(bits)
	c.seen.Store(seen)
	c.mu.Unlock()
	if bits&chainWrong == 0 && bits&(chainOnHTTP|chainOnWS) != 0 && u.headDropped.Swap(false) {
		// A head read before the proof moved nothing, and a node making no block
		// would not report it again: read it once more.
		u.checkHead()
	}
	switch wasWrong, wrong := before&chainWrong != 0, bits&chainWrong != 0; {
	case wrong && !wasWrong:
		r.log.Warn("upstream answers another chain: it serves nothing", "upstream", u.spec.Name,
			"chain_id", got, "want", want, "transport", via.String())
	case !wrong && wasWrong:
		r.log.Warn("upstream answers its chain again", "upstream", u.spec.Name, "chain_id", want)
	case !wrong && before&(chainOnHTTP|chainOnWS) == 0:
		r.log.Info("upstream chain id checked", "upstream", u.spec.Name, "chain_id", want, "transport", via.String())
	}
}

// askChain asks u's HTTP endpoint for its chain id.
func (r *Router) askChain(u *Upstream) (uint64, error) {
	var req proto.Request
	req.Set(methodChainID, nil)
	ans, err := r.poolCall(u, &req, time.Now().Add(r.cfg.Pool.MaxConnWaitTimeout))
	if err != nil {
		return 0, fmt.Errorf("eth_chainId: %w", err)
	}
	return parseChainID(ans)
}

// parseChainID reads the chain id of an eth_chainId answer: a JSON object whose result
// is a hex quantity above 0. Not the hot path: encoding/json reads it, and an answer
// the gateway's own scanner (first member) would read otherwise, such as a duplicated
// result, is refused as ambiguous.
func parseChainID(ans []byte) (uint64, error) {
	var v struct {
		Result *string `json:"result"`
	}
	if err := json.Unmarshal(ans, &v); err == nil && v.Result != nil {
		if n, ok := proto.ParseQuantity(proto.FirstMember(ans, "result").Bytes(ans)); ok && n != 0 &&
			strings.HasPrefix(*v.Result, "0x") {
			if m, err := strconv.ParseUint((*v.Result)[2:], 16, 64); err == nil && m == n {
				return n, nil
			}
		}
	}
	if len(ans) > 200 {
		ans = ans[:200]
	}
	return 0, fmt.Errorf("eth_chainId answered %q", ans)
}

// checkChain is u's HTTP check loop: it asks at once, again after a backoff while the
// answer fails, every ProbeInterval while the chain is wrong (an upstream that was
// fixed comes back), and whenever recheck asks (reload).
func (r *Router) checkChain(u *Upstream) {
	defer u.done.Done()
	const backoffMin = 100 * time.Millisecond
	backoff := backoffMin
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		got, err := r.askChain(u)
		r.chainAnswer(u, TransportHTTP, got, err)
		u.chain.once.Do(func() { close(u.chain.first) })
		t.Stop()
		switch {
		case err != nil:
			t.Reset(backoff)
			backoff = min(2*backoff, max(r.cfg.ProbeInterval, backoffMin))
		case got != r.cfg.ChainID:
			backoff = backoffMin
			t.Reset(r.cfg.ProbeInterval)
		default:
			backoff = backoffMin // proved: asked again on a recheck only
		}
		select {
		case <-u.stop:
			return
		case <-u.chain.recheck:
		case <-t.C:
		}
	}
}

// recheckChain has u's check loop ask again now.
func (u *Upstream) recheckChain() {
	select {
	case u.chain.recheck <- struct{}{}:
	default:
	}
}

// waitChain waits until the first HTTP check of each of ups ended, at most ChainWait.
func (r *Router) waitChain(ups []*Upstream) {
	if r.cfg.ChainID == 0 || len(ups) == 0 {
		return
	}
	wait := r.cfg.ChainWait
	if wait <= 0 {
		wait = DefaultChainWait
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	for _, u := range ups {
		select {
		case <-u.chain.first:
		case <-t.C:
			r.log.Warn("upstream chain ids not all checked: the unchecked serve nothing until they answer",
				"chain_id", r.cfg.ChainID, "waited", wait)
			return
		}
	}
}

// sockets reports whether an upstream socket is up, and whether the websocket tier has
// started: some upstream has sockets, and each such one has had one up.
func (r *Router) sockets() (up, started bool) {
	started = true
	muxes := 0
	for _, u := range r.set.Load().all {
		if u.mux == nil {
			continue
		}
		muxes++
		up = up || u.mux.Up()
		started = started && u.mux.beenUp()
	}
	return up, started && muxes > 0
}

// socketsDown reports an outage of the websocket tier: no upstream socket is up, and
// every upstream with sockets has had one up before (the nodes are down, not starting).
func (r *Router) socketsDown() bool {
	up, started := r.sockets()
	return !up && started
}

// noUpstream is the error of a call no upstream was picked for: ErrUnreachable over the
// websocket when no upstream socket is up; errNoChain when no upstream has proved the
// chain over via (every one wrong or unchecked); errNoUpstream otherwise.
func (r *Router) noUpstream(via Transport) error {
	if via == TransportWS {
		// No shared socket up (the node is down or restarting): the upstream is
		// unreachable, as a refused dial is on HTTP, not busy or missing. Unless the
		// sockets are down because the nodes answered another chain: then the
		// answer is errNoChain, as on HTTP.
		if up, _ := r.sockets(); !up && !r.offChain(via) {
			return proto.ErrUnreachable
		}
	}
	if r.cfg.ChainID == 0 {
		return errNoUpstream
	}
	for _, u := range r.set.Load().all {
		if u.servesChain(via) {
			return errNoUpstream
		}
	}
	return r.errNoChain
}

// offChain reports whether the router checks a chain, some upstream answered another
// one, and none has proved it over via.
func (r *Router) offChain(via Transport) bool {
	if r.cfg.ChainID == 0 {
		return false
	}
	wrong := false
	for _, u := range r.set.Load().all {
		if u.servesChain(via) {
			return false
		}
		wrong = wrong || u.wrongChain()
	}
	return wrong
}

// newErrNoChain is the answer of a router with no upstream of its chain.
func newErrNoChain(id uint64) *proto.Error {
	return proto.NewError(proto.CodeServer, 503, fmt.Sprintf(
		"no upstream of chain %d: every configured upstream answers another chain id or has not answered eth_chainId yet", id))
}

// chainStatus overrides st for /status: wrong_chain, or unchecked before a first proof.
func (r *Router) chainStatus(u *Upstream, st *UpstreamStatus) {
	if r.cfg.ChainID == 0 {
		return
	}
	st.ChainID = u.chain.seen.Load()
	switch {
	case u.wrongChain():
		st.State = "wrong_chain"
		st.Reason = fmt.Sprintf("answers chain id %d, want %d", st.ChainID, r.cfg.ChainID)
	case !u.onChain():
		st.State = "unchecked"
		st.Reason = fmt.Sprintf("has not answered eth_chainId %d yet", r.cfg.ChainID)
	}
}
