// Package cache is the head-aware response cache of one chain: what may be stored and
// for how long (policy.go), the in-process stores, reorg handling and the flights that
// coalesce identical calls. It decides on decoded requests (proto/) and follows the
// head (head/); the pipeline asks it and fills it. It imports config/, head/,
// sharedcache/ (a budget type), proto/ and upstream/ (the metrics registry).
package cache

import (
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/infura-gateway/infura-gateway/gateway/config"
	"github.com/infura-gateway/infura-gateway/gateway/head"
	"github.com/infura-gateway/infura-gateway/gateway/sharedcache"
	"github.com/infura-gateway/infura-gateway/proto"
	"github.com/infura-gateway/infura-gateway/upstream"
)

// Cache is the head-aware response cache and request coalescer. Answers are stored with
// id 1 and get the caller's id spliced in when served. Rules (cachepolicy.go):
//   - head-scoped answers live in a map of the current head epoch only; a new head
//     empties it, and an answer fetched in an older epoch is never stored;
//   - immutable answers (by hash; by number once deep) live in a size-bounded
//     two-generation store; entries a reorg could replace are dropped on a reorg;
//   - errors and null results are never stored; writes never enter here at all.
type Cache struct {
	maxAge     time.Duration
	depth      uint64
	maxEntries int
	heads      *head.Tracker

	hmu       sync.RWMutex
	head      map[string]*entry
	headEpoch uint64

	imm genStore

	fmu     sync.Mutex
	flights map[string]*Flight

	// Hits, Misses, Coalesced and SharedHits count cacheable calls by result; the
	// pipeline counts them as it serves.
	Hits, Misses, Coalesced, SharedHits *metrics.Counter

	// admit: the methods whose answers may go to the shared tier; unattributed: the
	// write budget of calls without a tenant (no keys and no anonymous plan), together.
	admit        sharedAdmission
	unattributed sharedcache.Budget
}

type entry struct {
	body      []byte // the whole JSON-RPC answer, id 1; immutable once stored
	at        int64  // unix nanoseconds when stored
	reorgable bool   // a reorg could replace it (by-number answers)
}

// Flight is one upstream call that identical callers wait on.
type Flight struct {
	done chan struct{}
	Body []byte // the answer with id 1, set before Finish
	Err  *proto.Error
}

// Done is closed when the flight's leader has finished it.
func (f *Flight) Done() <-chan struct{} { return f.done }

// New makes the cache of the chain whose head h follows.
func New(cfg config.Config, h *head.Tracker, reg *upstream.Registry) *Cache {
	c := &Cache{
		maxAge:     cfg.CacheMaxAge,
		depth:      cfg.CacheDepth,
		maxEntries: cfg.CacheSize,
		heads:      h,
		head:       map[string]*entry{},
		flights:    map[string]*Flight{},
	}
	c.imm.init(cfg.CacheSize, cfg.CacheMaxBytes)
	c.admit, _ = newSharedAdmission(cfg.SharedCacheMethods) // validated with the configuration
	h.OnReorg(c.reorg)
	const help = "Cacheable requests by result: hit, miss, or coalesced onto an in-flight call; shared_hit: a miss answered by the shared tier (Redis), counted in miss too."
	c.Hits = reg.Counter(`gateway_cache_requests_total{result="hit"}`, help)
	c.Misses = reg.Counter(`gateway_cache_requests_total{result="miss"}`, help)
	c.Coalesced = reg.Counter(`gateway_cache_requests_total{result="coalesced"}`, help)
	c.SharedHits = reg.Counter(`gateway_cache_requests_total{result="shared_hit"}`, help)
	reg.Gauge("gateway_cache_entries", "Entries in the response cache.", func() float64 { return float64(c.Len()) })
	return c
}

// Len is the number of entries.
func (c *Cache) Len() int {
	c.hmu.RLock()
	n := len(c.head)
	c.hmu.RUnlock()
	return n + c.imm.len()
}

// Deep reports whether block n can no longer be replaced by a reorg.
func (c *Cache) Deep(n uint64) bool {
	return c.heads.Seen() && n+c.depth <= c.heads.Number()
}

// Lookup returns the stored answer (id 1) for key, or nil.
func (c *Cache) Lookup(key []byte, pol Policy, epoch uint64, now time.Time) []byte {
	switch pol {
	case ByHash, ByNumber, TxByHash:
		if e := c.imm.get(key); e != nil {
			return e.body
		}
		if pol == ByHash {
			return nil
		}
	}
	c.hmu.RLock()
	e := c.head[string(key)]
	ok := e != nil && c.headEpoch == epoch
	c.hmu.RUnlock()
	if !ok || now.UnixNano()-e.at > int64(c.maxAge) {
		return nil
	}
	return e.body
}

// Store keeps an answer (id 1) fetched in epoch, if the rules allow. Only a valid JSON
// object with a non-null result is kept: whatever an upstream sends, the cache never
// serves bytes that are not a proper answer.
func (c *Cache) Store(key []byte, m proto.Method, pol Policy, n uint64, epoch uint64, body []byte) {
	if !proto.Valid(body) || proto.IsErrorResponse(body) {
		return
	}
	result := proto.FirstMember(body, "result")
	if !result.Present() || string(result.Bytes(body)) == "null" {
		return // a block or transaction that does not exist yet
	}
	switch pol {
	case ByHash:
		c.imm.put(key, &entry{body: body})
		return
	case ByNumber:
		if c.Deep(n) {
			c.imm.put(key, &entry{body: body, reorgable: true})
			return
		}
	case TxByHash:
		r := result.Bytes(body)
		if bn, ok := proto.ParseQuantity(proto.FirstMember(r, "blockNumber").Bytes(r)); ok && c.Deep(bn) {
			c.imm.put(key, &entry{body: body, reorgable: true})
			return
		}
	case HeadScoped:
		if c.olderThanHead(m, result.Bytes(body)) {
			return
		}
	}
	if c.heads.Epoch() != epoch {
		return // a new head arrived while this was in flight
	}
	c.hmu.Lock()
	if epoch != c.headEpoch {
		if epoch < c.headEpoch {
			c.hmu.Unlock()
			return
		}
		c.head = make(map[string]*entry, len(c.head))
		c.headEpoch = epoch
	}
	if len(c.head) < c.maxEntries {
		c.head[string(key)] = &entry{body: body, at: time.Now().UnixNano()}
	}
	c.hmu.Unlock()
}

// olderThanHead catches an upstream answering from behind the head the gateway has
// seen (a lagging backend of a load-balanced provider): such an answer is passed on
// but never cached, so a cached "latest" is never older than the gateway's head.
func (c *Cache) olderThanHead(m proto.Method, result []byte) bool {
	if !c.heads.Seen() {
		return false
	}
	head := c.heads.Number()
	switch m {
	case methodBlockNumber:
		n, ok := proto.ParseQuantity(result)
		return !ok || n < head
	case methodBlockByNumber:
		n, ok := proto.ParseQuantity(proto.FirstMember(result, "number").Bytes(result))
		return ok && n < head
	}
	return false
}

var (
	methodBlockNumber   = proto.MethodNamed("eth_blockNumber")
	methodBlockByNumber = proto.MethodNamed("eth_getBlockByNumber")
)

// reorg drops what a reorg could have replaced. Head-scoped entries are already gone:
// the head that revealed the reorg started a new epoch.
func (c *Cache) reorg() { c.imm.dropReorgable() }

// Join returns the flight for key, and whether the caller leads it (and must finish it).
func (c *Cache) Join(key []byte) (*Flight, bool) {
	c.fmu.Lock()
	defer c.fmu.Unlock()
	if f, ok := c.flights[string(key)]; ok {
		return f, false
	}
	f := &Flight{done: make(chan struct{})}
	c.flights[string(key)] = f
	return f, true
}

// Finish ends f: its waiters are released and the next identical call starts anew.
func (c *Cache) Finish(key []byte, f *Flight) {
	c.fmu.Lock()
	delete(c.flights, string(key))
	c.fmu.Unlock()
	close(f.done)
}

// The shared tier (gateway/sharedcache, in Redis) sits behind the in-process store for
// what every replica can keep: answers by hash, deep blocks, transactions and receipts
// in deep blocks. A miss here asks Redis (bounded by its 50 ms deadline, skipped at once
// while Redis is down), and across replicas one fetches while the others wait for its
// answer briefly; what the upstream answers is stored in Redis only when immutable.

// Sharable reports whether the answer to a call of method m (of policy pol, about block
// n) may come from, or go to, the shared tier: its method is admitted (policy.go) and
// its answer immutable.
func (c *Cache) Sharable(m proto.Method, pol Policy, n uint64) bool {
	if !c.admit[m] {
		return false
	}
	switch pol {
	case ByHash, TxByHash:
		return true
	case ByNumber:
		return c.Deep(n)
	}
	return false
}

// Unattributed is the shared tier's write budget of calls without a tenant.
func (c *Cache) Unattributed() *sharedcache.Budget { return &c.unattributed }

// Immutable reports whether body, an answer to a call of policy pol, is one no reorg
// can replace: a valid answer with a non-null result, for a deep transaction a deep
// block.
func (c *Cache) Immutable(pol Policy, body []byte) bool {
	if !proto.Valid(body) || proto.IsErrorResponse(body) {
		return false
	}
	result := proto.FirstMember(body, "result")
	if !result.Present() || string(result.Bytes(body)) == "null" {
		return false
	}
	if pol == TxByHash {
		r := result.Bytes(body)
		bn, ok := proto.ParseQuantity(proto.FirstMember(r, "blockNumber").Bytes(r))
		return ok && c.Deep(bn)
	}
	return true
}

// SharedKey names an answer in Redis: the method and the SHA-256 of the canonical
// params (bounded length whatever the params).
func SharedKey(key []byte) string {
	sum := sha256.Sum256(key[1:])
	return proto.Method(key[0]).String() + ":" + hex.EncodeToString(sum[:])
}

// genStore is a size-bounded store of immutable answers: two generations of maps; when
// the current one is half the budget it becomes the previous one and the old previous
// is dropped. Hits in the previous generation move forward, so what is used stays.
type genStore struct {
	mu                   sync.RWMutex
	cur, prev            map[string]*entry
	curBytes             int
	maxEntries, maxBytes int
}

func (g *genStore) init(maxEntries, maxBytes int) {
	g.cur, g.prev = map[string]*entry{}, map[string]*entry{}
	g.maxEntries, g.maxBytes = max(maxEntries, 2), max(maxBytes, 1)
}

func (g *genStore) len() int {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return len(g.cur) + len(g.prev)
}

func (g *genStore) get(key []byte) *entry {
	g.mu.RLock()
	e := g.cur[string(key)]
	if e == nil {
		e = g.prev[string(key)]
		if e != nil {
			g.mu.RUnlock()
			g.put(key, e)
			return e
		}
	}
	g.mu.RUnlock()
	return e
}

func (g *genStore) put(key []byte, e *entry) {
	size := len(key) + len(e.body)
	if size > g.maxBytes/2 {
		return // larger than a generation: not worth evicting everything for
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.cur[string(key)]; ok {
		return
	}
	if len(g.cur) >= g.maxEntries/2 || g.curBytes+size > g.maxBytes/2 {
		g.prev, g.cur, g.curBytes = g.cur, make(map[string]*entry, len(g.cur)), 0
	}
	g.cur[string(key)] = e
	g.curBytes += size
}

func (g *genStore) dropReorgable() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, m := range []map[string]*entry{g.cur, g.prev} {
		for k, e := range m {
			if e.reorgable {
				delete(m, k)
			}
		}
	}
}
