package config

import (
	"errors"
	"strings"
	"time"
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
	// Keys, plans, costs and anonymous: who may call, and how much (gateway/access.go).
	Keys      *KeysEntry           `yaml:"keys"`
	Plans     map[string]PlanEntry `yaml:"plans"`
	Costs     map[string]int64     `yaml:"costs"`
	Anonymous *AnonymousEntry      `yaml:"anonymous"`
	Clients   *ClientsEntry        `yaml:"clients"`
	// SharedCache bounds the Redis cache tier (shared.go).
	SharedCache *SharedCacheEntry `yaml:"shared_cache"`
	Logs        *LogsEntry        `yaml:"logs"`
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
	Methods     MethodsEntry `yaml:"methods"`
	Archive     bool         `yaml:"archive"`
	// Kind is the provider (infura, alchemy, quicknode, generic): its eth_getLogs cap preset.
	Kind string             `yaml:"kind"`
	Logs *UpstreamLogsEntry `yaml:"logs"`
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
