package access

import (
	"math"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/gateway/config"
	"github.com/infura-gateway/infura-gateway/gateway/limit"
	"github.com/infura-gateway/infura-gateway/gateway/sharedcache"
	"github.com/infura-gateway/infura-gateway/proto"
	"github.com/infura-gateway/infura-gateway/upstream"
)

// Tenant is who a call counts against: a key, or a client address on the anonymous
// plan. Its limit handles live as long as the configuration (keys) or the address's
// activity (anonymous).
type Tenant struct {
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
	agg        [2]*Tenant   // the /48 and /32 aggregates its calls count against too
	rest       int64        // ns after its last call when its buckets are full again
	bytes      int64        // its estimated size
	refs       int          // aggregates: entries under it (under the table's lock)
	prev, next *Tenant      // the table's order of use (under its lock)

	ref *Ref // keys only: the key across reloads

	perNet *perNetwork // a key on a plan with per_network limits: its tenants per network (On)

	sharedBudget sharedcache.Budget // bytes its answers may still write into Redis this minute
}

// Ref is where a long-lived session (a websocket) finds its tenant on every call,
// rather than keeping the one it connected with: a reload swaps what it holds. A key's
// ref follows the key across reloads (the key's tenant is replaced when its plan
// changes) and is revoked when the key is removed. An unkeyed session holds one of its
// own (socket2socket_access.go).
type Ref struct {
	cur     atomic.Pointer[Tenant] // nil: not limited
	revoked atomic.Bool
}

// Load returns the current tenant; ok is false once the key was removed.
func (r *Ref) Load() (t *Tenant, ok bool) {
	if r.revoked.Load() {
		return nil, false
	}
	return r.cur.Load(), true
}

type tenantMetrics struct {
	requests, units *metrics.Counter
	// byNetwork counts requests per network (by network index), created on first use.
	byNetwork [config.MaxNetworks]atomic.Pointer[metrics.Counter]
	name      string
	reg       *upstream.Registry
	mu        sync.Mutex
	refused   [numRefusals]*metrics.Counter // by refusal
}

// Refusals, the limit label of gateway_key_refused_total.
const (
	refusedRate = iota
	refusedUnits
	refusedQuota
	RefusedConnections
	RefusedSubscriptions
	refusedMethod
	refusedNetwork
	numRefusals
)

var refusalNames = [numRefusals]string{"rate", "units", "quota", "connections", "subscriptions", "method", "network"}

func (a *Access) newCallerMetrics(name string) *tenantMetrics {
	m := &tenantMetrics{name: name, reg: a.reg}
	m.requests = a.reg.Counter(`gateway_key_requests_total{key="`+name+`"}`, "Requests (batch elements count one each) by API key name; anonymous tenants together.")
	m.units = a.reg.Counter(`gateway_key_units_total{key="`+name+`"}`, "Cost units spent by API key name.")
	for i, l := range refusalNames {
		m.refused[i] = a.reg.Counter(`gateway_key_refused_total{key="`+name+`",limit="`+l+`"}`,
			"Requests refused by API key name and by the limit that refused them.")
	}
	return m
}

func (c *Tenant) close() {
	if p := c.perNet; p != nil {
		for i := range p.nets {
			if s := p.nets[i].Load(); s != nil {
				s.close()
			}
		}
	}
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

// limitDescriptions name each limit in a refusal.
var limitDescriptions = [numRefusals]string{"requests per second", "units per second", "daily units quota",
	"concurrent connections", "subscriptions", "methods", "networks"}

// limitError is the answer to a refused check: 429, Retry-After, -32005 naming the
// limit and the plan.
func limitError(c *Tenant, d limit.Decision, which int) *proto.Error {
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
func (c *Tenant) Spend(n, cost int64) *proto.Error {
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
func (c *Tenant) Allows(r *proto.Request) bool {
	if c == nil {
		return true
	}
	return c.plan.allow.Allows(r) && !c.plan.deny.Names(r) && c.allow.Allows(r) && !c.deny.Names(r)
}

// acquire takes one of c's slots (connections or subscriptions).
func (c *Tenant) Acquire(s *limit.Slots, which int) *proto.Error {
	if c == nil || s == nil {
		return nil
	}
	if d := s.Acquire(); !d.OK {
		c.m.refused[which].Inc()
		return limitError(c, d, which)
	}
	return nil
}

// Move hands a slot held on from to to (c's): a client moving to c after a reload.
// Between a key's handles before and after a plan change it needs no free slot beside
// the moved one (limit.Slots.MoveFrom). Refused, the slot stays on from. No limit on
// c's side: from's slot is given back; none on from's: a slot is taken on to.
func (c *Tenant) Move(from, to *limit.Slots, which int) *proto.Error {
	switch {
	case to == nil:
		Release(from)
		return nil
	case from == nil:
		return c.Acquire(to, which)
	}
	if d := to.MoveFrom(from); !d.OK {
		c.m.refused[which].Inc()
		return limitError(c, d, which)
	}
	return nil
}

// connSlots and subSlots are c's slot handles (nil: no such limit, or no tenant).
func (c *Tenant) ConnSlots() *limit.Slots {
	if c == nil {
		return nil
	}
	return c.conns
}

func (c *Tenant) SubSlots() *limit.Slots {
	if c == nil {
		return nil
	}
	return c.subs
}

func Release(s *limit.Slots) {
	if s != nil {
		s.Release()
	}
}

// Charge counts one call against t's limits: the method must be on the plan, then one
// request and cost units. No tenant: not limited.
func (t *Tenant) Charge(r *proto.Request, cost int64) *proto.Error {
	if t == nil {
		return nil
	}
	if !t.Allows(r) {
		return t.RefuseMethod()
	}
	return t.Spend(1, cost)
}

// RefuseMethod counts a call refused because its method is not on t's plan, and
// returns the answer to it.
func (t *Tenant) RefuseMethod() *proto.Error {
	t.m.refused[refusedMethod].Inc()
	return ErrMethodPlan
}

// Ref returns where a long-lived session finds this key's tenant across reloads; nil
// for an anonymous tenant (the session holds a Ref of its own).
func (c *Tenant) Ref() *Ref {
	if c == nil {
		return nil
	}
	return c.ref
}

// SharedBudget is the tenant's budget of bytes written to the shared cache tier.
func (c *Tenant) SharedBudget() *sharedcache.Budget { return &c.sharedBudget }

// Set makes t the tenant r holds (a session's own Ref: unkeyed clients).
func (r *Ref) Set(t *Tenant) { r.cur.Store(t) }

// LogsMaxRange is the largest eth_getLogs block range t's plan lets a call ask (0: no
// limit, or no tenant).
func (t *Tenant) LogsMaxRange() uint64 {
	if t == nil || t.plan == nil {
		return 0
	}
	return t.plan.logsMaxRange
}

// CheckNetwork refuses (403, counted) a call to a network t's plan does not include;
// nil when it does, or without a tenant.
func (t *Tenant) CheckNetwork(name string) *proto.Error {
	if t == nil || t.plan.networks == nil || t.plan.networks[name] {
		return nil
	}
	t.m.refused[refusedNetwork].Inc()
	return errNetworkPlan
}

var errNetworkPlan = proto.NewError(proto.CodeServer, fasthttp.StatusForbidden,
	"this network is not available on this API key's plan")

// CountNetwork counts n requests of t on the network numbered idx, called name
// (gateway_key_network_requests_total): a key's usage by network. Its limits stay the
// key's.
func (t *Tenant) CountNetwork(idx int, name string, n int64) {
	if t == nil || idx < 0 || idx >= config.MaxNetworks {
		return
	}
	m := t.m
	c := m.byNetwork[idx].Load()
	if c == nil {
		m.mu.Lock()
		if c = m.byNetwork[idx].Load(); c == nil {
			c = m.reg.Counter(`gateway_key_network_requests_total{key="`+m.name+`",network="`+name+`"}`,
				"Requests (batch elements count one each) by API key name and network; anonymous tenants together.")
			m.byNetwork[idx].Store(c)
		}
		m.mu.Unlock()
	}
	c.Add(int(n))
}

// perNetwork is a key's own tenants, one per network, when its plan counts limits per
// network; made at load for those keys only (an entry of the anonymous table stays
// small).
type perNetwork struct {
	a      *Access
	prefix string // the key's limit handles' names
	mu     sync.Mutex
	nets   [config.MaxNetworks]atomic.Pointer[Tenant]
}

// On returns the tenant whose limits a call on the network numbered idx (called name)
// spends: t itself, or, for a key whose plan counts limits per network (per_network),
// the key's own tenant for that network, made on its first call there. It shares the
// key's name, metrics, methods and Ref.
func (t *Tenant) On(idx int, name string) *Tenant {
	if t == nil || t.perNet == nil || idx < 0 || idx >= config.MaxNetworks {
		return t
	}
	p := t.perNet
	if s := p.nets[idx].Load(); s != nil {
		return s
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if s := p.nets[idx].Load(); s != nil {
		return s
	}
	s, err := p.a.newCaller(p.prefix+"@"+name, t.plan)
	if err != nil {
		return t // the limiter refused a handle: the key's own limits rather than none
	}
	s.name, s.hash, s.origins, s.allow, s.deny, s.m, s.ref = t.name, t.hash, t.origins, t.allow, t.deny, t.m, t.ref
	p.nets[idx].Store(s)
	return s
}
