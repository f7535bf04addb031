package gateway

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/gateway/clientip"
	"github.com/infura-gateway/infura-gateway/gateway/config"
	"github.com/infura-gateway/infura-gateway/gateway/limit"
	"github.com/infura-gateway/infura-gateway/gateway/redisconn"
	"github.com/infura-gateway/infura-gateway/gateway/sharedcache"
	"github.com/infura-gateway/infura-gateway/proto"
)

// Access: API keys, the plans they are on, and the limits of each tenant.
//
// A tenant is a key (when keys are configured: in the path as Infura has it,
// /v3/<key> and /ws/v3/<key>, or in Authorization: Bearer / X-API-Key on any route) or,
// without one, its client address, limited by the anonymous plan. A key is kept only as
// its SHA-256: the configuration holds hashes, a request's key is hashed once and
// compared in constant time; it is named in logs and metrics by its configured name.
//
// Every limit is a handle of gateway/limit, created when the configuration loads: a
// check is an atomic operation on the handle, shared across replicas through Redis by
// allowances leased in the background. A call spends one request of requests_per_second
// and its method's cost of units_per_second and daily_units; a batch spends the sum of
// its elements.

// plan is a named set of limits. Zero means no limit of that kind.
type plan struct {
	name           string
	rps            float64
	burst          int64
	ups            float64 // units per second
	unitsBurst     int64
	daily          int64
	maxConns       int64
	maxSubs        int64
	allow, deny    proto.MethodSet
	fingerprintKey string
}

// tenant is who a call counts against: a key, or a client address on the anonymous
// plan. Its limit handles live as long as the configuration (keys) or the address's
// activity (anonymous).
type tenant struct {
	name    string   // the key's name, or "anonymous"
	hash    [32]byte // the key's SHA-256 (keys only)
	plan    *plan
	origins []string
	allow   proto.MethodSet
	deny    proto.MethodSet

	rps, ups *limit.Bucket
	daily    *limit.Quota
	conns    *limit.Slots
	subs     *limit.Slots

	m *tenantMetrics

	// Anonymous tenants only (anonymous.go).
	lastUse    atomic.Int64 // the table's clock (ns) at its last call
	holders    atomic.Int32 // websocket clients holding it
	prepaid    atomic.Bool  // its first request was charged to its aggregates on admission
	block      netip.Prefix // its key in the table
	agg        [2]*tenant   // the /48 and /32 aggregates its calls count against too
	rest       int64        // ns after its last call when its buckets are full again
	bytes      int64        // its estimated size
	refs       int          // aggregates: entries under it (under the table's lock)
	prev, next *tenant      // the table's order of use (under its lock)

	ref *tenantRef // keys only: the key across reloads

	sharedBudget sharedcache.Budget // bytes its answers may still write into Redis this minute
}

// tenantRef is where a long-lived session (a websocket) finds its tenant on every call,
// rather than keeping the one it connected with: a reload swaps what it holds. A key's
// ref follows the key across reloads (the key's tenant is replaced when its plan
// changes) and is revoked when the key is removed. An unkeyed session holds one of its
// own (socket2socket_access.go).
type tenantRef struct {
	cur     atomic.Pointer[tenant] // nil: not limited
	revoked atomic.Bool
}

// load returns the current tenant; ok is false once the key was removed.
func (r *tenantRef) load() (t *tenant, ok bool) {
	if r.revoked.Load() {
		return nil, false
	}
	return r.cur.Load(), true
}

type tenantMetrics struct {
	requests, units *metrics.Counter
	refused         [numRefusals]*metrics.Counter // by refusal
}

// Refusals, the limit label of gateway_key_refused_total.
const (
	refusedRate = iota
	refusedUnits
	refusedQuota
	refusedConnections
	refusedSubscriptions
	refusedMethod
	numRefusals
)

var refusalNames = [numRefusals]string{"rate", "units", "quota", "connections", "subscriptions", "method"}

func newCallerMetrics(s *Server, name string) *tenantMetrics {
	m := &tenantMetrics{}
	m.requests = s.reg.Counter(`gateway_key_requests_total{key="`+name+`"}`, "Requests (batch elements count one each) by API key name; anonymous tenants together.")
	m.units = s.reg.Counter(`gateway_key_units_total{key="`+name+`"}`, "Cost units spent by API key name.")
	for i, l := range refusalNames {
		m.refused[i] = s.reg.Counter(`gateway_key_refused_total{key="`+name+`",limit="`+l+`"}`,
			"Requests refused by API key name and by the limit that refused them.")
	}
	return m
}

// accessTable is one configuration of keys and plans; a reload swaps it whole.
type accessTable struct {
	keys     map[[32]byte]*tenant
	required bool // a call without a key gets 401 (a wrong key always does)
	anon     *plan
	costs    *costTable
}

// access is the Server's access control.
type access struct {
	s       *Server
	limiter *limit.Limiter
	table   atomic.Pointer[accessTable]

	anon  anonTable // the tenants of anonymous clients (anonymous.go)
	anonM *tenantMetrics
}

func newAccess(s *Server, lim *limit.Limiter) *access {
	a := &access{s: s, limiter: lim}
	a.anonM = newCallerMetrics(s, "anonymous")
	a.anon.init(a)
	return a
}

// load builds the table of ks, reusing the limit handles of keys whose plan did not
// change (their counts carry on); the handles of keys that went away are closed.
func (a *access) load(ks config.KeySettings) error {
	plans := map[string]*plan{}
	for name, p := range ks.Plans {
		pl := &plan{name: name, rps: p.RequestsPerSecond, burst: p.Burst, ups: p.UnitsPerSecond, unitsBurst: p.UnitsBurst,
			daily: p.DailyUnits, maxConns: p.MaxConnections, maxSubs: p.MaxSubscriptions,
			allow: proto.NewAllowSet(p.Methods.Allow), deny: proto.NewDenySet(p.Methods.Deny)}
		pl.fingerprintKey = fmt.Sprintf("%v/%v/%v/%v/%v/%v/%v/%v/%q/%q", p.RequestsPerSecond, p.Burst, p.UnitsPerSecond,
			p.UnitsBurst, p.DailyUnits, p.MaxConnections, p.MaxSubscriptions, name, p.Methods.Allow, p.Methods.Deny)
		plans[name] = pl
	}
	t := &accessTable{keys: map[[32]byte]*tenant{}, required: ks.Required, costs: newCostTable(ks.Costs)}
	if ks.Anonymous != "" {
		t.anon = plans[ks.Anonymous]
		if t.anon == nil {
			return fmt.Errorf("anonymous: no plan %q", ks.Anonymous)
		}
	}
	old := a.table.Load()
	for _, k := range ks.Keys {
		raw, err := hex.DecodeString(k.SHA256)
		if err != nil || len(raw) != sha256.Size {
			return fmt.Errorf("key %q: sha256 must be 64 hex digits", k.Name)
		}
		var h [32]byte
		copy(h[:], raw)
		pl := plans[k.Plan]
		if pl == nil {
			return fmt.Errorf("key %q: no plan %q", k.Name, k.Plan)
		}
		if _, dup := t.keys[h]; dup {
			return fmt.Errorf("key %q: the same key is configured twice", k.Name)
		}
		var c *tenant
		ref := &tenantRef{}
		if old != nil {
			if prev := old.keys[h]; prev != nil {
				ref = prev.ref
				if prev.name == k.Name && prev.plan.fingerprintKey == pl.fingerprintKey {
					c = prev
				}
			}
		}
		if c == nil {
			if c, err = a.newCaller("key:"+k.Name, pl); err != nil {
				return err
			}
			c.m = newCallerMetrics(a.s, k.Name)
			c.ref = ref
		}
		c.name, c.origins, c.hash = k.Name, k.Origins, h
		c.allow, c.deny = proto.NewAllowSet(k.Methods.Allow), proto.NewDenySet(k.Methods.Deny)
		t.keys[h] = c
	}
	a.table.Store(t)
	// Sessions follow: a key's sessions see its new tenant at their next call, a removed
	// key's are refused (and closed by the socket server's review).
	for _, c := range t.keys {
		c.ref.cur.Store(c)
	}
	if old != nil {
		for h, c := range old.keys {
			if t.keys[h] != c {
				c.close()
			}
			if t.keys[h] == nil {
				c.ref.cur.Store(nil)
				c.ref.revoked.Store(true)
			}
		}
	}
	a.anon.configure(t.anon, ks)
	return nil
}

// newCaller creates the limit handles of a plan, named prefix:kind.
func (a *access) newCaller(prefix string, pl *plan) (*tenant, error) {
	c := &tenant{plan: pl}
	var err error
	if pl.rps > 0 {
		if c.rps, err = a.limiter.NewBucket(prefix+":rps", pl.rps, max(pl.burst, int64(math.Ceil(pl.rps)))); err != nil {
			return nil, err
		}
	}
	if pl.ups > 0 {
		if c.ups, err = a.limiter.NewBucket(prefix+":ups", pl.ups, max(pl.unitsBurst, int64(math.Ceil(pl.ups)))); err != nil {
			return nil, err
		}
	}
	if pl.daily > 0 {
		if c.daily, err = a.limiter.NewQuota(prefix+":daily", pl.daily); err != nil {
			return nil, err
		}
	}
	if pl.maxConns > 0 {
		if c.conns, err = a.limiter.NewSlots(prefix+":conns", pl.maxConns); err != nil {
			return nil, err
		}
	}
	if pl.maxSubs > 0 {
		if c.subs, err = a.limiter.NewSlots(prefix+":subs", pl.maxSubs); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *tenant) close() {
	if c.rps != nil {
		c.rps.Close()
	}
	if c.ups != nil {
		c.ups.Close()
	}
	if c.daily != nil {
		c.daily.Close()
	}
	if c.conns != nil {
		c.conns.Close()
	}
	if c.subs != nil {
		c.subs.Close()
	}
}

var (
	errNoKey      = proto.NewError(proto.CodeServer, fasthttp.StatusUnauthorized, "missing API key: send it in the path (/v3/<key>), or as Authorization: Bearer <key> or X-API-Key")
	errBadKey     = proto.NewError(proto.CodeServer, fasthttp.StatusUnauthorized, "invalid API key")
	errBadOrigin  = proto.NewError(proto.CodeServer, fasthttp.StatusForbidden, "this API key does not allow requests from this origin")
	errMethodPlan = proto.NewError(proto.CodeMethodNotFound, fasthttp.StatusOK, "the method is not available on this API key's plan")
)

var (
	headerAuthorization = []byte("Authorization")
	headerAPIKey        = []byte("X-API-Key")
	bearerPrefix        = []byte("Bearer ")
)

// identify finds the tenant of a request: the key in the path, in
// Authorization: Bearer or in X-API-Key; without one, the client address on the
// anonymous plan (nil when that plan is not set: not limited).
func (a *access) identify(ctx *fasthttp.RequestCtx) (*tenant, *proto.Error) {
	t := a.table.Load()
	if t == nil {
		return nil, nil
	}
	var key []byte
	if len(t.keys) > 0 { // keys off: a key sent anyway is not looked at
		key = pathKey(ctx)
		if len(key) == 0 {
			if v := ctx.Request.Header.PeekBytes(headerAuthorization); len(v) > len(bearerPrefix) &&
				bytes.EqualFold(v[:len(bearerPrefix)], bearerPrefix) {
				key = v[len(bearerPrefix):]
			} else {
				key = ctx.Request.Header.PeekBytes(headerAPIKey)
			}
		}
	}
	if len(key) == 0 {
		switch {
		case t.required:
			return nil, errNoKey
		case t.anon == nil:
			return nil, nil
		}
		return a.anon.get(a.s.clientAddr(ctx))
	}
	h := sha256.Sum256(key)
	c := t.keys[h]
	// The map finds it by its hash; the comparison of the hashes is constant time.
	if c == nil || subtle.ConstantTimeCompare(h[:], c.hash[:]) != 1 {
		return nil, errBadKey
	}
	if len(c.origins) > 0 {
		if o := ctx.Request.Header.PeekBytes(headerOrigin); len(o) > 0 && !originAllowed(c.origins, o) {
			return nil, errBadOrigin
		}
	}
	return c, nil
}

// pathKey is the key in the path (/v3/<key>, /ws/v3/<key>), or nil.
func pathKey(ctx *fasthttp.RequestCtx) []byte {
	p := ctx.Path()
	if n := keyPrefix(p); n > 0 {
		return p[n:]
	}
	return nil
}

func originAllowed(allowed []string, origin []byte) bool {
	for _, o := range allowed {
		if o == "*" || len(o) == len(origin) && strings.EqualFold(o, unsafe.String(unsafe.SliceData(origin), len(origin))) {
			return true
		}
	}
	return false
}

// anonKey is whom anonymous limits count: an IPv4 address, or an IPv6 address's /64.
// A client usually holds a whole /64; per address it could take a fresh allowance from
// each, and fill the table of tenants until every new client shares the overflow one.
func anonKey(addr netip.Addr) netip.Addr {
	addr = addr.Unmap()
	if addr.Is6() {
		p, _ := addr.Prefix(64)
		return p.Addr()
	}
	return addr
}

// limitDescriptions name each limit in a refusal.
var limitDescriptions = [numRefusals]string{"requests per second", "units per second", "daily units quota",
	"concurrent connections", "subscriptions", "methods"}

// limitError is the answer to a refused check: 429, Retry-After, -32005 naming the
// limit and the plan.
func limitError(c *tenant, d limit.Decision, which int) *proto.Error {
	msg := limitDescriptions[which] + " limit of plan " + c.plan.name + " exceeded"
	switch d.Reason {
	case limit.ReasonRedisDown:
		msg = limitDescriptions[which] + " limit unavailable (Redis unreachable, limits fail closed)"
	case limit.ReasonTooLarge:
		msg = "request costs more than the " + limitDescriptions[which] + " limit of plan " + c.plan.name + " allows at once"
	}
	e := proto.NewError(proto.CodeLimitExceeded, fasthttp.StatusTooManyRequests, msg)
	e.RetryAfter = max(1, int(math.Ceil(d.RetryAfter.Seconds())))
	return e
}

// spend takes n requests and units of cost from c's limits; the first that refuses
// answers.
func (c *tenant) spend(n, cost int64) *proto.Error {
	if c == nil {
		return nil
	}
	if c.rps != nil {
		if d := c.rps.Take(n); !d.OK {
			c.m.refused[refusedRate].Inc()
			return limitError(c, d, refusedRate)
		}
	}
	if c.ups != nil {
		if d := c.ups.Take(cost); !d.OK {
			c.m.refused[refusedUnits].Inc()
			return limitError(c, d, refusedUnits)
		}
	}
	if c.daily != nil {
		if d := c.daily.Take(cost); !d.OK {
			c.m.refused[refusedQuota].Inc()
			return limitError(c, d, refusedQuota)
		}
	}
	if c.agg[0] != nil || c.agg[1] != nil {
		if e := c.spendAggregates(n, cost); e != nil {
			return e
		}
	}
	c.m.requests.Add(int(n))
	c.m.units.Add(int(cost))
	return nil
}

// allows reports whether c's plan and key let it make the call r: its method and, for
// eth_subscribe, its subscription kind, each with its family (proto.NewDenySet).
func (c *tenant) allows(r *proto.Request) bool {
	if c == nil {
		return true
	}
	return c.plan.allow.Allows(r) && !c.plan.deny.Names(r) && c.allow.Allows(r) && !c.deny.Names(r)
}

// acquire takes one of c's slots (connections or subscriptions).
func (c *tenant) acquire(s *limit.Slots, which int) *proto.Error {
	if c == nil || s == nil {
		return nil
	}
	if d := s.Acquire(); !d.OK {
		c.m.refused[which].Inc()
		return limitError(c, d, which)
	}
	return nil
}

// charge counts one call against its tenant's limits: the method must be on the plan,
// then one request and the method's cost. No tenant: not limited.
func (s *Server) charge(c *call) *proto.Error {
	t := c.who
	if t == nil {
		return nil
	}
	if !t.allows(&c.req) {
		t.m.refused[refusedMethod].Inc()
		return errMethodPlan
	}
	return t.spend(1, s.access.cost(&c.req))
}

// cost is the units r spends.
func (a *access) cost(r *proto.Request) int64 {
	if t := a.table.Load(); t != nil {
		return t.costs.of(r)
	}
	return defaultCost
}

// connSlots and subSlots are c's slot handles (nil: no such limit, or no tenant).
func (c *tenant) connSlots() *limit.Slots {
	if c == nil {
		return nil
	}
	return c.conns
}

func (c *tenant) subSlots() *limit.Slots {
	if c == nil {
		return nil
	}
	return c.subs
}

func release(s *limit.Slots) {
	if s != nil {
		s.Release()
	}
}

// clientAddr is the address a call is limited by: the TCP peer (the PROXY protocol's
// source when the listener reads it), or the X-Forwarded-For client when the peer is a
// trusted proxy. Every X-Forwarded-For line counts, in order: a proxy that appends a
// line of its own leaves the client's line first, and Peek would return only that one.
// PeekAll reuses the header's own slice: no allocation.
func (s *Server) clientAddr(ctx *fasthttp.RequestCtx) netip.Addr {
	peer, _ := netip.AddrFromSlice(ctx.RemoteIP())
	peer = peer.Unmap()
	if r := s.resolver.Load(); r != nil && r.Trusted(peer) {
		return r.ClientIP(peer, ctx.Request.Header.PeekAll(fasthttp.HeaderXForwardedFor)...)
	}
	return peer
}

// startAccess connects Redis (when configured), creates the limiter (shared through
// Redis, or per process) and the shared cache tier, and loads the keys.
func (s *Server) startAccess() error {
	cfg := &s.cfg
	s.describeAccessMetrics()
	s.proxyProtocol = cfg.ProxyProtocol
	trusted, err := clientip.ParsePrefixes(cfg.TrustedProxies)
	if err != nil {
		return err
	}
	s.resolver.Store(clientip.NewResolver(trusted))
	if cfg.RedisAddr != "" {
		rc := redisconn.Config{Addr: cfg.RedisAddr, Username: cfg.RedisUsername, Password: cfg.RedisPassword}
		if cfg.RedisTLS {
			rc.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		if s.redis, err = redisconn.New(rc, s.reg.Set); err != nil {
			return fmt.Errorf("redis: %w", err)
		}
		if cfg.SharedCache && cfg.CacheEnabled {
			// The shared tier gets a client and a breaker of its own: its large values
			// must not queue the limiter's leases behind them on one pipelined
			// connection, and its timeouts must not open the limiter's breaker (which
			// would put every limit in per-process fallback).
			rc.Name = "cache"
			if cfg.SharedCacheRedisAddr != "" {
				rc.Addr = cfg.SharedCacheRedisAddr // a cache-only instance (allkeys-lru)
			}
			if s.sharedRedis, err = redisconn.New(rc, s.reg.Set); err != nil {
				s.closeAccess()
				return fmt.Errorf("redis (cache): %w", err)
			}
		}
	}
	if s.limiter, err = limit.New(limit.Config{FailClosed: cfg.LimitsFailClosed}, s.redis, s.reg.Set); err != nil {
		s.closeAccess()
		return err
	}
	if s.sharedRedis != nil {
		tenantBytes := int64(cfg.SharedCacheTenantBytes)
		if tenantBytes == 0 {
			tenantBytes = -1 // no budget
		}
		s.shared, err = sharedcache.New(sharedcache.Config{TTL: cfg.SharedCacheTTL, MaxValueBytes: cfg.SharedCacheMaxValue,
			TenantBytesPerMinute: tenantBytes, AwaitNamespace: true}, s.sharedRedis, s.reg.Set)
		if err != nil {
			s.closeAccess()
			return err
		}
	}
	s.access = newAccess(s, s.limiter)
	if err := s.access.load(cfg.Keys); err != nil {
		s.closeAccess()
		return fmt.Errorf("keys: %w", err)
	}
	s.wg.Add(1)
	go s.sweepAnonymous()
	return nil
}

// learnChain asks the upstream for its chain id and makes it the shared cache tier's
// namespace, so gateways of different chains sharing one Redis never answer from each
// other's entries. Until then the tier is skipped. The ask is retried with backoff until
// it is answered or the server closes.
func (s *Server) learnChain() {
	defer s.wg.Done()
	var req proto.Request
	req.Set([]byte("eth_chainId"), nil)
	wait := 250 * time.Millisecond
	for tries := 1; ; tries++ {
		ans, err := s.http.Call(nil, &req, restID, time.Now().Add(2*time.Second))
		if err == nil {
			if id, ok := proto.ParseQuantity(proto.FirstMember(ans, "result").Bytes(ans)); ok {
				s.shared.SetNamespace("chain" + strconv.FormatUint(id, 10) + ":")
				s.log.Info("shared cache tier ready", "chain_id", id)
				return
			}
			err = errors.New("no chain id in the answer")
		}
		if tries == 3 {
			s.log.Warn("shared cache tier off until the upstream answers eth_chainId; retrying", "err", err)
		}
		select {
		case <-s.stop:
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// describeAccessMetrics writes the HELP texts of the families gateway/limit,
// gateway/redisconn and gateway/sharedcache create (they take a bare metrics.Set).
func (s *Server) describeAccessMetrics() {
	for name, help := range map[string]string{
		"gateway_limit_handles":                       "Limit handles alive (one per key and limit, and per active anonymous client address).",
		"gateway_limit_lease_calls_total":             "Allowances leased from Redis (one per handle and lease).",
		"gateway_limit_lease_errors_total":            "Leases that failed (Redis unreachable or slow); limits then fall back per process or fail closed.",
		"gateway_limit_lease_batches_total":           "Pipelined lease round trips to Redis.",
		"gateway_limit_wake_dropped_total":            "Early lease requests dropped because a shard's queue was full (the next periodic lease covers them).",
		"gateway_limit_fallback_total":                "Checks decided per process because Redis was unusable, by kind of limit.",
		"gateway_limit_refused_total":                 "Checks refused, by kind of limit and reason (exceeded, too_large, redis_down).",
		"gateway_sharedcache_ready":                   "1 once the shared cache tier knows the chain it serves (from the upstream's eth_chainId; its keys carry it); until then the tier is skipped.",
		"gateway_redis_up":                            "1 while the Redis connection is usable (its circuit breaker closed), 0 while it is not; client=\"redis\" is the limiter's, client=\"cache\" the shared cache tier's (each has its own connection and breaker).",
		"gateway_redis_calls_total":                   "Calls to Redis.",
		"gateway_redis_errors_total":                  "Calls to Redis that failed or passed their deadline.",
		"gateway_redis_breaker_opened_total":          "Times Redis was declared unusable after consecutive failures.",
		"gateway_redis_breaker_closed_total":          "Times Redis was usable again after a successful probe.",
		"gateway_sharedcache_requests_total":          "Shared cache (Redis) lookups by result: hit, miss, skipped (at once, Redis unusable).",
		"gateway_sharedcache_sets_total":              "Answers written to the shared cache.",
		"gateway_sharedcache_drops_total":             "Answers not written to the shared cache (queue full or write failed).",
		"gateway_sharedcache_errors_total":            "Shared cache calls that failed.",
		"gateway_sharedcache_value_too_large_total":   "Answers larger than -shared-cache-max-value, never stored.",
		"gateway_sharedcache_over_budget_total":       "Answers not written to the shared cache because their tenant had written its -shared-cache-tenant-bytes for the minute.",
		"gateway_sharedcache_leader_fetches_total":    "Misses this replica fetched from the upstream for every replica (it won the fetch claim).",
		"gateway_sharedcache_follower_hits_total":     "Misses answered by another replica's fetch while this one waited.",
		"gateway_sharedcache_follower_timeouts_total": "Waits for another replica's fetch that ran out; this replica fetched itself.",
		"gateway_sharedcache_queue_bytes":             "Bytes of answers waiting to be written to the shared cache.",
	} {
		s.reg.Describe(name, help)
	}
}

// reloadAccess applies the keys, plans and trusted proxies of a reloaded file.
func (s *Server) reloadAccess(next config.Config) error {
	trusted, err := clientip.ParsePrefixes(next.TrustedProxies)
	if err != nil {
		return err
	}
	if err := s.access.load(next.Keys); err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	s.resolver.Store(clientip.NewResolver(trusted))
	if s.s2s != nil {
		s.s2s.review() // open websockets follow: closed if their key went, on the new plan if it changed
	}
	return nil
}

// sweepAnonymous drops idle per-address limits once a minute.
func (s *Server) sweepAnonymous() {
	defer s.wg.Done()
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.access.anon.sweep()
		}
	}
}

// closeAccess ends the shared cache's writers, the limiter's leasing and the Redis
// connections, in that order (each uses its connection).
func (s *Server) closeAccess() {
	if s.shared != nil {
		s.shared.Close()
	}
	if s.sharedRedis != nil {
		s.sharedRedis.Close()
	}
	if s.limiter != nil {
		s.limiter.Close()
	}
	if s.redis != nil {
		s.redis.Close()
	}
}
