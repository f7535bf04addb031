package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/infura-gateway/infura-gateway/gateway/config"
	"github.com/infura-gateway/infura-gateway/gateway/sharedcache"
	"github.com/infura-gateway/infura-gateway/proto"
	"github.com/infura-gateway/infura-gateway/upstream"
)

// cache is the head-aware response cache and request coalescer. Answers are stored with
// id 1 and get the caller's id spliced in when served. Rules (cachepolicy.go):
//   - head-scoped answers live in a map of the current head epoch only; a new head
//     empties it, and an answer fetched in an older epoch is never stored;
//   - immutable answers (by hash; by number once deep) live in a size-bounded
//     two-generation store; entries a reorg could replace are dropped on a reorg;
//   - errors and null results are never stored; writes never enter here at all.
type cache struct {
	maxAge     time.Duration
	depth      uint64
	maxEntries int
	heads      *heads

	hmu       sync.RWMutex
	head      map[string]*entry
	headEpoch uint64

	imm genStore

	fmu     sync.Mutex
	flights map[string]*flight

	hits, misses, coalesced, sharedHits *metrics.Counter

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

// flight is one upstream call that identical callers wait on.
type flight struct {
	done chan struct{}
	body []byte // the answer with id 1, set before done closes
	err  *proto.Error
}

func newCache(cfg config.Config, h *heads, reg *upstream.Registry) *cache {
	c := &cache{
		maxAge:     cfg.CacheMaxAge,
		depth:      cfg.CacheDepth,
		maxEntries: cfg.CacheSize,
		heads:      h,
		head:       map[string]*entry{},
		flights:    map[string]*flight{},
	}
	c.imm.init(cfg.CacheSize, cfg.CacheMaxBytes)
	c.admit, _ = newSharedAdmission(cfg.SharedCacheMethods) // validated with the configuration
	h.onReorg = c.reorg
	const help = "Cacheable requests by result: hit, miss, or coalesced onto an in-flight call; shared_hit: a miss answered by the shared tier (Redis), counted in miss too."
	c.hits = reg.Counter(`gateway_cache_requests_total{result="hit"}`, help)
	c.misses = reg.Counter(`gateway_cache_requests_total{result="miss"}`, help)
	c.coalesced = reg.Counter(`gateway_cache_requests_total{result="coalesced"}`, help)
	c.sharedHits = reg.Counter(`gateway_cache_requests_total{result="shared_hit"}`, help)
	reg.Gauge("gateway_cache_entries", "Entries in the response cache.", func() float64 { return float64(c.len()) })
	return c
}

func (c *cache) len() int {
	c.hmu.RLock()
	n := len(c.head)
	c.hmu.RUnlock()
	return n + c.imm.len()
}

// deep reports whether block n can no longer be replaced by a reorg.
func (c *cache) deep(n uint64) bool {
	return c.heads.seen.Load() && n+c.depth <= c.heads.number.Load()
}

// lookup returns the stored answer (id 1) for key, or nil.
func (c *cache) lookup(key []byte, pol cachePolicy, epoch uint64, now time.Time) []byte {
	switch pol {
	case byHash, byNumber, txByHash:
		if e := c.imm.get(key); e != nil {
			return e.body
		}
		if pol == byHash {
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

// store keeps an answer (id 1) fetched in epoch, if the rules allow. Only a valid JSON
// object with a non-null result is kept: whatever an upstream sends, the cache never
// serves bytes that are not a proper answer.
func (c *cache) store(key []byte, m proto.Method, pol cachePolicy, n uint64, epoch uint64, body []byte) {
	if !proto.Valid(body) || proto.IsErrorResponse(body) {
		return
	}
	result := proto.FirstMember(body, "result")
	if !result.Present() || string(result.Bytes(body)) == "null" {
		return // a block or transaction that does not exist yet
	}
	switch pol {
	case byHash:
		c.imm.put(key, &entry{body: body})
		return
	case byNumber:
		if c.deep(n) {
			c.imm.put(key, &entry{body: body, reorgable: true})
			return
		}
	case txByHash:
		r := result.Bytes(body)
		if bn, ok := proto.ParseQuantity(proto.FirstMember(r, "blockNumber").Bytes(r)); ok && c.deep(bn) {
			c.imm.put(key, &entry{body: body, reorgable: true})
			return
		}
	case headScoped:
		if c.olderThanHead(m, result.Bytes(body)) {
			return
		}
	}
	if c.heads.epoch.Load() != epoch {
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
func (c *cache) olderThanHead(m proto.Method, result []byte) bool {
	if !c.heads.seen.Load() {
		return false
	}
	head := c.heads.number.Load()
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
func (c *cache) reorg() { c.imm.dropReorgable() }

// join returns the flight for key, and whether the caller leads it (and must finish it).
func (c *cache) join(key []byte) (*flight, bool) {
	c.fmu.Lock()
	defer c.fmu.Unlock()
	if f, ok := c.flights[string(key)]; ok {
		return f, false
	}
	f := &flight{done: make(chan struct{})}
	c.flights[string(key)] = f
	return f, true
}

func (c *cache) finish(key []byte, f *flight) {
	c.fmu.Lock()
	delete(c.flights, string(key))
	c.fmu.Unlock()
	close(f.done)
}

// prepare classifies c and builds its key; it reports whether c is cacheable at all.
func (c *cache) prepare(cl *call) bool {
	cl.pol, cl.block = classify(&cl.req)
	cl.cached = cacheMiss // for X-Cache: every call through an enabled cache is a hit or a miss
	if cl.pol == noCache {
		return false
	}
	// Params are canonical (compact): whitespace variants share one key.
	cl.key = append(append(cl.key[:0], byte(cl.req.Method)), cl.req.Params...)
	cl.epoch = c.heads.epoch.Load()
	return true
}

// hit answers cl from the cache when it can.
func (c *cache) hit(cl *call) bool {
	if cl.pol == coalesceOnly {
		return false
	}
	body := c.lookup(cl.key, cl.pol, cl.epoch, time.Now())
	if body == nil {
		return false
	}
	c.hits.Inc()
	cl.cached = cacheHit
	cl.setStored(body)
	return true
}

// storeElement keeps the answer (id 1) of a batch element that missed, and offers it
// to the shared tier when no reorg can replace it.
func (c *cache) storeElement(s *Server, cl *call, ans []byte) {
	c.misses.Inc()
	if cl.pol != coalesceOnly {
		c.store(cl.key, cl.req.Method, cl.pol, cl.block, cl.epoch, bytes.Clone(ans))
	}
	if s.shared != nil && c.sharable(cl) && c.immutable(cl, ans) {
		s.shared.SetFor(c.budget(cl), sharedKey(cl.key), ans)
	}
}

// lookupShared answers the batch elements in b.shared from the shared tier, in one
// round trip; those it lacks join the upstream batch. Unlike single calls they are not
// coalesced across replicas: a batch does not wait on another replica's fetch.
//
// Lookups go in chunks, and stop once the values found fill the batch's answer budget
// (-max-response-body): the elements left are refused as the answer assembly would
// refuse them, so a batch of large entries never holds more than a chunk over it.
func (c *cache) lookupShared(s *Server, b *batch) {
	const chunk = 16
	ctx, cancel := context.WithDeadline(context.Background(), b.calls[b.shared[0]].deadline)
	defer cancel()
	keys := make([]string, 0, chunk)
	found := 0
	for from := 0; from < len(b.shared); from += chunk {
		idx := b.shared[from:min(from+chunk, len(b.shared))]
		if found > s.cfg.MaxResponseBody {
			for _, i := range idx {
				b.calls[i].setError(proto.ErrBatchAnswerTooLarge)
			}
			continue
		}
		keys = keys[:0]
		for _, i := range idx {
			keys = append(keys, sharedKey(b.calls[i].key))
		}
		vals := s.shared.GetMulti(ctx, keys)
		for k, i := range idx {
			cl := b.calls[i]
			// From Redis: served only if it is what the gateway would have stored itself.
			if v := vals[k]; v != nil && c.immutable(cl, v) {
				found += len(v)
				c.misses.Inc()
				c.sharedHits.Inc()
				// v is read-only and owned by nobody else, as stored answers are: kept as is.
				c.store(cl.key, cl.req.Method, cl.pol, cl.block, cl.epoch, v)
				cl.cached = cacheHit
				cl.setStored(v)
				continue
			}
			b.fwd = append(b.fwd, i)
			b.ub.Add(&cl.req, restID)
		}
	}
}

// serve answers cl through the cache: a stored answer, the answer of an identical call
// already in flight, or its own upstream call whose answer it then stores.
func (c *cache) serve(s *Server, cl *call) *proto.Error {
	if !c.prepare(cl) {
		return s.forward(cl, cl.id)
	}
	if c.hit(cl) {
		return nil
	}
	keyLen := len(cl.key)
	// Callers in different head epochs never share a flight: a call made after a new
	// head must not get an answer fetched before it.
	e := cl.epoch
	cl.key = append(cl.key, byte(e), byte(e>>8), byte(e>>16), byte(e>>24), byte(e>>32))
	f, leader := c.join(cl.key)
	if !leader {
		c.coalesced.Inc()
		t := time.NewTimer(time.Until(cl.deadline))
		defer t.Stop()
		select {
		case <-f.done:
		case <-t.C:
			return proto.ErrTimeout
		}
		if f.err != nil {
			return f.err
		}
		cl.setStored(f.body)
		return nil
	}
	c.misses.Inc()
	if s.shared != nil && c.sharable(cl) {
		f.err = c.fetchShared(s, cl, keyLen)
	} else {
		f.err = s.forward(cl, restID)
	}
	if f.err == nil {
		f.body = bytes.Clone(cl.ans)
		// Store before ending the flight: a caller arriving in between would otherwise
		// find neither the flight nor the answer, and call the upstream again.
		if cl.pol != coalesceOnly {
			c.store(cl.key[:keyLen], cl.req.Method, cl.pol, cl.block, cl.epoch, f.body)
		}
	}
	c.finish(cl.key, f)
	if f.err != nil {
		return f.err
	}
	cl.setStored(f.body)
	return nil
}

// The shared tier (gateway/sharedcache, in Redis) sits behind the in-process store for
// what every replica can keep: answers by hash, deep blocks, transactions and receipts
// in deep blocks. A miss here asks Redis (bounded by its 50 ms deadline, skipped at once
// while Redis is down), and across replicas one fetches while the others wait for its
// answer briefly; what the upstream answers is stored in Redis only when immutable.

// sharable reports whether cl's answer may come from, or go to, the shared tier: its
// method is admitted (cachepolicy.go) and its answer immutable.
func (c *cache) sharable(cl *call) bool {
	if !c.admit[cl.req.Method] {
		return false
	}
	switch cl.pol {
	case byHash, txByHash:
		return true
	case byNumber:
		return c.deep(cl.block)
	}
	return false
}

// budget is the shared tier's write budget cl's answer is charged to: its tenant's (a
// key, or an anonymous client address as its limits count it).
func (c *cache) budget(cl *call) *sharedcache.Budget {
	if cl.who != nil {
		return cl.who.SharedBudget()
	}
	return &c.unattributed
}

// errNotShared marks an upstream answer that is good for this caller but not for the
// shared tier (null, an error, a transaction not yet deep); the answer is in cl.ans.
var errNotShared = errors.New("answer not immutable")

// fetchShared sets cl.ans (id 1) from the shared tier or, through it, the upstream.
func (c *cache) fetchShared(s *Server, cl *call, keyLen int) *proto.Error {
	key := sharedKey(cl.key[:keyLen])
	ctx, cancel := context.WithDeadline(context.Background(), cl.deadline)
	defer cancel()
	var perr *proto.Error
	body, src, err := s.shared.GetOrFetchFor(ctx, c.budget(cl), key, func(context.Context) ([]byte, error) {
		if perr = s.forward(cl, restID); perr != nil {
			return nil, perr
		}
		if !c.immutable(cl, cl.ans) {
			return nil, errNotShared
		}
		return cl.ans, nil
	})
	switch {
	case perr != nil:
		return perr
	case errors.Is(err, errNotShared):
		return nil // cl.ans is the upstream's answer
	case err != nil: // the deadline passed while waiting on another replica
		return proto.ErrTimeout
	case src == sharedcache.SourceFetched:
		return nil // cl.ans is body
	}
	// From Redis: served only if it is what the gateway would have stored itself.
	if !c.immutable(cl, body) {
		return s.forward(cl, restID)
	}
	c.sharedHits.Inc()
	cl.own = append(cl.own[:0], body...)
	cl.ans = cl.own
	return nil
}

// immutable reports whether body, an answer to cl, is one no reorg can replace: a
// valid answer with a non-null result, for a deep transaction a deep block.
func (c *cache) immutable(cl *call, body []byte) bool {
	if !proto.Valid(body) || proto.IsErrorResponse(body) {
		return false
	}
	result := proto.FirstMember(body, "result")
	if !result.Present() || string(result.Bytes(body)) == "null" {
		return false
	}
	if cl.pol == txByHash {
		r := result.Bytes(body)
		bn, ok := proto.ParseQuantity(proto.FirstMember(r, "blockNumber").Bytes(r))
		return ok && c.deep(bn)
	}
	return true
}

// sharedKey names an answer in Redis: the method and the SHA-256 of the canonical
// params (bounded length whatever the params).
func sharedKey(key []byte) string {
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
