package config

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/infura-gateway/infura-gateway/upstream"
)

// FileConfig is the configuration file (-config / CONFIG_FILE): the upstreams and the
// settings of routing and health. It is decoded strictly (an unknown key is an error
// naming its line) and every string of an upstream may hold ${VAR}, read from the
// environment, so the file can live in a ConfigMap and the keys in a Secret: only
// variables meant for it (expand). Settings the file leaves out keep their flag values.
type FileConfig struct {
	// EnvAllow names the variables ${VAR} may read besides GATEWAY_* and builtinEnv.
	EnvAllow  []string        `yaml:"env_allow"`
	Upstreams []UpstreamEntry `yaml:"upstreams"`
	Networks  []NetworkEntry  `yaml:"networks"`
	Routing   *RoutingEntry   `yaml:"routing"`
	Health    *HealthEntry    `yaml:"health"`
	// Methods is the per-method policy every network starts from (methods.go).
	Methods MethodPolicies `yaml:"methods"`
	// Keys, plans, costs and anonymous: who may call, and how much (gateway/access.go).
	Keys      *KeysEntry           `yaml:"keys"`
	Plans     map[string]PlanEntry `yaml:"plans"`
	Costs     map[string]int64     `yaml:"costs"`
	Anonymous *AnonymousEntry      `yaml:"anonymous"`
	Clients   *ClientsEntry        `yaml:"clients"`
	// SharedCache bounds the Redis cache tier (shared.go).
	SharedCache *SharedCacheEntry `yaml:"shared_cache"`
	// Broadcast: the top-level upstreams' network, and the default of every network
	// without its own (broadcast.go).
	Broadcast *BroadcastEntry `yaml:"broadcast"`
	// Consensus: the top-level upstreams' network, and the default of every network
	// without its own (consensus.go).
	Consensus *ConsensusEntry `yaml:"consensus"`
	// SharedBudgetReplicas overrides -budget-replicas: each replica's share of the
	// upstreams' budgets while Redis is down.
	SharedBudgetReplicas *int       `yaml:"shared_budget_replicas"`
	Logs                 *LogsEntry `yaml:"logs"`
}

// KeySettings are the keys, plans and costs of the configuration file.
type KeySettings struct {
	// Required: every call needs a valid key. Otherwise a call without one is on the
	// anonymous plan (a wrong key is still refused).
	Required bool
	Keys     []KeyEntry
	Plans    map[string]PlanEntry
	Costs    map[string]int64
	// Anonymous names the plan of tenants without a key (empty: not limited).
	Anonymous string
	// The bounds of the anonymous table and the aggregate limits (AnonymousEntry).
	AnonymousMaxClients            int
	AnonymousMaxBytes              int64
	AnonymousPer48, AnonymousPer32 *AggregateEntry
}

// KeysEntry lists the API keys. With entries every call needs a valid key, unless
// required is false: then a call without a key is on the anonymous plan.
type KeysEntry struct {
	Required *bool      `yaml:"required"`
	Entries  []KeyEntry `yaml:"entries"`
}

// KeyEntry is one API key: its SHA-256 (never the key itself: the file is readable by
// whoever deploys), a name for logs and metrics, its plan, and optionally the browser
// origins and methods it is limited to.
type KeyEntry struct {
	Name    string       `yaml:"name"`
	SHA256  string       `yaml:"sha256"`
	Plan    string       `yaml:"plan"`
	Origins []string     `yaml:"origins"`
	Methods MethodsEntry `yaml:"methods"`
}

// PlanEntry is a set of limits; zero (or absent) means no limit of that kind.
type PlanEntry struct {
	RequestsPerSecond float64      `yaml:"requests_per_second"`
	Burst             int64        `yaml:"burst"`
	UnitsPerSecond    float64      `yaml:"units_per_second"`
	UnitsBurst        int64        `yaml:"units_burst"`
	DailyUnits        int64        `yaml:"daily_units"`
	MaxConnections    int64        `yaml:"max_connections"`
	MaxSubscriptions  int64        `yaml:"max_subscriptions"`
	Methods           MethodsEntry `yaml:"methods"`
	Networks          []string     `yaml:"networks"`    // the networks the plan may use; empty: every one
	PerNetwork        bool         `yaml:"per_network"` // limits counted per network (each network its own), not per key

	// LogsMaxRange is the largest eth_getLogs block range a call may ask (0: no limit).
	LogsMaxRange uint64 `yaml:"logs_max_range"`
}

// AnonymousEntry names the plan of calls without a key, limited per client address, and
// bounds the table of those addresses (gateway/anonymous.go).
type AnonymousEntry struct {
	Plan string `yaml:"plan"`
	// MaxClients and MaxBytes bound the table of client addresses (IPv4 addresses, IPv6
	// /64s and their aggregates); 0: the defaults, 100000 and 64 MiB.
	MaxClients int   `yaml:"max_clients"`
	MaxBytes   int64 `yaml:"max_bytes"`
	// Per48 and Per32 limit every IPv6 /64 of a /48 (of a /32) together. Absent: per /48
	// 16 times the plan's requests and units, per /32 no limit; present with no rate: off.
	Per48 *AggregateEntry `yaml:"per_48"`
	Per32 *AggregateEntry `yaml:"per_32"`
}

// AggregateEntry is the limit of a block of anonymous IPv6 clients together.
type AggregateEntry struct {
	RequestsPerSecond float64 `yaml:"requests_per_second"`
	Burst             int64   `yaml:"burst"`
	UnitsPerSecond    float64 `yaml:"units_per_second"`
	UnitsBurst        int64   `yaml:"units_burst"`
}

// ClientsEntry says which load balancers may name the client address (overrides
// -trusted-proxies and -proxy-protocol).
type ClientsEntry struct {
	TrustedProxies []string `yaml:"trusted_proxies"`
	ProxyProtocol  *bool    `yaml:"proxy_protocol"`
}

// UpstreamEntry is one upstream in the file.
type UpstreamEntry struct {
	Name        string       `yaml:"name"`
	HTTP        string       `yaml:"http"`
	WS          string       `yaml:"ws"`
	User        string       `yaml:"user"`
	Password    string       `yaml:"password"`
	Tier        string       `yaml:"tier"`
	Weight      int          `yaml:"weight"`
	MaxInFlight int          `yaml:"max_in_flight"`
	Methods     MethodsTable `yaml:"methods"`
	Archive     bool         `yaml:"archive"`
	SendOnly    bool         `yaml:"send_only"` // takes sends only (a relay): no reads, no heads
	Budget      *BudgetEntry `yaml:"budget"`
	// Kind picks the preset that classifies the provider's answers: infura, alchemy,
	// quicknode or generic ("": from the URL's host).
	Kind string `yaml:"kind"`
	// Errors are classification rules that come before the preset.
	Errors []ErrorEntry `yaml:"errors"`
	// QuotaReset is when an exhausted quota comes back: "HH:MM" UTC daily (default
	// "00:00") or "monthly:D".
	QuotaReset string `yaml:"quota_reset"`
	// Logs caps the upstream's eth_getLogs range (gateway/logs).
	Logs *UpstreamLogsEntry `yaml:"logs"`
}

// BudgetEntry is an upstream's budget (0 or absent: not limited): requests and cost
// units per second, cost units per UTC day, with costs from a preset (generic: 1 per
// call; alchemy: compute units; infura: credits) and per-method overrides.
type BudgetEntry struct {
	RequestsPerSecond float64          `yaml:"requests_per_second"`
	UnitsPerSecond    float64          `yaml:"units_per_second"`
	DailyUnits        int64            `yaml:"daily_units"`
	MethodCosts       map[string]int64 `yaml:"method_costs"`
	Costs             string           `yaml:"costs"`
}

// spec is the budget as the router takes it.
func (b *BudgetEntry) spec() upstream.BudgetSpec {
	if b == nil {
		return upstream.BudgetSpec{}
	}
	return upstream.BudgetSpec{RequestsPerSecond: b.RequestsPerSecond, UnitsPerSecond: b.UnitsPerSecond,
		DailyUnits: b.DailyUnits, MethodCosts: b.MethodCosts, Costs: b.Costs}
}

// minBudgetRate is the least budget rate: a budget's burst is at least one call, which
// at a lower rate takes longer than the limiter's bound (100 years) to refill.
const minBudgetRate = 1e-9

// check validates the budget; where names the upstream.
func (b *BudgetEntry) check(where string) error {
	if b == nil {
		return nil
	}
	switch {
	case !(b.RequestsPerSecond >= 0) || !(b.UnitsPerSecond >= 0) || b.DailyUnits < 0:
		return fmt.Errorf("%s: budget: limits must be >= 0 (0: not limited)", where)
	case b.RequestsPerSecond > 1e9 || b.UnitsPerSecond > 1e9 || b.DailyUnits > 1<<39:
		return fmt.Errorf("%s: budget: requests_per_second and units_per_second must be at most 1e9, daily_units at most 2^39", where)
	case b.RequestsPerSecond > 0 && b.RequestsPerSecond < minBudgetRate || b.UnitsPerSecond > 0 && b.UnitsPerSecond < minBudgetRate:
		what, v := "requests_per_second", b.RequestsPerSecond
		if !(v > 0 && v < minBudgetRate) {
			what, v = "units_per_second", b.UnitsPerSecond
		}
		return fmt.Errorf("%s: budget: %s %v is below 1e-9, the least rate the limiter holds (0: not limited)", where, what, v)
	case b.Costs != "" && !slices.Contains(upstream.CostPresets(), b.Costs):
		return fmt.Errorf("%s: budget: costs %q: want one of %s", where, b.Costs, strings.Join(upstream.CostPresets(), ", "))
	}
	for m, c := range b.MethodCosts {
		if !methodEntry.MatchString(m) || strings.HasSuffix(m, "*") {
			return fmt.Errorf("%s: budget: method_costs: %q is not a method name", where, m)
		}
		if c < 0 || c > 1<<30 {
			return fmt.Errorf("%s: budget: method_costs: %s must be between 0 and 2^30", where, m)
		}
	}
	return nil
}

// ErrorEntry classifies the answers that match every condition it sets (code: a
// JSON-RPC error code or websocket close code; http_status; message_contains, any
// case) as class (throttled, exhausted, unauthorized, method_refused, missing_data,
// client_error, broken or answer); backoff sets a throttle's back-off or an exhaustion's length.
type ErrorEntry struct {
	Code            *int64   `yaml:"code"`
	HTTPStatus      int      `yaml:"http_status"`
	MessageContains string   `yaml:"message_contains"`
	Class           string   `yaml:"class"`
	Backoff         Duration `yaml:"backoff"`
}

// MethodsEntry lists methods by name or by prefix (ending in _).
type MethodsEntry struct {
	Allow []string `yaml:"allow"`
	Deny  []string `yaml:"deny"`
}

// RoutingEntry overrides the routing flags.
type RoutingEntry struct {
	Retries       *int     `yaml:"retries"`
	HedgeQuantile *float64 `yaml:"hedge_quantile"`
	HedgeMaxExtra *float64 `yaml:"hedge_max_extra"`
	ArchiveDepth  *uint64  `yaml:"archive_depth"`
}

// HealthEntry overrides the health flags.
type HealthEntry struct {
	Window        *Duration `yaml:"window"`
	MinRequests   *int      `yaml:"min_requests"`
	MaxErrorRate  *float64  `yaml:"max_error_rate"`
	MaxFailures   *int      `yaml:"max_failures"`
	MaxLag        *uint64   `yaml:"max_lag"`
	SlowFactor    *float64  `yaml:"slow_factor"`
	SlowMin       *Duration `yaml:"slow_min"`
	BanMin        *Duration `yaml:"ban_min"`
	BanMax        *Duration `yaml:"ban_max"`
	Readmit       *int      `yaml:"readmit"`
	ProbeInterval *Duration `yaml:"probe_interval"`
}

// Duration is a duration written as Go writes one: 30s, 500ms, 5m.
type Duration time.Duration

// UnmarshalYAML reads a duration; the decoder adds the line to the error.
func (d *Duration) UnmarshalYAML(b []byte) error {
	s := strings.Trim(strings.TrimSpace(string(b)), `"'`)
	v, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("not a duration (e.g. 30s, 500ms, 5m)")
	}
	*d = Duration(v)
	return nil
}
