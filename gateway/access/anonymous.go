package access

import (
	"fmt"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/infura-gateway/infura-gateway/gateway/config"
	"github.com/infura-gateway/infura-gateway/proto"
)

// Anonymous tenants: one per client address block, in a bounded table.
//
// A call without a key is limited per IPv4 address or IPv6 /64 (anonKey). The table of
// these tenants is bounded in entries and, by an estimate of each entry's size, in bytes.
// To make room only entries at rest are evicted: idle for longer than their buckets take
// to fill from empty (so a new entry's full burst is what the old one would have had
// anyway), holding no websocket, connection or subscription, and, with a daily quota
// kept per process, last used on an earlier UTC day (a quota in Redis outlives the entry:
// a new handle reads the same count). When nothing is at rest, a new address shares one
// overflow tenant until something is: an active client is never evicted, so eviction
// cannot give anyone a fresh allowance.
//
// IPv6 blocks are also limited together per /48 and per /32 (aggregates): a client
// holding a /44 gets sixteen /48s' allowance, not 2^20 /64s'. An aggregate is an entry of
// the table too, kept while any entry under it is. A new /64 enters the table only if
// its aggregates grant it a request (that request's share), so the refused calls of
// fresh /64s create nothing, here or in Redis.
type anonTable struct {
	a *Access

	mu       sync.Mutex
	entries  map[netip.Prefix]*Tenant
	lru      Tenant // sentinel: lru.next is the most recently used, lru.prev the least
	plan     *plan  // nil: anonymous calls are not limited
	agg      [2]*plan
	max      int    // entries
	fp       string // the settings the entries were made for
	overflow *Tenant
	epoch    time.Time

	size, bytes       atomic.Int64
	evictedForRoom    *metrics.Counter
	evictedIdle       *metrics.Counter
	overflowed        *metrics.Counter
	aggregateRefusals *metrics.Counter
}

const (
	defaultAnonMaxClients = 100000
	defaultAnonMaxBytes   = 64 << 20
	// anonIdle is how long an entry at rest stays before the sweep drops it.
	anonIdle = 10 * time.Minute
	// anonRestMargin is added to the time an entry's buckets take to fill: its last
	// call's checks come a moment after the lookup that stamps its use.
	anonRestMargin = time.Second
	// anonProbes bounds the entries looked at to make room for one.
	anonProbes = 8
	// The estimate of an entry's heap bytes: the tenant, its map slot, and per limit
	// handle its state, names and registration (TestAnonymousEntryBytes measures it).
	anonEntryBase   = 640
	anonHandleBytes = 448
)

var aggBits = [2]int{48, 32}

func (t *anonTable) init(a *Access) {
	t.a = a
	t.entries = map[netip.Prefix]*Tenant{}
	t.lru.prev, t.lru.next = &t.lru, &t.lru
	t.epoch = time.Now()
	r := a.reg
	r.Gauge(`gateway_anonymous_table_entries`, "Entries of the anonymous clients' table (IPv4 addresses, IPv6 /64s and their /48 and /32 aggregates).",
		func() float64 { return float64(t.size.Load()) })
	r.Gauge(`gateway_anonymous_table_bytes`, "Estimated heap bytes of the anonymous clients' table.",
		func() float64 { return float64(t.bytes.Load()) })
	help := "Entries of the anonymous clients' table evicted, by reason: room (the table was full; only entries at rest), idle (the minutely sweep)."
	t.evictedForRoom = r.Counter(`gateway_anonymous_evictions_total{reason="room"}`, help)
	t.evictedIdle = r.Counter(`gateway_anonymous_evictions_total{reason="idle"}`, help)
	t.overflowed = r.Counter(`gateway_anonymous_overflow_total`, "New anonymous clients that shared the overflow allowance: the table was full and nothing in it at rest.")
	t.aggregateRefusals = r.Counter(`gateway_anonymous_aggregate_refused_total`, "Anonymous calls refused by the limit of their IPv6 /48 or /32.")
}

func (t *anonTable) now() int64 { return int64(time.Since(t.epoch)) }

// configure applies a loaded configuration; when the plan, the aggregates or the bounds
// changed, every entry starts anew.
func (t *anonTable) configure(pl *plan, ks config.KeySettings) {
	var agg [2]*plan
	fp := ""
	if pl != nil {
		for i, g := range [2]*config.AggregateEntry{ks.AnonymousPer48, ks.AnonymousPer32} {
			if i == 0 && g == nil { // the default: sixteen /64s' worth per /48, within limit's bounds
				g = &config.AggregateEntry{RequestsPerSecond: min(16*pl.rps, 1e9), Burst: min(16*max(pl.burst, int64(math.Ceil(pl.rps))), 1<<40),
					UnitsPerSecond: min(16*pl.ups, 1e9), UnitsBurst: min(16*max(pl.unitsBurst, int64(math.Ceil(pl.ups))), 1<<40)}
			}
			if g != nil && (g.RequestsPerSecond > 0 || g.UnitsPerSecond > 0) {
				agg[i] = &plan{name: fmt.Sprintf("%s per /%d", pl.name, aggBits[i]), rps: g.RequestsPerSecond, burst: g.Burst,
					ups: g.UnitsPerSecond, unitsBurst: g.UnitsBurst}
			}
		}
		fp = fmt.Sprintf("%s|%d|%d|%+v|%+v", pl.fingerprintKey, ks.AnonymousMaxClients, ks.AnonymousMaxBytes, agg[0], agg[1])
	}
	maxClients, maxBytes := ks.AnonymousMaxClients, ks.AnonymousMaxBytes
	if maxClients <= 0 {
		maxClients = defaultAnonMaxClients
	}
	if maxBytes <= 0 {
		maxBytes = defaultAnonMaxBytes
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if fp != t.fp {
		for c := t.lru.next; c != &t.lru; {
			next := c.next
			t.remove(c)
			c = next
		}
		if t.overflow != nil {
			t.overflow.close()
			t.overflow = nil
		}
	}
	t.plan, t.agg, t.fp = pl, agg, fp
	t.max = maxClients
	if pl != nil {
		t.max = max(1, min(maxClients, int(maxBytes/entryBytes(pl))))
	}
}

// entryBytes estimates the heap of an entry of plan pl.
func entryBytes(pl *plan) int64 {
	n := int64(0)
	for _, on := range []bool{pl.rps > 0, pl.ups > 0, pl.daily > 0, pl.maxConns > 0, pl.maxSubs > 0} {
		if on {
			n++
		}
	}
	return anonEntryBase + n*anonHandleBytes
}

// restNanos is how long pl's buckets take to fill from empty, plus the margin.
func restNanos(pl *plan) int64 {
	d := 0.0
	if pl.rps > 0 {
		d = float64(max(pl.burst, int64(math.Ceil(pl.rps)))) / pl.rps
	}
	if pl.ups > 0 {
		d = max(d, float64(max(pl.unitsBurst, int64(math.Ceil(pl.ups))))/pl.ups)
	}
	return int64(d*float64(time.Second)) + int64(anonRestMargin)
}

// get returns the tenant of addr, creating it on its first call (nil: not limited). A
// new IPv6 /64 is admitted only if its aggregates grant a request.
func (t *anonTable) get(addr netip.Addr) (*Tenant, *proto.Error) {
	block := anonBlock(addr)
	key := block.Addr()
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.plan == nil {
		return nil, nil
	}
	if c := t.entries[block]; c != nil {
		t.touch(c, now)
		for _, g := range c.agg {
			if g != nil {
				g.lastUse.Store(now)
			}
		}
		return c, nil
	}
	var agg [2]*Tenant
	var blocks [2]netip.Prefix
	need := 1
	if key.Is6() {
		for i, pl := range t.agg {
			if pl == nil {
				continue
			}
			blocks[i] = netip.PrefixFrom(key, aggBits[i]).Masked()
			if g := t.entries[blocks[i]]; g != nil {
				if e := g.admit(); e != nil {
					t.aggregateRefusals.Inc()
					return nil, e
				}
				t.touch(g, now)
				agg[i] = g
			} else {
				need++
			}
		}
	}
	// The aggregates found are referenced from here on: making room must not drop them.
	for _, g := range agg {
		if g != nil {
			g.refs++
		}
	}
	if !t.makeRoom(need, now) {
		for _, g := range agg {
			if g != nil {
				g.refs--
			}
		}
		t.overflowed.Inc()
		return t.overflowTenant(), nil
	}
	for i, pl := range t.agg {
		if pl == nil || agg[i] != nil || !key.Is6() {
			continue
		}
		g, err := t.a.newCaller("ip:"+blocks[i].String(), pl)
		if err != nil { // not with validated settings; never unlimited though
			return t.overflowTenant(), nil
		}
		g.name, g.m = "anonymous", t.a.anonM
		t.insert(g, blocks[i], pl, now)
		_ = g.admit() // a new bucket is full
		g.refs++
		agg[i] = g
	}
	name := "ip:" + key.String()
	if key.Is6() {
		name += "/64"
	}
	c, err := t.a.newCaller(name, t.plan)
	if err != nil {
		return t.overflowTenant(), nil
	}
	c.name, c.m = "anonymous", t.a.anonM
	c.agg = agg
	for _, g := range agg {
		if g != nil && g.rps != nil {
			c.prepaid.Store(true)
		}
	}
	t.insert(c, block, t.plan, now)
	return c, nil
}

// admit takes the one request a new /64 under aggregate g costs it.
func (g *Tenant) admit() *proto.Error {
	if g.rps == nil {
		return nil
	}
	if d := g.rps.Take(1); !d.OK {
		g.m.refused[refusedRate].Inc()
		return limitError(g, d, refusedRate)
	}
	return nil
}

// spendAggregates takes n requests and cost units from the aggregates of an IPv6
// client, after its own limits granted them (so a client over its own limit never spends
// its neighbours' share). The first request of a new /64 was taken on admission.
func (c *Tenant) spendAggregates(n, cost int64) *proto.Error {
	if c.prepaid.Load() && c.prepaid.CompareAndSwap(true, false) {
		n--
	}
	for _, g := range c.agg {
		if g == nil {
			continue
		}
		if g.rps != nil && n > 0 {
			if d := g.rps.Take(n); !d.OK {
				g.m.refused[refusedRate].Inc()
				return limitError(g, d, refusedRate)
			}
		}
		if g.ups != nil {
			if d := g.ups.Take(cost); !d.OK {
				g.m.refused[refusedUnits].Inc()
				return limitError(g, d, refusedUnits)
			}
		}
	}
	return nil
}

// hold and unhold bracket a websocket client's use of its tenant: an anonymous tenant
// held is never evicted (its holder would keep spending from it while a new entry gave
// the same client a second allowance).
func (c *Tenant) Hold() {
	if c != nil {
		c.holders.Add(1)
	}
}

func (c *Tenant) Unhold() {
	if c != nil {
		c.holders.Add(-1)
	}
}

func (t *anonTable) overflowTenant() *Tenant {
	if t.overflow == nil {
		c, err := t.a.newCaller("ip:overflow", t.plan)
		if err != nil {
			return nil
		}
		c.name, c.m = "anonymous", t.a.anonM
		t.overflow = c
	}
	return t.overflow
}

func (t *anonTable) insert(c *Tenant, block netip.Prefix, pl *plan, now int64) {
	c.block, c.rest, c.bytes = block, restNanos(pl), entryBytes(pl)
	c.lastUse.Store(now)
	t.entries[block] = c
	c.prev, c.next = &t.lru, t.lru.next
	c.next.prev, t.lru.next = c, c
	t.size.Add(1)
	t.bytes.Add(c.bytes)
}

func (t *anonTable) touch(c *Tenant, now int64) {
	c.lastUse.Store(now)
	t.toFront(c)
}

func (t *anonTable) toFront(c *Tenant) {
	if t.lru.next == c {
		return
	}
	c.prev.next, c.next.prev = c.next, c.prev
	c.prev, c.next = &t.lru, t.lru.next
	c.next.prev, t.lru.next = c, c
}

func (t *anonTable) remove(c *Tenant) {
	c.prev.next, c.next.prev = c.next, c.prev
	c.prev, c.next = nil, nil
	delete(t.entries, c.block)
	for _, g := range c.agg {
		if g != nil {
			g.refs--
		}
	}
	c.close()
	t.size.Add(-1)
	t.bytes.Add(-c.bytes)
}

// makeRoom evicts entries at rest, least recently used first, until need more fit;
// false when it finds none among the few it looks at.
func (t *anonTable) makeRoom(need int, now int64) bool {
	for probes := 0; len(t.entries)+need > t.max; probes++ {
		c := t.lru.prev
		if c == &t.lru || probes == anonProbes {
			return false
		}
		if t.atRest(c, now) {
			t.remove(c)
			t.evictedForRoom.Inc()
		} else {
			t.toFront(c) // in use: it comes round again later
		}
	}
	return true
}

// atRest reports whether dropping c can give no one anything: see anonTable.
func (t *anonTable) atRest(c *Tenant, now int64) bool {
	if c.refs > 0 || c.holders.Load() > 0 ||
		c.conns != nil && c.conns.InUse() > 0 || c.subs != nil && c.subs.InUse() > 0 {
		return false
	}
	last := c.lastUse.Load()
	if now-last < c.rest {
		return false
	}
	if c.daily != nil && !t.a.limiter.Redis() && t.utcDay(last) == t.utcDay(now) {
		return false
	}
	return true
}

func (t *anonTable) utcDay(ns int64) int64 {
	return t.epoch.Add(time.Duration(ns)).Unix() / 86400
}

// sweep drops the entries at rest and idle for anonIdle (the minutely sweep).
func (t *anonTable) sweep() {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	for c := t.lru.prev; c != &t.lru; {
		prev := c.prev
		if now-c.lastUse.Load() >= int64(anonIdle) && t.atRest(c, now) {
			t.remove(c)
			t.evictedIdle.Inc()
		}
		c = prev
	}
}

// len is the number of entries (tests).
func (t *anonTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.entries)
}

// AnonymousHolders is how many websocket clients hold addr's entry in the anonymous
// table (0 without one): diagnostics and tests.
func (a *Access) AnonymousHolders(addr netip.Addr) int32 {
	block := anonBlock(addr)
	a.anon.mu.Lock()
	defer a.anon.mu.Unlock()
	if c := a.anon.entries[block]; c != nil {
		return c.holders.Load()
	}
	return 0
}
