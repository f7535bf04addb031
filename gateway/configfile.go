package gateway

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/infura-gateway/infura-gateway/gateway/clientip"
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
	Routing   *RoutingEntry   `yaml:"routing"`
	Health    *HealthEntry    `yaml:"health"`
	// Keys, plans, costs and anonymous: who may call, and how much (access.go).
	Keys      *KeysEntry           `yaml:"keys"`
	Plans     map[string]PlanEntry `yaml:"plans"`
	Costs     map[string]int64     `yaml:"costs"`
	Anonymous *AnonymousEntry      `yaml:"anonymous"`
	Clients   *ClientsEntry        `yaml:"clients"`
	// SharedCache bounds the Redis cache tier (configshared.go).
	SharedCache *SharedCacheEntry `yaml:"shared_cache"`
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
}

// AnonymousEntry names the plan of calls without a key, limited per client address, and
// bounds the table of those addresses (anonymous.go).
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

// maxConfigFile bounds the file read.
const maxConfigFile = 4 << 20

var (
	upstreamName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	sha256Hex    = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
	methodEntry  = regexp.MustCompile(`^[A-Za-z0-9_]+\*?$`)
)

// readConfigFile reads and decodes path. Errors name the file and the line, never a
// value: the file may hold keys.
func readConfigFile(path string, getenv func(string) string) (*FileConfig, [32]byte, error) {
	var sum [32]byte
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, sum, fmt.Errorf("config file %s: %w", path, unwrapPathError(err))
	}
	if len(data) > maxConfigFile {
		return nil, sum, fmt.Errorf("config file %s: larger than %d bytes", path, maxConfigFile)
	}
	sum = sha256.Sum256(data)
	var f FileConfig
	if err := decodeYAML(data, &f); err != nil {
		return nil, sum, fmt.Errorf("config file %s: %s", path, yamlError(err))
	}
	if err := f.expand(getenv); err != nil {
		return nil, sum, fmt.Errorf("config file %s: %w", path, err)
	}
	if err := f.validate(); err != nil {
		return nil, sum, fmt.Errorf("config file %s: %w", path, err)
	}
	return &f, sum, nil
}

// decodeYAML decodes strictly. The decoder panics on some malformed input (found by
// FuzzConfigFile); a reload must refuse such a file, not take the gateway down.
func decodeYAML(data []byte, f *FileConfig) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = errors.New("not a valid configuration file (the YAML decoder failed on it)")
		}
	}()
	return yaml.UnmarshalWithOptions(data, f, yaml.Strict())
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// yamlError says where the decoder stopped, by line, and why; the decoder's own
// message quotes the source around the line, which may hold a key, so it is not used.
func yamlError(err error) string {
	var ye yaml.Error
	if errors.As(err, &ye) {
		msg := redactField(oneLine(ye.GetMessage()))
		if tk := ye.GetToken(); tk != nil && tk.Position != nil {
			return fmt.Sprintf("line %d: %s", tk.Position.Line, msg)
		}
		return msg
	}
	return redactField(oneLine(err.Error()))
}

// unknownField finds the name in the decoder's "unknown field" message. A name that
// does not read as a setting (a value pasted where a key goes) is not repeated.
var unknownField = regexp.MustCompile(`unknown field "([^"]*)"`)

var settingName = regexp.MustCompile(`^[a-z][a-z_]{0,39}$`)

func redactField(msg string) string {
	return unknownField.ReplaceAllStringFunc(msg, func(m string) string {
		if name := unknownField.FindStringSubmatch(m)[1]; settingName.MatchString(name) {
			return m
		}
		return "unknown field (not a setting name)"
	})
}

// envPrefix: variables named for the gateway's configuration file expand without
// being listed.
const envPrefix = "GATEWAY_"

// builtinEnv are the gateway's own upstream credentials (documented with the flags):
// the gateway sends them to an upstream anyway, so a file may name them unlisted.
// REDIS_PASSWORD and the like are not among them: they must never reach an upstream.
var builtinEnv = []string{"INFURA_PROJECT_ID", "INFURA_PROJECT_SECRET"}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// expand replaces ${VAR} (and $VAR) in the upstreams' strings with the environment.
// Only variables meant for the file expand: GATEWAY_*, builtinEnv and env_allow. Any
// other is an error naming it, so a typo or a pasted example cannot carry a process
// secret (a cloud credential, the Redis password) into an upstream URL and from there
// into errors and metric labels. A variable that is not set is an error naming it too
// (a key missing from the Secret should stop the gateway, not send requests to a URL
// without it). Errors never hold a value.
func (f *FileConfig) expand(getenv func(string) string) error {
	for i, name := range f.EnvAllow {
		if !envName.MatchString(name) {
			return fmt.Errorf("env_allow entry %d: not a variable name (letters, digits and _)", i+1)
		}
	}
	allowed := func(name string) bool {
		return strings.HasPrefix(name, envPrefix) || slices.Contains(builtinEnv, name) || slices.Contains(f.EnvAllow, name)
	}
	for i := range f.Upstreams {
		u := &f.Upstreams[i]
		// Errors name the upstream by its name as written: expanded, it may be a value.
		where := fmt.Sprintf("upstream %d (%q)", i+1, u.Name)
		if strings.Contains(u.Name, "$") {
			where = fmt.Sprintf("upstream %d", i+1)
		}
		for _, field := range []*string{&u.Name, &u.HTTP, &u.WS, &u.User, &u.Password} {
			var refused, missing string
			*field = os.Expand(*field, func(name string) string {
				if !allowed(name) {
					if refused == "" {
						refused = name
					}
					return ""
				}
				v := getenv(name)
				if v == "" && missing == "" {
					missing = name
				}
				return v
			})
			switch {
			case refused != "" && envName.MatchString(refused):
				return fmt.Errorf("%s: ${%s} is not allowed: only %s* variables, %s and those listed in env_allow expand",
					where, refused, envPrefix, strings.Join(builtinEnv, ", "))
			case refused != "":
				return fmt.Errorf("%s: a $ that is not a ${VAR} reference (write the value in a GATEWAY_* variable)", where)
			case missing != "":
				return fmt.Errorf("%s: environment variable %s is not set", where, missing)
			}
		}
	}
	return nil
}

func (f *FileConfig) validate() error {
	if len(f.Upstreams) == 0 && f.Keys == nil && f.Anonymous == nil && f.SharedCache == nil {
		return errors.New("no upstreams: list at least one under upstreams: (or configure keys: or anonymous: and take the upstream from the flags)")
	}
	if err := f.validateAccess(); err != nil {
		return err
	}
	names := map[string]bool{}
	primaries := 0
	for i, u := range f.Upstreams {
		where := fmt.Sprintf("upstream %d (%q)", i+1, u.Name)
		switch {
		case !upstreamName.MatchString(u.Name):
			return fmt.Errorf("%s: name must be 1-63 of a-z, 0-9, _ and -, starting with a letter or digit", where)
		case names[u.Name]:
			return fmt.Errorf("%s: the name is used twice", where)
		case u.Tier != "" && u.Tier != "primary" && u.Tier != "fallback":
			return fmt.Errorf("%s: tier must be primary or fallback", where)
		case u.Weight < 0 || u.MaxInFlight < 0:
			return fmt.Errorf("%s: weight and max_in_flight must be >= 0", where)
		}
		names[u.Name] = true
		if err := checkURL(where+" http", u.HTTP, "http", "https"); err != nil {
			return err
		}
		if u.WS != "" {
			if err := checkURL(where+" ws", u.WS, "ws", "wss"); err != nil {
				return err
			}
		}
		for _, m := range append(append([]string(nil), u.Methods.Allow...), u.Methods.Deny...) {
			if !methodEntry.MatchString(m) {
				return fmt.Errorf("%s: method %q: want a method name or a prefix ending in _", where, m)
			}
		}
		if u.Tier != "fallback" {
			primaries++
		}
	}
	if primaries == 0 && len(f.Upstreams) > 0 {
		return errors.New("every upstream is a fallback: mark at least one primary")
	}
	return nil
}

// validateAccess checks keys, plans, costs, anonymous and clients. Errors name the key
// by its name and never echo a hash.
func (f *FileConfig) validateAccess() error {
	for name, p := range f.Plans {
		where := fmt.Sprintf("plan %q", name)
		switch {
		case !upstreamName.MatchString(name):
			return fmt.Errorf("%s: name must be 1-63 of a-z, 0-9, _ and -", where)
		case p.RequestsPerSecond < 0 || p.UnitsPerSecond < 0 || p.Burst < 0 || p.UnitsBurst < 0 ||
			p.DailyUnits < 0 || p.MaxConnections < 0 || p.MaxSubscriptions < 0:
			return fmt.Errorf("%s: limits must be >= 0 (0: no limit)", where)
		case p.RequestsPerSecond > 1e9 || p.UnitsPerSecond > 1e9 || p.Burst > 1<<40 || p.UnitsBurst > 1<<40:
			return fmt.Errorf("%s: requests_per_second and units_per_second at most 1e9, burst and units_burst at most 2^40", where)
		case p.DailyUnits > 1<<39:
			return fmt.Errorf("%s: daily_units at most 2^39", where)
		case p.MaxConnections > 1<<30 || p.MaxSubscriptions > 1<<30:
			return fmt.Errorf("%s: max_connections and max_subscriptions at most 2^30", where)
		}
		if err := checkMethods(where, p.Methods); err != nil {
			return err
		}
	}
	if k := f.Keys; k != nil {
		names := map[string]bool{}
		hashes := map[string]bool{}
		for i, e := range k.Entries {
			where := fmt.Sprintf("key %d (%q)", i+1, e.Name)
			switch {
			case !upstreamName.MatchString(e.Name):
				return fmt.Errorf("%s: name must be 1-63 of a-z, 0-9, _ and -: it labels metrics", where)
			case names[e.Name]:
				return fmt.Errorf("%s: the name is used twice", where)
			case !sha256Hex.MatchString(e.SHA256):
				return fmt.Errorf("%s: sha256 must be the key's SHA-256 in 64 hex digits (printf %%s KEY | sha256sum)", where)
			case hashes[strings.ToLower(e.SHA256)]:
				return fmt.Errorf("%s: the same key is listed twice", where)
			case e.Plan == "":
				return fmt.Errorf("%s: plan is required", where)
			}
			if _, ok := f.Plans[e.Plan]; !ok {
				return fmt.Errorf("%s: no plan %q under plans:", where, e.Plan)
			}
			for _, o := range e.Origins {
				if o != "*" && !strings.HasPrefix(o, "http://") && !strings.HasPrefix(o, "https://") {
					return fmt.Errorf("%s: origin %q: want * or a scheme and host such as https://app.example.com", where, o)
				}
			}
			if err := checkMethods(where, e.Methods); err != nil {
				return err
			}
			names[e.Name] = true
			hashes[strings.ToLower(e.SHA256)] = true
		}
	}
	if a := f.Anonymous; a != nil {
		if _, ok := f.Plans[a.Plan]; !ok && a.Plan != "" {
			return fmt.Errorf("anonymous: no plan %q under plans:", a.Plan)
		}
		if a.MaxClients < 0 || a.MaxClients > 1e7 || a.MaxBytes < 0 || a.MaxBytes > 1<<40 {
			return errors.New("anonymous: max_clients must be in [0, 10000000] and max_bytes in [0, 2^40] (0: the default)")
		}
		for name, g := range map[string]*AggregateEntry{"per_48": a.Per48, "per_32": a.Per32} {
			if g != nil && !(g.RequestsPerSecond >= 0 && g.RequestsPerSecond <= 1e9 && g.UnitsPerSecond >= 0 && g.UnitsPerSecond <= 1e9 &&
				g.Burst >= 0 && g.Burst <= 1<<40 && g.UnitsBurst >= 0 && g.UnitsBurst <= 1<<40) {
				return fmt.Errorf("anonymous: %s: rates must be in [0, 1e9] and bursts in [0, 2^40] (0: no limit of that kind)", name)
			}
		}
	}
	for m, c := range f.Costs {
		if m != "default" && !methodEntry.MatchString(m) {
			return fmt.Errorf("costs: %q is not a method name", m)
		}
		if c < 0 || c > 1e6 {
			return fmt.Errorf("costs: %s: units must be between 0 and 1000000", m)
		}
	}
	if c := f.Clients; c != nil {
		if _, err := clientip.ParsePrefixes(c.TrustedProxies); err != nil {
			return fmt.Errorf("clients: trusted_proxies: %v", err)
		}
	}
	return nil
}

func checkMethods(where string, m MethodsEntry) error {
	for _, x := range append(append([]string(nil), m.Allow...), m.Deny...) {
		if !methodEntry.MatchString(x) {
			return fmt.Errorf("%s: method %q: want a method name or a prefix ending in _", where, x)
		}
	}
	return nil
}

// apply sets the file's settings on c: the upstreams always, routing and health where
// the file has them.
func (f *FileConfig) apply(c *Config) {
	c.Upstreams = c.Upstreams[:0]
	f.applyAccess(c)
	f.SharedCache.apply(c)
	for _, u := range f.Upstreams {
		tier := upstream.TierPrimary
		if u.Tier == "fallback" {
			tier = upstream.TierFallback
		}
		c.Upstreams = append(c.Upstreams, upstream.Spec{Name: u.Name, HTTPURL: u.HTTP, WSURL: u.WS,
			User: u.User, Password: u.Password, Tier: tier, Weight: u.Weight, MaxInFlight: u.MaxInFlight,
			Allow: u.Methods.Allow, Deny: u.Methods.Deny, Archive: u.Archive})
	}
	if r := f.Routing; r != nil {
		set(&c.Retries, r.Retries)
		set(&c.HedgeQuantile, r.HedgeQuantile)
		set(&c.HedgeMaxExtra, r.HedgeMaxExtra)
		set(&c.ArchiveDepth, r.ArchiveDepth)
	}
	if h := f.Health; h != nil {
		setDuration(&c.HealthWindow, h.Window)
		set(&c.BanMinRequests, h.MinRequests)
		set(&c.BanErrorRate, h.MaxErrorRate)
		set(&c.BanFailures, h.MaxFailures)
		set(&c.MaxLag, h.MaxLag)
		set(&c.SlowFactor, h.SlowFactor)
		setDuration(&c.SlowMin, h.SlowMin)
		setDuration(&c.BanMin, h.BanMin)
		setDuration(&c.BanMax, h.BanMax)
		set(&c.Readmit, h.Readmit)
		setDuration(&c.ProbeInterval, h.ProbeInterval)
	}
}

// applyAccess sets the keys, plans, costs, anonymous plan and trusted proxies.
func (f *FileConfig) applyAccess(c *Config) {
	ks := KeySettings{Plans: map[string]PlanEntry{}, Costs: f.Costs}
	for name, p := range f.Plans {
		ks.Plans[name] = p
	}
	if f.Keys != nil {
		ks.Keys = append(ks.Keys, f.Keys.Entries...)
		ks.Required = len(ks.Keys) > 0
		set(&ks.Required, f.Keys.Required)
	}
	if a := f.Anonymous; a != nil {
		ks.Anonymous = a.Plan
		ks.AnonymousMaxClients, ks.AnonymousMaxBytes = a.MaxClients, a.MaxBytes
		ks.AnonymousPer48, ks.AnonymousPer32 = a.Per48, a.Per32
	}
	c.Keys = ks
	if cl := f.Clients; cl != nil {
		if cl.TrustedProxies != nil {
			c.TrustedProxies = cl.TrustedProxies
		}
		set(&c.ProxyProtocol, cl.ProxyProtocol)
	}
}

func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

func setDuration(dst *time.Duration, v *Duration) {
	if v != nil {
		*dst = time.Duration(*v)
	}
}

// LoadFile applies the configuration file of base (base.ConfigFile) on top of base and
// validates the result; it returns base unchanged when no file is configured. Reloads
// call it with the configuration the flags gave at start.
func LoadFile(base Config, getenv func(string) string) (Config, [32]byte, error) {
	if base.flags != nil {
		base = *base.flags
		flags := base
		base.flags = &flags
	}
	if base.ConfigFile == "" {
		return base, [32]byte{}, nil
	}
	f, sum, err := readConfigFile(base.ConfigFile, getenv)
	if err != nil {
		return base, sum, err
	}
	c := base
	c.Upstreams = nil
	f.apply(&c)
	if len(f.Upstreams) == 0 {
		c.Upstreams = nil // the flags' upstream
	}
	if err := c.Validate(); err != nil {
		return base, sum, fmt.Errorf("config file %s: %w", base.ConfigFile, err)
	}
	return c, sum, nil
}
