package upstream

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
)

// Tier says when an upstream gets traffic: fallbacks only when no primary can take it.
type Tier uint8

const (
	TierPrimary Tier = iota
	TierFallback
)

func (t Tier) String() string {
	if t == TierFallback {
		return "fallback"
	}
	return "primary"
}

// Spec is one upstream as configured.
type Spec struct {
	Name     string
	HTTPURL  string
	WSURL    string // optional: without it the upstream serves HTTP calls only
	User     string // basic auth (Infura: empty user, the project secret as password)
	Password string
	Tier     Tier
	// Weight scales the upstream's share of traffic among equals (default 1).
	Weight int
	// MaxInFlight caps the calls the gateway has outstanding on it at once (0: no cap
	// beyond the pool's connections and the socket queues).
	MaxInFlight int
	// Allow, when not empty, lists the only methods (names, or prefixes ending in _)
	// sent to it; Deny lists methods never sent to it.
	Allow, Deny []string
	// Archive says it serves state of old blocks (deeper than ArchiveDepth).
	Archive bool
}

// RouterConfig configures a Router. Every value is required (the defaults live in the
// gateway's Config): Pool and Mux are templates whose URL, credentials and metrics the
// router fills per upstream.
type RouterConfig struct {
	Health HealthConfig
	Pool   PoolConfig
	Mux    MuxConfig
	// Retries is how many more upstreams a failed read is tried on.
	Retries int
	// HedgeQuantile, when above 0, sends a read to a second upstream once the first has
	// taken longer than its latency quantile; HedgeMaxExtra caps hedged calls as a
	// share of all reads.
	HedgeQuantile float64
	HedgeMaxExtra float64
	// ArchiveDepth: a block this far below the served head needs an archive upstream.
	ArchiveDepth uint64
	// ProbeInterval: an upstream with no answer for this long gets one cheap call, and a
	// banned upstream is probed this often once its ban is over.
	ProbeInterval time.Duration
	// HeadPoll is how often an upstream without a websocket is asked for its head.
	HeadPoll time.Duration
	// ReviewInterval is how often states are re-evaluated.
	ReviewInterval time.Duration
	Registry       *Registry
	Logger         *slog.Logger
	// OnHead is called with the header of every new served head (a block number that
	// never decreases unless the chain itself goes back). It must not block.
	OnHead func(header []byte)
}

// Upstream is one configured upstream: its HTTP pool, its websocket Mux (nil without
// a websocket URL) and its health.
type Upstream struct {
	spec     Spec
	key      string // the spec, for reloads: unchanged specs keep their connections
	pool     *Pool
	mux      *Mux
	health   *Health
	metrics  *Metrics
	inFlight atomic.Int32
	allow    proto.MethodSet
	deny     proto.MethodSet
	stop     chan struct{}
	done     sync.WaitGroup
}

// Name returns the upstream's configured name.
func (u *Upstream) Name() string { return u.spec.Name }

// Spec returns the upstream's configuration.
func (u *Upstream) Spec() Spec { return u.spec }

// Mux returns the upstream's websocket Mux, nil without one.
func (u *Upstream) Mux() *Mux { return u.mux }

// Health returns the upstream's health.
func (u *Upstream) Health() *Health { return u.health }

func (u *Upstream) allows(name []byte) bool {
	if !u.allow.Empty() && !u.allow.Has(name) {
		return false
	}
	return !u.deny.Has(name)
}

// upstreamSet is the router's current upstreams; a reload swaps it whole.
type upstreamSet struct {
	all       []*Upstream
	primaries []*Upstream
	fallbacks []*Upstream
}

// Router spreads calls over several upstreams by health, tier, head and load, retries
// reads that failed on another upstream, hedges slow reads when configured, and keeps
// the served head from ever going backwards when traffic moves between upstreams.
type Router struct {
	cfg RouterConfig
	log *slog.Logger
	set atomic.Pointer[upstreamSet]

	headMu     sync.Mutex
	served     atomic.Uint64
	headKnown  atomic.Bool
	servedFrom *Upstream
	servedHash []byte
	servedAt   time.Time
	recent     hashRing // recent block hashes to numbers, for "by a hash seen at N"

	reads, hedged atomic.Int64
	// hedgeWait is how long a read of each method class waits before it is hedged
	// (nanoseconds): the hedge quantile of the class on the fastest upstream not banned,
	// updated by every review.
	hedgeWait [proto.NumClasses]atomic.Int64
	m         routerMetrics
	subs      *Subscriptions

	reloadMu sync.Mutex
	stop     chan struct{}
	wg       sync.WaitGroup
	closed   atomic.Bool
}

// NewRouter builds the upstreams of specs; Start connects them.
func NewRouter(cfg RouterConfig, specs []Spec) (*Router, error) {
	if len(specs) == 0 {
		return nil, errors.New("no upstream configured")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Registry == nil {
		return nil, errors.New("router: no metrics registry")
	}
	r := &Router{cfg: cfg, log: cfg.Logger, stop: make(chan struct{})}
	r.m.init(cfg.Registry)
	r.subs = newSubscriptions(r)
	set, err := r.build(specs, nil)
	if err != nil {
		return nil, err
	}
	r.set.Store(set)
	return r, nil
}

// specKey identifies a spec for reloads. It holds secrets: never printed.
func specKey(s Spec) string {
	return fmt.Sprintf("%q|%q|%q|%q|%q|%d|%d|%d|%q|%q|%v", s.Name, s.HTTPURL, s.WSURL, s.User, s.Password,
		s.Tier, s.Weight, s.MaxInFlight, s.Allow, s.Deny, s.Archive)
}

// build makes the upstreams of specs, reusing those of old whose spec did not change.
func (r *Router) build(specs []Spec, old *upstreamSet) (*upstreamSet, error) {
	keep := map[string]*Upstream{}
	if old != nil {
		for _, u := range old.all {
			keep[u.key] = u
		}
	}
	set := &upstreamSet{}
	names := map[string]bool{}
	for _, sp := range specs {
		if names[sp.Name] {
			return nil, fmt.Errorf("upstream %q is configured twice", sp.Name)
		}
		names[sp.Name] = true
		if sp.Weight <= 0 {
			sp.Weight = 1
		}
		key := specKey(sp)
		u := keep[key]
		if u == nil {
			var err error
			if u, err = r.newUpstream(sp, key); err != nil {
				return nil, fmt.Errorf("upstream %q: %w", sp.Name, err)
			}
		}
		set.all = append(set.all, u)
		if sp.Tier == TierFallback {
			set.fallbacks = append(set.fallbacks, u)
		} else {
			set.primaries = append(set.primaries, u)
		}
	}
	return set, nil
}

func (r *Router) newUpstream(sp Spec, key string) (*Upstream, error) {
	met := NewMetrics(r.cfg.Registry, sp.Name)
	u := &Upstream{spec: sp, key: key, metrics: met, health: newHealth(&r.cfg.Health),
		allow: proto.NewMethodSet(sp.Allow), deny: proto.NewMethodSet(sp.Deny), stop: make(chan struct{})}
	met.health = u.health
	pc := r.cfg.Pool
	pc.URL, pc.User, pc.Password, pc.Metrics = sp.HTTPURL, sp.User, sp.Password, met
	pool, err := NewPool(pc)
	if err != nil {
		return nil, err
	}
	u.pool = pool
	if sp.WSURL != "" {
		mc := r.cfg.Mux
		mc.URL, mc.Metrics, mc.Logger = sp.WSURL, met, r.log.With("upstream", sp.Name)
		if sp.User != "" || sp.Password != "" {
			mc.Header = http.Header{"Authorization": {basicAuth(sp.User, sp.Password)}}
		}
		if u.mux, err = NewMux(mc); err != nil {
			return nil, err
		}
	}
	r.m.register(u)
	return u, nil
}

// Start connects every upstream and starts the health loops.
func (r *Router) Start() {
	for _, u := range r.set.Load().all {
		r.startUpstream(u)
	}
	r.wg.Add(1)
	go r.reviewLoop()
}

func (r *Router) startUpstream(u *Upstream) {
	if u.mux != nil {
		u.mux.Start()
	}
	u.done.Add(1)
	go r.followHead(u)
}

// Close stops every upstream and loop.
func (r *Router) Close() {
	if !r.closed.CompareAndSwap(false, true) {
		return
	}
	close(r.stop)
	r.wg.Wait()
	r.subs.Close()
	for _, u := range r.set.Load().all {
		r.stopUpstream(u)
	}
}

// Subscriptions returns the router's client subscriptions.
func (r *Router) Subscriptions() *Subscriptions { return r.subs }

// removed reports whether u is no longer configured.
func (r *Router) removed(u *Upstream) bool {
	for _, x := range r.set.Load().all {
		if x == u {
			return false
		}
	}
	return true
}

func (r *Router) stopUpstream(u *Upstream) {
	close(u.stop)
	u.done.Wait()
	if u.mux != nil {
		u.mux.Close()
	}
	u.pool.Close()
}

// Reload replaces the upstream list: unchanged upstreams keep their connections and
// health, new ones start, removed ones stop once the new set is in place.
func (r *Router) Reload(specs []Spec) error {
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	old := r.set.Load()
	set, err := r.build(specs, old)
	if err != nil {
		return err
	}
	inNew := map[*Upstream]bool{}
	for _, u := range set.all {
		inNew[u] = true
	}
	inOld := map[*Upstream]bool{}
	for _, u := range old.all {
		inOld[u] = true
	}
	for _, u := range set.all {
		if !inOld[u] {
			r.startUpstream(u)
		}
	}
	r.set.Store(set)
	r.subs.review() // subscriptions on removed upstreams move now
	for _, u := range old.all {
		if !inNew[u] {
			r.m.unregister(u)
			go func() {
				// Calls under way finish or fail on their own; subscriptions move first.
				time.Sleep(r.cfg.ReviewInterval)
				r.stopUpstream(u)
			}()
		}
	}
	return nil
}

// Upstreams returns the current upstreams.
func (r *Router) Upstreams() []*Upstream { return r.set.Load().all }

// ServedHead returns the head the gateway serves: the highest block a usable upstream
// has, never lower than a head already served unless the chain itself went back.
func (r *Router) ServedHead() uint64 { return r.served.Load() }

// HeadKnown reports whether an upstream reported a head yet.
func (r *Router) HeadKnown() bool { return r.headKnown.Load() }

// Usable reports whether any upstream can take calls now.
func (r *Router) Usable() bool {
	for _, u := range r.set.Load().all {
		if u.health.State() != StateBanned {
			return true
		}
	}
	return false
}

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
	case st == StateBanned && level != lastResort:
		return false
	case via == TransportWS && (u.mux == nil || !u.mux.Up()):
		return false
	case !u.allows(req.Name):
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
			total += u.spec.Weight
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
	b := weighted(list, total-a.spec.Weight, a)
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

// weighted draws an upstream of list other than except, by weight; total is the sum
// of the weights of the others.
func weighted(list []*Upstream, total int, except *Upstream) *Upstream {
	x := rand.IntN(total)
	var last *Upstream
	for _, u := range list {
		if u == except {
			continue
		}
		if x -= u.spec.Weight; x < 0 {
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

// HTTP and WS are the router as the pipeline's callers: calls over each transport.
func (r *Router) HTTP() Caller { return routed{r, TransportHTTP} }
func (r *Router) WS() Caller   { return routed{r, TransportWS} }

// Caller is an upstream the pipeline forwards to.
type Caller interface {
	Call(spare []byte, req *proto.Request, id []byte, deadline time.Time) ([]byte, error)
	CallBatch(b *Batch, deadline time.Time) error
}

type routed struct {
	r   *Router
	via Transport
}

func (x routed) Call(spare []byte, req *proto.Request, id []byte, deadline time.Time) ([]byte, error) {
	return x.r.call(spare, req, id, deadline, x.via)
}

func (x routed) CallBatch(b *Batch, deadline time.Time) error {
	return x.r.callBatch(b, deadline, x.via)
}

// maxAttempts bounds the upstreams one call may be tried on.
const maxAttempts = 8

var errNoUpstream = proto.NewError(proto.CodeServer, 503,
	"no upstream available: every upstream that can take this call is at its in-flight limit, or none is configured for it")

func (r *Router) call(spare []byte, req *proto.Request, id []byte, deadline time.Time, via Transport) ([]byte, error) {
	n := r.needOf(req)
	retryable := req.Retryable()
	// reads counts only what the hedging budget needs: a counter every request writes
	// is a cache line the cores pass back and forth.
	if retryable && r.cfg.HedgeQuantile > 0 {
		r.reads.Add(1)
		return r.hedgedCall(req, id, deadline, via, n)
	}
	var tried [maxAttempts]*Upstream
	var lastErr error = errNoUpstream
	attempts := min(r.cfg.Retries+1, maxAttempts)
	for i := 0; i < attempts; i++ {
		u := r.pick(req, n, via, tried[:i])
		if u == nil {
			break
		}
		tried[i] = u
		ans, err := r.once(u, spare, req, id, r.attemptDeadline(deadline, retryable && i+1 < attempts), via)
		spare = ans
		if err == nil && !retryableAnswer(ans) {
			return r.clamp(req, ans), nil
		}
		if err == nil {
			err = errLagging
		}
		lastErr = err
		perr, _ := err.(*proto.Error)
		// A write may go elsewhere only if it never left.
		sent := perr != proto.ErrUnreachable && perr != proto.ErrOverloaded
		if (!retryable && sent) || !retryableError(perr) || !time.Now().Before(deadline) {
			break
		}
		if i+1 < attempts {
			r.m.retries.Inc()
		}
	}
	if lastErr == errLagging {
		return spare, nil // the last answer stands: the node's own "header not found"
	}
	return spare[:0], lastErr
}

// attemptDeadline is the deadline of one attempt of a call: the call's own, less a
// reserve for a retry on another upstream when the call may be retried (canRetry),
// another upstream is configured and the call has time for both. The reserve is
// Health.SlowMin, the time an upstream may take before it counts as slow. Without it
// an upstream that takes calls and never answers (a blackhole) would hold them until
// the client's deadline, and the reads among them would fail instead of being retried.
func (r *Router) attemptDeadline(deadline time.Time, canRetry bool) time.Time {
	reserve := r.cfg.Health.SlowMin
	if !canRetry || reserve <= 0 || len(r.set.Load().all) < 2 || time.Until(deadline) < 2*reserve {
		return deadline
	}
	return deadline.Add(-reserve)
}

// errLagging marks an answer that says the upstream lacks the block ("header not
// found", "missing trie node"): another upstream may have it.
var errLagging = proto.NewError(proto.CodeServer, 502, "upstream lacks the block")

// once makes one call on u.
func (r *Router) once(u *Upstream, spare []byte, req *proto.Request, id []byte, deadline time.Time, via Transport) ([]byte, error) {
	u.inFlight.Add(1)
	defer u.inFlight.Add(-1)
	if via == TransportWS {
		return u.mux.Call(spare, req, id, deadline)
	}
	return u.pool.Call(spare, req, id, deadline)
}

// retryableError reports whether another upstream may do better: the transport failed,
// the upstream was overloaded, rate limited or broken. A JSON-RPC error that is the
// answer (execution reverted, invalid params) is never retried.
func retryableError(e *proto.Error) bool {
	switch e {
	case proto.ErrUnavailable, proto.ErrUnreachable, proto.ErrTimeout, proto.ErrOverloaded,
		proto.ErrRateLimited, proto.ErrBadUpstream, errLagging, errUpstreamAuth:
		return true
	}
	return false
}

// retryableAnswer reports whether an answer is an error saying this node lacks what
// was asked, where another node may have it.
func retryableAnswer(ans []byte) bool {
	if !proto.IsErrorResponse(ans) {
		return false
	}
	e := proto.FirstMember(ans, "error")
	msg := proto.FirstMember(e.Bytes(ans), "message")
	m := msg.Bytes(e.Bytes(ans))
	return bytes.Contains(m, []byte("header not found")) || bytes.Contains(m, []byte("missing trie node")) ||
		bytes.Contains(m, []byte("unknown block"))
}

// clamp keeps eth_blockNumber from going backwards when the answer came from an
// upstream behind the served head.
func (r *Router) clamp(req *proto.Request, ans []byte) []byte {
	if string(req.Name) != "eth_blockNumber" {
		return ans
	}
	served := r.served.Load()
	res := proto.FirstMember(ans, "result")
	n, ok := proto.ParseQuantity(res.Bytes(ans))
	if !ok || n >= served {
		return ans
	}
	var q [24]byte
	v := append(strconv.AppendUint(append(q[:0], `"0x`...), served, 16), '"')
	return proto.Splice(make([]byte, 0, len(ans)+8), ans, res, v)
}

// hedgedCall sends a read to the best upstream and, when it has not answered by its own
// latency quantile, to a second one too; the first answer wins. Hedges are capped at
// HedgeMaxExtra of all reads.
func (r *Router) hedgedCall(req *proto.Request, id []byte, deadline time.Time, via Transport, n need) ([]byte, error) {
	type result struct {
		ans []byte
		err error
		u   *Upstream
	}
	first := r.pick(req, n, via, nil)
	if first == nil {
		return nil, errNoUpstream
	}
	results := make(chan result, 2)
	launch := func(u *Upstream, deadline time.Time) {
		go func() {
			ans, err := r.once(u, nil, req, id, deadline, via)
			if err == nil && retryableAnswer(ans) {
				err = errLagging
			}
			results <- result{ans, err, u}
		}()
	}
	// req may point into the caller's buffers: copy it, the goroutines may outlive this call.
	req = cloneRequest(req)
	launch(first, r.attemptDeadline(deadline, r.cfg.Retries > 0))
	// The wait is the quantile of the fastest upstream, not of the one picked: an
	// upstream that is slow all the time has a high quantile of its own, and its calls
	// would never be hedged in time.
	cls := req.Class()
	wait := time.Duration(r.hedgeWait[cls].Load())
	if wait <= 0 {
		wait = first.health.Quantile(cls, r.cfg.HedgeQuantile, time.Now())
	}
	if wait <= 0 {
		wait = 50 * time.Millisecond
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	outstanding, hedged := 1, false
	var last result
	for outstanding > 0 {
		select {
		case res := <-results:
			outstanding--
			if res.err == nil {
				if hedged && res.u != first {
					r.m.hedgesWon.Inc()
				}
				return r.clamp(req, res.ans), nil
			}
			last = res
			if !hedged { // the first failed: try another now, as a retry
				if u := r.pick(req, n, via, []*Upstream{first}); u != nil && retryableError(asProtoError(res.err)) {
					hedged = true
					r.m.retries.Inc()
					launch(u, deadline)
					outstanding++
				}
			}
		case <-timer.C:
			// The budget: a share of all reads, plus a few so the first reads of a
			// process may hedge too.
			if hedged || float64(r.hedged.Load()) >= r.cfg.HedgeMaxExtra*float64(r.reads.Load())+hedgeBurst {
				continue
			}
			if u := r.pick(req, n, via, []*Upstream{first}); u != nil {
				hedged = true
				r.hedged.Add(1)
				r.m.hedges.Inc()
				launch(u, deadline)
				outstanding++
			}
		}
	}
	return nil, last.err
}

// hedgeBurst is how many hedges the budget allows beyond its share of reads.
const hedgeBurst = 5

func asProtoError(err error) *proto.Error {
	if e, ok := err.(*proto.Error); ok {
		return e
	}
	return proto.ErrInternal
}

func cloneRequest(r *proto.Request) *proto.Request {
	c := new(proto.Request)
	name := append([]byte(nil), r.Name...)
	c.Set(name, append([]byte(nil), r.Params...))
	return c
}

// callBatch sends a batch to one upstream that can take every request in it, retrying
// it whole on another when the exchange failed and no request in it is a write.
func (r *Router) callBatch(b *Batch, deadline time.Time, via Transport) error {
	var n need
	retryable := true
	for _, req := range b.Reqs {
		rn := r.needOf(req)
		n.block = max(n.block, rn.block)
		n.archive = n.archive || rn.archive
		n.current = n.current || rn.current
		retryable = retryable && req.Retryable()
	}
	var probe *proto.Request
	if len(b.Reqs) > 0 {
		probe = b.Reqs[0]
	}
	var tried [maxAttempts]*Upstream
	var lastErr error = errNoUpstream
	attempts := min(r.cfg.Retries+1, maxAttempts)
	for i := 0; i < attempts; i++ {
		u := r.pickBatch(b, probe, n, via, tried[:i])
		if u == nil {
			break
		}
		tried[i] = u
		u.inFlight.Add(1)
		var err error
		d := r.attemptDeadline(deadline, retryable && i+1 < attempts)
		if via == TransportWS {
			err = u.mux.CallBatch(b, d)
		} else {
			err = u.pool.CallBatch(b, d)
		}
		u.inFlight.Add(-1)
		if err == nil {
			return nil
		}
		lastErr = err
		perr, _ := err.(*proto.Error)
		sent := perr != proto.ErrUnreachable && perr != proto.ErrOverloaded
		if (!retryable && sent) || !retryableError(perr) || !time.Now().Before(deadline) {
			break
		}
		r.m.retries.Inc()
	}
	b.Fail(asProtoError(lastErr))
	return lastErr
}

// pickBatch picks for a batch: every method in it must be allowed.
func (r *Router) pickBatch(b *Batch, probe *proto.Request, n need, via Transport, tried []*Upstream) *Upstream {
	tried = append([]*Upstream(nil), tried...) // ours to extend
	for range 4 {
		u := r.pick(probe, n, via, tried)
		if u == nil {
			return nil
		}
		ok := true
		for _, req := range b.Reqs {
			if !u.allows(req.Name) {
				ok = false
				break
			}
		}
		if ok {
			return u
		}
		tried = append(tried, u)
	}
	return nil
}

func basicAuth(user, pass string) string {
	return "Basic " + base64Encode(user+":"+pass)
}
