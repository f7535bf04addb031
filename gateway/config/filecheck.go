package config

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/clientip"
	"github.com/infura-gateway/infura-gateway/upstream"
)

// validate checks the file on its own (the merged configuration is checked by
// Config.Validate in LoadFile).
func (f *FileConfig) validate() error {
	if len(f.Upstreams) == 0 && len(f.Networks) == 0 && f.Keys == nil && f.Anonymous == nil && f.SharedCache == nil {
		return errors.New("no upstreams: list at least one under upstreams: (or configure keys: or anonymous: and take the upstream from the flags)")
	}
	if err := f.validateAccess(); err != nil {
		return err
	}
	if err := validateUpstreams("", f.Upstreams); err != nil {
		return err
	}
	if err := f.Methods.check(""); err != nil {
		return err
	}
	if err := f.validateBroadcast(); err != nil {
		return err
	}
	if err := f.validateConsensus(); err != nil {
		return err
	}
	if err := f.Logs.validate("", true); err != nil {
		return err
	}
	return f.validateNetworks()
}

// validateUpstreams checks one list of upstreams (the top level's, or a network's: where
// names it in errors).
func validateUpstreams(where string, ups []UpstreamEntry) error {
	names := map[string]bool{}
	primaries := 0
	for i, u := range ups {
		where := fmt.Sprintf("%supstream %d (%q)", where, i+1, u.Name)
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
		if err := u.Budget.check(where); err != nil {
			return err
		}
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
		if err := u.Methods.Policies.check(where + ": "); err != nil {
			return err
		}
		if err := checkClassify(where, u); err != nil {
			return err
		}
		if err := validateUpstreamLogs(where, u); err != nil {
			return err
		}
		if u.Tier != "fallback" && !u.SendOnly {
			primaries++
		}
	}
	if primaries == 0 && len(ups) > 0 {
		return errors.New(where + "every upstream is a fallback or send_only: mark at least one primary that serves reads")
	}
	return nil
}

// checkClassify checks an upstream's kind, errors: rules and quota_reset.
func checkClassify(where string, u UpstreamEntry) error {
	if !upstream.ValidKind(u.Kind) {
		return fmt.Errorf("%s: kind %q: want infura, alchemy, quicknode or generic (or leave it out: detected from the URL)", where, u.Kind)
	}
	for i, e := range u.Errors {
		if _, err := e.rule(); err != nil {
			return fmt.Errorf("%s: errors rule %d: %v", where, i+1, err)
		}
	}
	if _, err := upstream.ParseQuotaReset(u.QuotaReset); err != nil {
		return fmt.Errorf("%s: %v", where, err)
	}
	return nil
}

// rule is the upstream rule of e, or why there is none.
func (e ErrorEntry) rule() (upstream.ErrorRule, error) {
	c, err := upstream.ParseAnswerClass(e.Class)
	if err != nil {
		return upstream.ErrorRule{}, err
	}
	r := upstream.ErrorRule{HTTPStatus: e.HTTPStatus, MessageContains: e.MessageContains, Class: c, Backoff: time.Duration(e.Backoff)}
	if e.Code != nil {
		r.Code, r.HasCode = *e.Code, true
	}
	return r, r.Validate()
}

// validateAccess checks keys, plans, costs, anonymous and clients. Errors name the key
// by its name and never echo a hash.
func (f *FileConfig) validateAccess() error {
	for name, p := range f.Plans {
		where := fmt.Sprintf("plan %q", name)
		switch {
		case !upstreamName.MatchString(name):
			return fmt.Errorf("%s: name must be 1-63 of a-z, 0-9, _ and -", where)
		case !(p.RequestsPerSecond >= 0) || !(p.UnitsPerSecond >= 0) || p.Burst < 0 || p.UnitsBurst < 0 ||
			p.DailyUnits < 0 || p.MaxConnections < 0 || p.MaxSubscriptions < 0:
			return fmt.Errorf("%s: limits must be >= 0 (0: no limit)", where)
		case p.RequestsPerSecond > 1e9 || p.UnitsPerSecond > 1e9 || p.Burst > 1<<40 || p.UnitsBurst > 1<<40:
			return fmt.Errorf("%s: requests_per_second and units_per_second at most 1e9, burst and units_burst at most 2^40", where)
		case p.DailyUnits > 1<<39:
			return fmt.Errorf("%s: daily_units at most 2^39", where)
		case p.MaxConnections > 1<<30 || p.MaxSubscriptions > 1<<30:
			return fmt.Errorf("%s: max_connections and max_subscriptions at most 2^30", where)
		}
		if err := checkRefill(where+": burst", p.RequestsPerSecond, p.Burst); err != nil {
			return err
		}
		if err := checkRefill(where+": units_burst", p.UnitsPerSecond, p.UnitsBurst); err != nil {
			return err
		}
		if err := checkMethods(where, p.Methods); err != nil {
			return err
		}
		if err := validatePlanLogs(where, p); err != nil {
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
			if g == nil {
				continue
			}
			if err := checkRefill("anonymous: "+name+": burst", g.RequestsPerSecond, g.Burst); err != nil {
				return err
			}
			if err := checkRefill("anonymous: "+name+": units_burst", g.UnitsPerSecond, g.UnitsBurst); err != nil {
				return err
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
	c.Upstreams = appendSpecs(c.Upstreams, f.Upstreams)
	c.Methods = f.Methods.specs()
	c.Logs.UpstreamCap = upstreamLogsCap(f.Upstreams)
	f.Logs.apply(&c.Logs)
	f.Routing.apply(c)
	f.Health.apply(c)
	c.Broadcast = f.Broadcast.resolve()
	c.Consensus = f.Consensus.resolve()
	set(&c.BudgetReplicas, f.SharedBudgetReplicas)
	f.applyNetworks(c)
}

// appendSpecs appends the upstream specs of entries to dst.
func appendSpecs(dst []upstream.Spec, entries []UpstreamEntry) []upstream.Spec {
	for _, u := range entries {
		tier := upstream.TierPrimary
		if u.Tier == "fallback" {
			tier = upstream.TierFallback
		}
		// Validated with the file (checkClassify): the errors here cannot happen.
		var rules []upstream.ErrorRule
		for _, e := range u.Errors {
			r, _ := e.rule()
			rules = append(rules, r)
		}
		reset, _ := upstream.ParseQuotaReset(u.QuotaReset)
		dst = append(dst, upstream.Spec{Name: u.Name, HTTPURL: u.HTTP, WSURL: u.WS,
			User: u.User, Password: u.Password, Tier: tier, Weight: u.Weight, MaxInFlight: u.MaxInFlight,
			Allow: u.Methods.Allow, Deny: u.Methods.Deny, Archive: u.Archive, Methods: u.Methods.Policies.specs(),
			SendOnly: u.SendOnly, Budget: u.Budget.spec(), Kind: u.Kind, Errors: rules, QuotaReset: reset})
	}
	return dst
}

// apply sets the routing settings r has on c (nil: none).
func (r *RoutingEntry) apply(c *Config) {
	if r == nil {
		return
	}
	set(&c.Retries, r.Retries)
	set(&c.HedgeQuantile, r.HedgeQuantile)
	set(&c.HedgeMaxExtra, r.HedgeMaxExtra)
	set(&c.ArchiveDepth, r.ArchiveDepth)
}

// apply sets the health settings h has on c (nil: none).
func (h *HealthEntry) apply(c *Config) {
	if h != nil {
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

// maxRefillSeconds is limit.MaxRefill (100 years): the longest a bucket's burst may take
// to refill, its arithmetic being int64 nanoseconds.
const maxRefillSeconds = 100 * 365 * 24 * 3600

// checkRefill refuses a rate whose bucket the limiter cannot hold: its burst (at least a
// second of the rate, as the limits make it) refilling in more than maxRefillSeconds.
// what names the burst ("plan \"free\": burst").
func checkRefill(what string, rate float64, burst int64) error {
	b := max(burst, int64(math.Ceil(rate)))
	if rate > 0 && float64(b)/rate > maxRefillSeconds {
		return fmt.Errorf("%s %d at %v per second takes more than 100 years to refill: the limiter cannot hold it (raise the rate or lower the burst)", what, b, rate)
	}
	return nil
}
