// Package access decides who a call counts against and whether it may go on: API keys,
// the plans they are on, the limits of each tenant and the anonymous clients' table.
// It imports limit/, clientip/, sharedcache/ (a tenant's write budget), config/ and proto/;
// nothing of the gateway above it.
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
package access

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"math"
	"net/netip"
	"strings"
	"sync/atomic"
	"unsafe"

	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/gateway/clientip"
	"github.com/infura-gateway/infura-gateway/gateway/config"
	"github.com/infura-gateway/infura-gateway/gateway/limit"
	"github.com/infura-gateway/infura-gateway/proto"
	"github.com/infura-gateway/infura-gateway/upstream"
)

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
	networks       map[string]bool // nil: every network
	perNetwork     bool            // a key's limits count per network
	logsMaxRange   uint64          // the largest eth_getLogs block range a call may ask (0: no limit)
	fingerprintKey string
}

// accessTable is one configuration of keys and plans; a reload swaps it whole.
type accessTable struct {
	keys     map[[32]byte]*Tenant
	required bool // a call without a key gets 401 (a wrong key always does)
	anon     *plan
	costs    *costTable
}

// Access is the gateway's access control: the key table, the anonymous clients' table
// and who a client is (its address, through trusted proxies).
type Access struct {
	reg      *upstream.Registry
	limiter  *limit.Limiter
	table    atomic.Pointer[accessTable]
	resolver atomic.Pointer[clientip.Resolver]
	// version counts the loads done (Version), moved once a load is complete.
	version atomic.Uint64

	anon  anonTable // the tenants of anonymous clients (anonymous.go)
	anonM *tenantMetrics
}

// New makes an Access whose limits are handles of lim and whose metrics are in reg.
// Load gives it its keys, SetTrustedProxies its proxies.
func New(reg *upstream.Registry, lim *limit.Limiter) *Access {
	a := &Access{reg: reg, limiter: lim}
	a.anonM = a.newCallerMetrics("anonymous")
	a.anon.init(a)
	a.resolver.Store(clientip.NewResolver(nil))
	return a
}

// SetTrustedProxies replaces the proxies whose X-Forwarded-For is believed.
func (a *Access) SetTrustedProxies(trusted []netip.Prefix) {
	a.resolver.Store(clientip.NewResolver(trusted))
}

// Resolver is where the PROXY protocol listener finds the trusted proxies: the same
// list X-Forwarded-For is read by, swapped by SetTrustedProxies.
func (a *Access) Resolver() *atomic.Pointer[clientip.Resolver] { return &a.resolver }

// SweepAnonymous drops the anonymous clients' entries idle and at rest (once a minute).
func (a *Access) SweepAnonymous() { a.anon.sweep() }

// Load builds the table of ks, reusing the limit handles of keys whose plan did not
// change (their counts carry on); the handles of keys that went away are closed.
func (a *Access) Load(ks config.KeySettings) error {
	plans := map[string]*plan{}
	for name, p := range ks.Plans {
		pl := &plan{name: name, rps: p.RequestsPerSecond, burst: p.Burst, ups: p.UnitsPerSecond, unitsBurst: p.UnitsBurst,
			daily: p.DailyUnits, maxConns: p.MaxConnections, maxSubs: p.MaxSubscriptions,
			allow: proto.NewAllowSet(p.Methods.Allow), deny: proto.NewDenySet(p.Methods.Deny)}
		pl.perNetwork = p.PerNetwork
		pl.logsMaxRange = p.LogsMaxRange
		if len(p.Networks) > 0 {
			pl.networks = map[string]bool{}
			for _, n := range p.Networks {
				pl.networks[n] = true
			}
		}
		pl.fingerprintKey = fmt.Sprintf("%v/%v/%v/%v/%v/%v/%v/%v/%q/%q/%q", p.RequestsPerSecond, p.Burst, p.UnitsPerSecond,
			p.UnitsBurst, p.DailyUnits, p.MaxConnections, p.MaxSubscriptions, name, p.Methods.Allow, p.Methods.Deny, p.Networks) +
			fmt.Sprint(p.PerNetwork) + "/" + fmt.Sprint(p.LogsMaxRange)
		plans[name] = pl
	}
	t := &accessTable{keys: map[[32]byte]*Tenant{}, required: ks.Required, costs: newCostTable(ks.Costs)}
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
		var c *Tenant
		ref := &Ref{}
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
			c.m = a.newCallerMetrics(k.Name)
			c.ref = ref
			if pl.perNetwork {
				c.perNet = &perNetwork{a: a, prefix: "key:" + k.Name}
			}
		}
		c.name, c.origins, c.hash = k.Name, k.Origins, h
		c.allow, c.deny = proto.NewAllowSet(k.Methods.Allow), proto.NewDenySet(k.Methods.Deny)
		if p := c.perNet; p != nil { // its per-network tenants follow the key's entry
			for i := range p.nets {
				if s := p.nets[i].Load(); s != nil {
					s.name, s.origins, s.hash, s.allow, s.deny = c.name, c.origins, c.hash, c.allow, c.deny
				}
			}
		}
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
	a.version.Add(1)
	return nil
}

// Version counts the key tables loaded, moved once a load is complete: a session that
// saw an older one may not have been reviewed for the newest yet (a socket reviews
// itself at its next call rather than wait for the server's review).
func (a *Access) Version() uint64 { return a.version.Load() }

// newCaller creates the limit handles of a plan, named prefix:kind.
func (a *Access) newCaller(prefix string, pl *plan) (*Tenant, error) {
	c := &Tenant{plan: pl}
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

var (
	errNoKey      = proto.NewError(proto.CodeServer, fasthttp.StatusUnauthorized, "missing API key: send it in the path (/v3/<key>), or as Authorization: Bearer <key> or X-API-Key")
	errBadKey     = proto.NewError(proto.CodeServer, fasthttp.StatusUnauthorized, "invalid API key")
	errTwoKeys    = proto.NewError(proto.CodeInvalidRequest, fasthttp.StatusBadRequest, "two different API keys in Authorization and X-API-Key: send one")
	errBadOrigin  = proto.NewError(proto.CodeServer, fasthttp.StatusForbidden, "this API key does not allow requests from this origin")
	ErrMethodPlan = proto.NewError(proto.CodeMethodNotFound, fasthttp.StatusOK, "the method is not available on this API key's plan")
)

// Header names in fasthttp's canonical form, as its server stores a request's (it
// normalizes them as it parses). X-API-Key is stored as X-Api-Key; it is read with
// PeekAll, which sees every line of it.
var (
	headerAPIKeyName = "X-Api-Key"
	bearerPrefix     = []byte("Bearer ")
	// HeaderOrigin is read by a key's origin list, CORS and the websocket upgrade.
	HeaderOrigin = []byte("Origin")
)

// Identify finds the tenant of a request: the key in the path, in
// Authorization: Bearer or in X-API-Key; without one, the client address on the
// anonymous plan (nil when that plan is not set: not limited).
func (a *Access) Identify(ctx *fasthttp.RequestCtx) (*Tenant, *proto.Error) {
	t := a.table.Load()
	if t == nil {
		return nil, nil
	}
	var key []byte
	if len(t.keys) > 0 { // keys off: a key sent anyway is not looked at
		key = pathKey(ctx)
		if len(key) == 0 {
			var perr *proto.Error
			if key, perr = headerKey(&ctx.Request.Header); perr != nil {
				return nil, perr
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
		return a.anon.get(a.ClientAddr(ctx))
	}
	h := sha256.Sum256(key)
	c := t.keys[h]
	// The map finds it by its hash; the comparison of the hashes is constant time.
	if c == nil || subtle.ConstantTimeCompare(h[:], c.hash[:]) != 1 {
		return nil, errBadKey
	}
	if len(c.origins) > 0 {
		if o := ctx.Request.Header.PeekCanonical(HeaderOrigin); len(o) > 0 && !originAllowed(c.origins, o) {
			return nil, errBadOrigin
		}
	}
	return c, nil
}

// headerKey is the key in Authorization: Bearer or in X-API-Key. Two different keys
// there (two lines of either, or one of each) are refused rather than one picked: a
// proxy in front may have checked the other one, and which key is billed is not for
// the client to choose. The same key twice is one key.
func headerKey(h *fasthttp.RequestHeader) ([]byte, *proto.Error) {
	var key []byte
	for _, v := range h.PeekAll(fasthttp.HeaderAuthorization) {
		if len(v) > len(bearerPrefix) && bytes.EqualFold(v[:len(bearerPrefix)], bearerPrefix) {
			if key != nil && !bytes.Equal(key, v[len(bearerPrefix):]) {
				return nil, errTwoKeys
			}
			key = v[len(bearerPrefix):]
		}
	}
	for _, v := range h.PeekAll(headerAPIKeyName) {
		if len(v) > 0 {
			if key != nil && !bytes.Equal(key, v) {
				return nil, errTwoKeys
			}
			key = v
		}
	}
	return key, nil
}

// pathKey is the key in the path (/v3/<key>, /ws/v3/<key>), or nil.
func pathKey(ctx *fasthttp.RequestCtx) []byte {
	p := ctx.Path()
	if n := KeyPrefix(p); n > 0 {
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
func anonKey(addr netip.Addr) netip.Addr { return clientip.Key(addr) }

// anonBlock is anonKey as a prefix: an IPv4 address's /32, an IPv6 address's /64.
func anonBlock(addr netip.Addr) netip.Prefix {
	k := clientip.Key(addr)
	if k.Is6() {
		return netip.PrefixFrom(k, 64)
	}
	return netip.PrefixFrom(k, 32)
}

// Cost is the units r spends.
func (a *Access) Cost(r *proto.Request) int64 {
	if t := a.table.Load(); t != nil {
		return t.costs.of(r)
	}
	return defaultCost
}

// ClientAddr is the address a call is limited by: the TCP peer (the PROXY protocol's
// source when the listener reads it), or the X-Forwarded-For client when the peer is a
// trusted proxy. Every X-Forwarded-For line counts, in order: a proxy that appends a
// line of its own leaves the client's line first, and Peek would return only that one.
// PeekAll reuses the header's own slice: no allocation.
func (a *Access) ClientAddr(ctx *fasthttp.RequestCtx) netip.Addr {
	peer, _ := netip.AddrFromSlice(ctx.RemoteIP())
	peer = peer.Unmap()
	if r := a.resolver.Load(); r != nil && r.Trusted(peer) {
		return r.ClientIP(peer, ctx.Request.Header.PeekAll(fasthttp.HeaderXForwardedFor)...)
	}
	return peer
}

// The key routes: POST /v3/<key> and GET /ws/v3/<key>, as Infura has them.
var (
	PrefixRPCKey = []byte("/v3/")
	PrefixWSKey  = []byte("/ws/v3/")
)

// KeyPrefix returns the length of the key route prefix of path when what follows it is
// one non-empty segment (the key), or 0.
func KeyPrefix(path []byte) int {
	for _, p := range [...][]byte{PrefixRPCKey, PrefixWSKey} {
		if len(path) > len(p) && bytes.HasPrefix(path, p) && bytes.IndexByte(path[len(p):], '/') < 0 {
			return len(p)
		}
	}
	return 0
}

// Rebind resolves an unkeyed session's own Ref again after a reload: by its address on
// the anonymous plan now in force, or nil when anonymous calls are not limited.
// keyRequired (the Ref is revoked) means the configuration now requires a key; perr,
// that the anonymous plan's aggregates refuse the address block.
func (a *Access) Rebind(own *Ref, addr netip.Addr) (keyRequired bool, perr *proto.Error) {
	t := a.table.Load()
	switch {
	case t == nil:
	case t.required:
		own.revoked.Store(true)
		return true, nil
	case t.anon == nil:
		own.cur.Store(nil)
	default:
		c, perr := a.anon.get(addr)
		if perr != nil {
			return false, perr
		}
		own.cur.Store(c)
	}
	return false, nil
}
