package config

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/infura-gateway/infura-gateway/upstream"
)

// Several networks (chains) in one gateway. The file's networks: list names them; each
// has its own upstreams and may override routing, health and the method deny-list.
// Without networks:, the top-level upstreams (or the flags' one) form one network,
// DefaultNetwork; with the Infura shorthand, -infura-networks names Infura's networks.

// NetworkEntry is one entry of the file's networks: list.
type NetworkEntry struct {
	Name        string          `yaml:"name"`
	ChainID     uint64          `yaml:"chain_id"`
	Aliases     []string        `yaml:"aliases"`
	Hosts       []string        `yaml:"hosts"`
	Default     bool            `yaml:"default"`
	Upstreams   []UpstreamEntry `yaml:"upstreams"`
	Routing     *RoutingEntry   `yaml:"routing"`
	Health      *HealthEntry    `yaml:"health"`
	Cache       *CacheEntry     `yaml:"cache"`
	DenyMethods []string        `yaml:"deny_methods"`
	Methods     MethodPolicies  `yaml:"methods"`
	Broadcast   *BroadcastEntry `yaml:"broadcast"`
	Consensus   *ConsensusEntry `yaml:"consensus"`
	Logs        *LogsEntry      `yaml:"logs"`
}

// CacheEntry is a network's override of the response cache's settings (the flags
// -cache, -cache-size, -cache-max-bytes, -cache-max-age, -cache-depth).
type CacheEntry struct {
	Enabled  *bool     `yaml:"enabled"`
	Size     *int      `yaml:"size"`
	MaxBytes *int      `yaml:"max_bytes"`
	MaxAge   *Duration `yaml:"max_age"`
	Depth    *uint64   `yaml:"depth"`
}

// apply sets the cache settings e has on c (nil: none).
func (e *CacheEntry) apply(c *Config) {
	if e == nil {
		return
	}
	set(&c.CacheEnabled, e.Enabled)
	set(&c.CacheSize, e.Size)
	set(&c.CacheMaxBytes, e.MaxBytes)
	setDuration(&c.CacheMaxAge, e.MaxAge)
	set(&c.CacheDepth, e.Depth)
}

// Network is one network of the configuration: what a request addressed to it (by
// path prefix or Host) is served with.
type Network struct {
	Name    string
	ChainID uint64 // 0: not configured (the single network of the flags): learned, not checked
	Aliases []string
	Hosts   []string // exact host names, or *.suffix
	Default bool     // requests without a prefix or a host match go here

	Upstreams   []upstream.Spec
	routing     *RoutingEntry
	health      *HealthEntry
	cache       *CacheEntry
	denyMethods []string // nil: the gateway's
	methods     []upstream.MethodPolicy
	// Broadcast is the network's transaction broadcast; nil: off.
	Broadcast *Broadcast
	// Consensus is the network's consensus; nil: off.
	Consensus *upstream.ConsensusConfig
	logs      *LogsEntry
	logsCap   uint64 // the smallest eth_getLogs cap of its upstreams (config/logs.go)
}

// MaxNetworks bounds the networks numbered for per-network counters (a process sees at
// most this many network names, reloads included).
const MaxNetworks = 64

// DefaultNetwork names the one network of a configuration without networks:.
const DefaultNetwork = "default"

// networkName is a network's name or alias: a path segment and a metric label value.
var networkName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// CouldBeNetworkName reports whether a path segment has the shape of a network's name
// (networkName, checked without the regexp: it runs on unknown paths).
func CouldBeNetworkName(b []byte) bool {
	if len(b) == 0 || len(b) > 63 || b[0] == '-' {
		return false
	}
	for _, c := range b {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// reservedNames are the first path segments of the gateway's own routes: a network
// named so would shadow them.
var reservedNames = []string{"v3", "ws", "health", "readyz", "blocknumber", "gasprice", "blockbynumber",
	"txbyblockandindex", "socket2socket", "status", "metrics", "debug"}

// hostName is an exact host name, or *.suffix.
var hostName = regexp.MustCompile(`^(\*\.)?[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?)*$`)

// InfuraChains are the chain ids of Infura's network names (-infura-networks).
var InfuraChains = map[string]uint64{
	"mainnet": 1, "sepolia": 11155111, "holesky": 17000, "hoodi": 560048,
	"arbitrum-mainnet": 42161, "arbitrum-sepolia": 421614, "optimism-mainnet": 10, "optimism-sepolia": 11155420,
	"base-mainnet": 8453, "base-sepolia": 84532, "polygon-mainnet": 137, "polygon-amoy": 80002,
	"linea-mainnet": 59144, "linea-sepolia": 59141, "avalanche-mainnet": 43114, "avalanche-fuji": 43113,
	"bsc-mainnet": 56, "scroll-mainnet": 534352, "zksync-mainnet": 324, "blast-mainnet": 81457,
	"mantle-mainnet": 5000, "celo-mainnet": 42220,
}

// NetworkList returns the configured networks, in order: the file's networks:, the
// Infura shorthand's, or the one network of the top-level upstreams (or the flags).
func (c *Config) NetworkList() []Network {
	if len(c.Networks) > 0 {
		return c.Networks
	}
	return []Network{{Name: DefaultNetwork, Default: true, Upstreams: c.UpstreamSpecs(), Broadcast: c.Broadcast,
		Consensus: c.Consensus}}
}

// ForNetwork returns the configuration network n is served with: c with n's upstreams
// and its overrides of routing, health and the deny-list applied.
func (c *Config) ForNetwork(n Network) *Config {
	nc := *c
	nc.Upstreams = n.Upstreams
	n.routing.apply(&nc)
	n.health.apply(&nc)
	n.cache.apply(&nc)
	if n.denyMethods != nil {
		nc.DenyMethods = n.denyMethods
	}
	nc.Methods = mergePolicies(c.Methods, n.methods)
	if len(c.Networks) > 0 {
		// A network's upstreams are its own: the top level's caps are not its.
		nc.Logs.UpstreamCap = n.logsCap
		n.logs.apply(&nc.Logs)
	}
	return &nc
}

// applyNetworks sets the file's networks on c. A file with top-level upstreams and no
// networks: serves those as the one network, over the Infura shorthand's.
func (f *FileConfig) applyNetworks(c *Config) {
	if len(f.Networks) == 0 {
		if len(f.Upstreams) > 0 {
			c.Networks = nil
		}
		return
	}
	c.Networks = nil
	for _, e := range f.Networks {
		n := Network{Name: e.Name, ChainID: e.ChainID, Aliases: e.Aliases, Hosts: lowerAll(e.Hosts), Default: e.Default,
			Upstreams: appendSpecs(nil, e.Upstreams), routing: e.Routing, health: e.Health, cache: e.Cache,
			methods: e.Methods.specs(), Broadcast: f.Broadcast.resolve(), logs: e.Logs, logsCap: upstreamLogsCap(e.Upstreams)}
		if e.Broadcast != nil {
			n.Broadcast = e.Broadcast.resolve()
		}
		n.Consensus = f.Consensus.resolve()
		if e.Consensus != nil {
			n.Consensus = e.Consensus.resolve()
		}
		if e.DenyMethods != nil {
			n.denyMethods = e.DenyMethods
			if len(e.DenyMethods) == 1 && e.DenyMethods[0] == "none" {
				n.denyMethods = []string{}
			}
		}
		c.Networks = append(c.Networks, n)
	}
	markDefault(c.Networks)
}

// markDefault makes the first network the default when none says it is.
func markDefault(ns []Network) {
	for _, n := range ns {
		if n.Default {
			return
		}
	}
	if len(ns) > 0 {
		ns[0].Default = true
	}
}

// infuraNetworks expands the Infura shorthand for -infura-networks.
func (c *Config) infuraNetworks() {
	if c.InfuraProject == "" || c.InfuraNetworks == "" || len(c.Networks) > 0 {
		return
	}
	for _, name := range strings.Split(c.InfuraNetworks, ",") {
		name = strings.TrimSpace(name)
		c.Networks = append(c.Networks, Network{Name: name, ChainID: InfuraChains[name], Upstreams: []upstream.Spec{{
			Name: "infura-" + name, HTTPURL: "https://" + name + ".infura.io/v3/" + c.InfuraProject,
			WSURL: "wss://" + name + ".infura.io/ws/v3/" + c.InfuraProject, User: c.UpstreamUser,
			Password: c.UpstreamSecret, Tier: upstream.TierPrimary, Weight: 1, Archive: true}}})
	}
	markDefault(c.Networks)
}

// validateNetworks checks the file's networks: list on its own.
func (f *FileConfig) validateNetworks() error {
	if len(f.Networks) == 0 {
		return nil
	}
	if len(f.Upstreams) > 0 {
		return errors.New("networks: and a top-level upstreams: list: put the upstreams under their network")
	}
	seen := map[string]string{} // name or alias → network
	hosts := map[string]string{}
	defaults := 0
	for i, n := range f.Networks {
		where := fmt.Sprintf("network %d (%q)", i+1, n.Name)
		if n.ChainID == 0 {
			return fmt.Errorf("%s: chain_id is required (the chain its upstreams must serve)", where)
		}
		for _, name := range append([]string{n.Name}, n.Aliases...) {
			switch {
			case !networkName.MatchString(name):
				return fmt.Errorf("%s: %q: a name or alias is 1-63 of a-z, 0-9 and -, starting with a letter or digit", where, name)
			case slices.Contains(reservedNames, name):
				return fmt.Errorf("%s: %q is one of the gateway's own routes (%s)", where, name, strings.Join(reservedNames, ", "))
			case seen[name] != "":
				return fmt.Errorf("%s: %q is already the name or an alias of network %q", where, name, seen[name])
			}
			seen[name] = n.Name
		}
		for _, h := range n.Hosts {
			h = strings.ToLower(h)
			switch {
			case !hostName.MatchString(h):
				return fmt.Errorf("%s: host %q: want a host name (no port, no scheme) or *.suffix", where, h)
			case len(strings.TrimPrefix(h, "*")) > 253:
				return fmt.Errorf("%s: host %q: longer than a DNS name (253 bytes)", where, h)
			case hosts[h] != "":
				return fmt.Errorf("%s: host %q is already a host of network %q", where, h, hosts[h])
			}
			hosts[h] = n.Name
		}
		if n.Default {
			defaults++
		}
		if len(n.Upstreams) == 0 {
			return fmt.Errorf("%s: no upstreams: list at least one", where)
		}
		if err := validateUpstreams(where+": ", n.Upstreams); err != nil {
			return err
		}
		if err := n.Methods.check(where + ": "); err != nil {
			return err
		}
		if err := n.Logs.validate(where+": ", false); err != nil {
			return err
		}
		if c := n.Cache; c != nil && (c.Size != nil && *c.Size < 1 || c.MaxBytes != nil && *c.MaxBytes < 1 ||
			c.MaxAge != nil && *c.MaxAge <= 0) {
			return fmt.Errorf("%s: cache: size, max_bytes and max_age must be positive", where)
		}
		for _, m := range n.DenyMethods {
			if m != "none" && !methodEntry.MatchString(m) {
				return fmt.Errorf("%s: deny_methods: %q: want a method name or a prefix ending in _", where, m)
			}
		}
	}
	if defaults > 1 {
		return errors.New("networks: more than one network says default: true")
	}
	return nil
}

// validateInfuraNetworks checks -infura-networks.
func (c *Config) validateInfuraNetworks() error {
	if c.InfuraNetworks == "" {
		return nil
	}
	seen := map[string]bool{}
	for _, name := range strings.Split(c.InfuraNetworks, ",") {
		name = strings.TrimSpace(name)
		if _, ok := InfuraChains[name]; !ok {
			known := make([]string, 0, len(InfuraChains))
			for k := range InfuraChains {
				known = append(known, k)
			}
			sort.Strings(known)
			return fmt.Errorf("-infura-networks: %q is not an Infura network this gateway knows the chain id of (%s); list it under networks: in the configuration file instead",
				name, strings.Join(known, ", "))
		}
		if seen[name] {
			return fmt.Errorf("-infura-networks: %q twice", name)
		}
		seen[name] = true
	}
	return nil
}

// NetworkNames lists the names of the configured networks, for errors.
func (c *Config) NetworkNames() []string {
	var out []string
	for _, n := range c.NetworkList() {
		out = append(out, n.Name)
	}
	return out
}

func lowerAll(in []string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = strings.ToLower(s)
	}
	return out
}

// validatePlanNetworks checks that plans name configured networks only.
func (c *Config) validatePlanNetworks() error {
	known := map[string]bool{}
	for _, n := range c.NetworkList() {
		known[n.Name] = true
	}
	for name, p := range c.Keys.Plans {
		for _, n := range p.Networks {
			if !known[n] {
				return fmt.Errorf("plan %q: networks: %q is not a configured network (%s)", name, n, strings.Join(c.NetworkNames(), ", "))
			}
		}
	}
	return nil
}
