package upstream

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

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
	// Methods is the upstream's per-method policy, over its network's (policy.go).
	Methods []MethodPolicy
	// SendOnly: the upstream takes writes only (proto.IsWrite: eth_sendRawTransaction,
	// and broadcasts through CallOn); never reads, subscriptions or head following.
	// Transaction relays and private mempools are such upstreams.
	SendOnly bool
	// Budget is what the upstream may be sent (budget.go). A reload that changes only
	// the budget keeps the upstream and its connections.
	Budget BudgetSpec
	// Kind is the provider kind whose preset classifies its answers (classify.go):
	// infura, alchemy, quicknode or generic; "": detected from the URL's host.
	Kind string
	// Errors are classification rules that come before the kind's preset.
	Errors []ErrorRule
	// QuotaReset is when an exhausted quota comes back (default: daily, 00:00 UTC).
	QuotaReset QuotaReset
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
	// ChainID, when not 0, is the chain every upstream must be on (chain.go): an
	// upstream serves only once it answered eth_chainId with it, and one that answers
	// another chain is wrong_chain and serves nothing. 0: no check.
	ChainID uint64
	// ChainWait bounds how long Start, and Reload for new upstreams, wait for the
	// first eth_chainId answers (0: DefaultChainWait). Only with ChainID.
	ChainWait time.Duration
	// Methods is the network's per-method policy (policy.go); SetMethodPolicies
	// replaces it.
	Methods []MethodPolicy
	// Meters builds the upstreams' budget meters (nil: per process). BudgetWait is how
	// long a call no upstream has budget for waits for one (bounded by its deadline;
	// 0: refused at once), BudgetQueueBytes how many request bytes may wait so at once
	// per router (past it: refused at once).
	Meters           MeterFactory
	BudgetWait       time.Duration
	BudgetQueueBytes int64
	// Clock, when set, is the budgets' monotonic clock (tests); default: real time.
	Clock func() time.Duration
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
	chain    chainCheck
	cordon   atomic.Pointer[Cordon] // nil: not cordoned (cordon.go)
	allow    proto.MethodSet
	deny     proto.MethodSet
	pol      atomic.Pointer[policyTable] // its per-method policy, over the network's
	budget   budgetState
	gate     gate // throttled, exhausted (gate.go)
	// refusedMethods are the methods the provider refused lately (methodrefusal.go).
	refusedMethods methodRefusals
	integ          integrityState
	// seen is the state the router last reported (stateChanged): a ban by failed
	// calls happens on the call's path, and the next review reports it.
	seen atomic.Uint32
	stop chan struct{}
	done sync.WaitGroup
	// headCheck asks followHead to read the head again (checkHead): a socket or the HTTP
	// transport came back up, and the node behind it may be on another chain or further
	// back, with no new block to say so.
	headCheck chan struct{}
	// headDropped says a head was read while u had not proved the chain, and so moved
	// nothing: once u proves it (chainAnswer), the head is read again.
	headDropped atomic.Bool
	// watch is what followHead knows of the heads u's newHeads subscription pushed
	// (router_stall.go).
	watch headWatch
	// downHead is the last head pushed when a socket of u was lost with subscriptions on
	// it (its health head if none was pushed): where a logs subscription carried through
	// the loss asks for the logs it missed from (subscriptions_reconnect.go).
	downHead atomic.Uint64
}

// checkHead asks followHead to read u's head again: a socket or the HTTP transport
// came back up, and a node restarted on a new chain, or further back, may make no new
// block to say so.
func (u *Upstream) checkHead() {
	select {
	case u.headCheck <- struct{}{}:
	default: // one is pending already
	}
}

// Name returns the upstream's configured name.
func (u *Upstream) Name() string { return u.spec.Name }

// Spec returns the upstream's configuration.
func (u *Upstream) Spec() Spec { return u.spec }

// Mux returns the upstream's websocket Mux, nil without one.
func (u *Upstream) Mux() *Mux { return u.mux }

// Health returns the upstream's health.
func (u *Upstream) Health() *Health { return u.health }

// Serves reports whether some upstream's configuration takes req (its methods lists,
// send_only), whatever its state now: false, no upstream ever will until a reload.
func (r *Router) Serves(req *proto.Request) bool {
	set := r.set.Load()
	if !set.listed {
		return true
	}
	for _, u := range set.all {
		if u.allows(req) {
			return true
		}
	}
	return false
}

func (u *Upstream) allows(req *proto.Request) bool {
	if u.spec.SendOnly && !proto.IsWrite(req.Name) {
		return false // a relay for sends answers nothing else, or answers it wrong
	}
	if !u.allow.Empty() && !u.allow.HasRequest(req) {
		return false
	}
	return !u.deny.HasRequest(req)
}

// upstreamSet is the router's current upstreams; a reload swaps it whole.
type upstreamSet struct {
	all       []*Upstream
	primaries []*Upstream
	fallbacks []*Upstream
	// listed: some upstream has a methods allow or deny list, or is send_only (else
	// every upstream takes every method, and Serves looks no further).
	listed bool
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
	consensus  atomic.Pointer[consensus] // nil: off (consensus.go)
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
	// cordons are the operator's cordons by upstream name (cordon.go).
	cordonMu sync.Mutex
	cordons  map[string]Cordon
	// errNoChain answers a call when no upstream proved the chain (ChainID).
	errNoChain *proto.Error
	// pol is the network level's per-method policy; methods its entries, from which
	// new upstreams resolve theirs (under reloadMu).
	pol     atomic.Pointer[policyTable]
	methods []MethodPolicy

	// Budgets (budget.go): the clock's origin, request bytes waiting for a budget, the
	// refusals by method, and how many were refused.
	epoch          time.Time
	budgetQueued   atomic.Int64
	budgetErrs     [3][proto.NumMethods]*proto.Error
	budgetRefusedN *metrics.Counter

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
	r := &Router{cfg: cfg, log: cfg.Logger, stop: make(chan struct{}), epoch: time.Now()}
	if cfg.ChainID != 0 {
		r.errNoChain = newErrNoChain(cfg.ChainID)
	}
	r.m.init(cfg.Registry)
	r.initBudgets()
	r.subs = newSubscriptions(r)
	base, err := resolvePolicies(cfg.Methods)
	if err != nil {
		return nil, fmt.Errorf("methods: %w", err)
	}
	r.pol.Store(base)
	r.methods = cfg.Methods
	set, err := r.build(specs, nil)
	if err != nil {
		return nil, err
	}
	r.set.Store(set)
	return r, nil
}

// specKey identifies a spec for reloads. It holds secrets: never printed. The budget
// is not in it: a changed budget is swapped in place (setBudget), connections kept.
func specKey(s Spec) string {
	return fmt.Sprintf("%q|%q|%q|%q|%q|%d|%d|%d|%q|%q|%v|%v|%q|%+v|%v", s.Name, s.HTTPURL, s.WSURL, s.User, s.Password,
		s.Tier, s.Weight, s.MaxInFlight, s.Allow, s.Deny, s.Archive, s.SendOnly, s.Kind, s.Errors, s.QuotaReset) + "|" + methodsKey(s.Methods)
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
		} else if err := r.setBudget(u, sp.Budget); err != nil {
			return nil, err
		}
		set.all = append(set.all, u)
		set.listed = set.listed || !u.allow.Empty() || !u.deny.Empty() || u.spec.SendOnly
		if sp.Tier == TierFallback {
			set.fallbacks = append(set.fallbacks, u)
		} else {
			set.primaries = append(set.primaries, u)
		}
	}
	return set, nil
}

func (r *Router) newUpstream(sp Spec, key string) (*Upstream, error) {
	pol, err := r.upstreamPolicies(r.pol.Load(), r.methods, sp)
	if err != nil {
		return nil, err
	}
	met := NewMetrics(r.cfg.Registry, sp.Name)
	u := &Upstream{spec: sp, key: key, metrics: met, health: newHealth(&r.cfg.Health),
		allow: proto.NewMethodSet(sp.Allow), deny: proto.NewMethodSet(sp.Deny), stop: make(chan struct{}),
		headCheck: make(chan struct{}, 1), watch: headWatch{silentGroups: make(chan silentGroup, 1)}}
	met.health = u.health
	met.onUp = u.checkHead
	u.pol.Store(pol)
	u.cordon.Store(r.cordonOf(sp.Name))
	if err := r.setBudget(u, sp.Budget); err != nil {
		return nil, err
	}
	r.initChain(u)
	kind := sp.Kind
	if kind == "" {
		kind = DetectKind(sp.HTTPURL)
	}
	cls, err := NewClassifier(kind, sp.Errors)
	if err != nil {
		return nil, err
	}
	u.gate.reset, u.gate.edge = sp.QuotaReset, cls.Kind() != KindGeneric
	pc := r.cfg.Pool
	pc.URL, pc.User, pc.Password, pc.Metrics, pc.Classifier = sp.HTTPURL, sp.User, sp.Password, met, cls
	pool, err := NewPool(pc)
	if err != nil {
		return nil, err
	}
	u.pool = pool
	if sp.WSURL != "" {
		mc := r.cfg.Mux
		mc.URL, mc.Metrics, mc.Logger = sp.WSURL, met, r.log.With("upstream", sp.Name)
		mc.Classifier = cls
		mc.OnClosed = func(c AnswerClass, backoff time.Duration) { r.noteAnswer(u, c, backoff) }
		// Each socket proves the chain itself before it carries anything.
		mc.ChainID = r.cfg.ChainID
		mc.OnChainID = func(got uint64, err error) { r.chainAnswer(u, TransportWS, got, err) }
		mc.OnUp = u.checkHead
		mc.OnDown = u.socketLost
		if sp.User != "" || sp.Password != "" {
			mc.Header = http.Header{"Authorization": {basicAuth(sp.User, sp.Password)}}
		}
		if u.mux, err = NewMux(mc); err != nil {
			return nil, err
		}
	}
	r.m.register(u)
	r.registerBudget(u)
	registerGate(r.cfg.Registry, u)
	return u, nil
}

// Start connects every upstream and starts the health loops. With ChainID it returns
// once every upstream's first eth_chainId check ended, at most ChainWait.
func (r *Router) Start() {
	all := r.set.Load().all
	for _, u := range all {
		r.startUpstream(u)
	}
	r.wg.Add(1)
	go r.reviewLoop()
	r.waitChain(all)
}

func (r *Router) startUpstream(u *Upstream) {
	if u.mux != nil {
		u.mux.Start()
	}
	u.done.Add(2)
	if u.spec.SendOnly {
		u.done.Done() // its head is not the chain's to follow: it serves no reads
	} else {
		go r.followHead(u)
	}
	if r.cfg.ChainID != 0 {
		go r.checkChain(u)
	} else {
		u.done.Done()
	}
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

// SetHTTPTransport replaces the transport of every upstream's HTTP pool: benchmarks
// put an in-memory upstream there, so what they time is the gateway's own work, with
// no syscall. Call it before the first request (it is not synchronised with calls in
// flight); upstreams a later reload adds keep fasthttp's transport.
func (r *Router) SetHTTPTransport(rt fasthttp.RoundTripper) {
	for _, u := range r.set.Load().all {
		u.pool.hc.Transport = rt
	}
}

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
	if b := u.budget.cur.Load(); b != nil {
		b.close()
	}
}

// Reload replaces the upstream list: unchanged upstreams keep their connections and
// health, new ones start, removed ones stop once the new set is in place. With
// ChainID every kept upstream is asked its chain id again, and the new set is put in
// place once the new upstreams' first checks ended (at most ChainWait).
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
	var started []*Upstream
	for _, u := range set.all {
		if !inOld[u] {
			r.startUpstream(u)
			started = append(started, u)
		} else if r.cfg.ChainID != 0 {
			u.recheckChain()
		}
	}
	r.waitChain(started)
	r.set.Store(set)
	r.SetCordons(r.Cordons()) // a cordon set while the new upstreams were built
	r.subs.review()           // subscriptions on removed upstreams move now
	for _, u := range old.all {
		if !inNew[u] {
			r.m.unregister(u)
			r.unregisterBudget(u)
			go func() {
				// Calls under way finish or fail on their own; subscriptions move first.
				time.Sleep(r.cfg.ReviewInterval)
				r.stopUpstream(u)
			}()
		}
	}
	// An upstream rebuilt under its old name (its spec changed) registered its gauges
	// while its old self's were still there, and the removal above took them away.
	for _, u := range started {
		r.m.register(u)
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
		if u.health.State() != StateBanned && u.onChain() && !u.spec.SendOnly {
			return true
		}
	}
	return false
}

func basicAuth(user, pass string) string {
	return "Basic " + base64Encode(user+":"+pass)
}
