package upstream

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// routerMetrics are the router's series: across upstreams, and per upstream (state,
// head, lag, in flight, bans), registered when an upstream is added and removed when a
// reload drops it.
type routerMetrics struct {
	reg                                   *Registry
	retries, hedges, hedgesWon, failovers *metrics.Counter
	subMoves, subDrops, reorgs            *metrics.Counter
	gapBlocks, backfilled                 *metrics.Counter
	servedHead                            atomic.Uint64
}

func (m *routerMetrics) init(reg *Registry) {
	m.reg = reg
	m.retries = reg.Counter("gateway_router_retries_total", "Calls sent again to another upstream after a failure.")
	m.hedges = reg.Counter("gateway_router_hedges_total", "Reads also sent to a second upstream because the first was slow.")
	m.hedgesWon = reg.Counter("gateway_router_hedges_won_total", "Hedged reads answered first by the second upstream.")
	m.failovers = reg.Counter("gateway_router_bans_total", "Upstreams banned (taken out of rotation) by the router.")
	m.subMoves = reg.Counter("gateway_subscriptions_moved_total", "Subscriptions moved to another upstream, keeping their ids.")
	m.subDrops = reg.Counter("gateway_subscriptions_dropped_notifications_total",
		"Notifications dropped because a subscription's delivery queue was full, or past the bytes a logs subscription holds while renewed (newHeads gaps are backfilled).")
	m.reorgs = reg.Counter("gateway_subscriptions_reorgs_total", "newHeads delivered at or below the last height with a new hash: reorgs passed on.")
	m.gapBlocks = reg.Counter("gateway_subscriptions_gap_blocks_total", "Blocks a subscription could not backfill (past the bound, or the fetch failed).")
	m.backfilled = reg.Counter("gateway_subscriptions_backfilled_total", "Heads and logs delivered from a backfill after a gap or a move.")
	reg.Gauge("gateway_router_served_head", "The head the gateway serves: never lower than one already served unless the chain went back.",
		func() float64 { return float64(m.servedHead.Load()) })
}

// upstreamSeries are the per-upstream gauge names, for removal.
func upstreamSeries(u *Upstream) []string {
	l := `{upstream="` + u.spec.Name + `"}`
	return []string{"gateway_upstream_state" + l, "gateway_upstream_head" + l, "gateway_upstream_lag" + l,
		"gateway_upstream_in_flight" + l, "gateway_upstream_bans" + l, "gateway_upstream_latency_seconds" + l,
		`gateway_upstream_info{upstream="` + u.spec.Name + `",tier="` + u.spec.Tier.String() + `"}`,
		"gateway_upstream_wrong_chain" + l, "gateway_upstream_chain_id" + l}
}

func (m *routerMetrics) register(u *Upstream) {
	s := upstreamSeries(u)
	m.reg.Gauge(s[0], "Upstream state: 0 healthy, 1 lagging, 2 banned.", func() float64 { return float64(u.health.State()) })
	m.reg.Gauge(s[1], "Latest block the upstream reported.", func() float64 { return float64(u.health.Head()) })
	m.reg.Gauge(s[2], "Blocks the upstream is behind the served head.", func() float64 {
		if h, s := u.health.Head(), m.servedHead.Load(); s > h {
			return float64(s - h)
		}
		return 0
	})
	m.reg.Gauge(s[3], "Calls the gateway has outstanding on the upstream.", func() float64 { return float64(u.inFlight.Load()) })
	m.reg.Gauge(s[4], "Times the upstream was banned.", func() float64 { return float64(u.health.banCount.Load()) })
	m.reg.Gauge(s[5], "Exponentially weighted mean latency of the upstream's answers.", func() float64 { return u.health.Latency().Seconds() })
	m.reg.Gauge(s[6], "Configured upstreams and their tier; always 1.", func() float64 { return 1 })
	m.reg.Gauge(s[7], "1 while the upstream answers eth_chainId with another chain than its network's: it serves nothing.",
		func() float64 {
			if u.wrongChain() {
				return 1
			}
			return 0
		})
	m.reg.Gauge(s[8], "The chain id the upstream answered (0: not checked, or no answer yet).",
		func() float64 { return float64(u.chain.seen.Load()) })
	m.registerCordon(u)
	registerIntegrity(m.reg, u)
}

func (m *routerMetrics) unregister(u *Upstream) {
	for _, s := range upstreamSeries(u) {
		m.reg.Unregister(s)
	}
	m.unregisterCordon(u)
	unregisterGate(m.reg, u)
	unregisterIntegrity(m.reg, u)
}

// UpstreamStatus is one upstream on /status. It holds no URL: they may carry keys.
type UpstreamStatus struct {
	Name     string `json:"name"`
	Tier     string `json:"tier"`
	Archive  bool   `json:"archive"`
	HTTP     bool   `json:"http_up"`
	WS       *bool  `json:"ws_up,omitempty"`
	InFlight int32  `json:"in_flight"`
	// Subscriptions is how many client subscription groups it carries.
	Subscriptions int `json:"subscriptions"`
	// ChainID is the chain id the upstream last answered (0: not asked, or no answer
	// yet); with RouterConfig.ChainID, State is "wrong_chain" when it differs.
	ChainID uint64 `json:"chain_id,omitempty"`
	// Cordoned is the operator's cordon, when there is one (cordon.go).
	Cordoned *Cordon `json:"cordoned,omitempty"`
	// Budget is its budget and what this replica spent of it (budget.go).
	Budget *BudgetStatus `json:"budget,omitempty"`
	// WrongAnswers counts its answers that failed an integrity check, by check
	// (integrity.go); absent while there are none.
	WrongAnswers map[string]uint64 `json:"wrong_answers,omitempty"`
	// ConsensusDissent is the weighted mean of its dissent in consensus calls (0 to
	// 1); WeightLowered says its routing weight is lowered for it (consensus.go).
	ConsensusDissent float64 `json:"consensus_dissent,omitempty"`
	WeightLowered    bool    `json:"weight_lowered,omitempty"`
	// RefusedMethods are the methods the provider refused lately, for the gateway's
	// credentials: other upstreams take them (methodrefusal.go).
	RefusedMethods []string `json:"refused_methods,omitempty"`
	HealthStatus
	GateStatus
}

// Status is the router on /status.
type Status struct {
	ServedHead uint64           `json:"served_head"`
	Upstreams  []UpstreamStatus `json:"upstreams"`
}

// Status returns a snapshot of every upstream.
func (r *Router) Status() Status {
	now := time.Now()
	served := r.served.Load()
	st := Status{ServedHead: served}
	carried := r.subs.carried()
	for _, u := range r.set.Load().all {
		us := UpstreamStatus{Name: u.spec.Name, Tier: u.spec.Tier.String(), Archive: u.spec.Archive,
			HTTP: u.metrics.Up(TransportHTTP), InFlight: u.inFlight.Load(), Subscriptions: carried[u],
			HealthStatus: u.health.status(served, now), GateStatus: u.gate.status(now)}
		r.chainStatus(u, &us)
		us.Cordoned = u.cordon.Load()
		us.Budget = r.budgetStatus(u)
		us.WrongAnswers = u.wrongStatus()
		us.ConsensusDissent = math.Float64frombits(u.integ.dissent.Load())
		us.WeightLowered = u.integ.lowered.Load()
		us.RefusedMethods = u.refusedMethods.list(now)
		if u.mux != nil {
			up := u.mux.Up()
			us.WS = &up
		}
		st.Upstreams = append(st.Upstreams, us)
	}
	return st
}
