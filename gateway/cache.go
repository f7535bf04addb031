package gateway

import (
	"bytes"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

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

var (
	cacheHits      = metrics.NewCounter(`gateway_cache_requests_total{result="hit"}`)
	cacheMisses    = metrics.NewCounter(`gateway_cache_requests_total{result="miss"}`)
	cacheCoalesced = metrics.NewCounter(`gateway_cache_requests_total{result="coalesced"}`)
	cacheCurrent   sync.Map // one gauge for the process: the latest cache
)

func init() {
	metrics.NewGauge("gateway_cache_entries", func() float64 {
		var n int
		cacheCurrent.Range(func(_, v any) bool { n += v.(*cache).len(); return true })
		return float64(n)
	})
}

func newCache(cfg Config, h *heads) *cache {
	c := &cache{
		maxAge:     cfg.CacheMaxAge,
		depth:      cfg.CacheDepth,
		maxEntries: cfg.CacheSize,
		heads:      h,
		head:       map[string]*entry{},
		flights:    map[string]*flight{},
	}
	c.imm.init(cfg.CacheSize, cfg.CacheMaxBytes)
	h.onReorg = c.reorg
	cacheCurrent.Store(c, c)
	return c
}

func (c *cache) close() { cacheCurrent.Delete(c) }

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
func (c *cache) lookup(key []byte, pol policy, epoch uint64, now time.Time) []byte {
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

// store keeps an answer fetched in epoch, if the rules allow.
func (c *cache) store(key []byte, m upstream.Method, pol policy, n uint64, epoch uint64, body []byte) {
	if proto.IsErrorResponse(body) {
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
func (c *cache) olderThanHead(m upstream.Method, result []byte) bool {
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
	methodBlockNumber   = upstream.MethodNamed("eth_blockNumber")
	methodBlockByNumber = upstream.MethodNamed("eth_getBlockByNumber")
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

var (
	headerXCache = []byte("X-Cache")
	valueHit     = []byte("HIT")
	valueMiss    = []byte("MISS")
)

// fetch answers one JSON-RPC call (req, with the caller's id raw in id) into
// ctx.Response, through the cache when the call is cacheable. params is the raw params
// array inside req (nil if none).
func (s *Server) fetch(ctx *fasthttp.RequestCtx, up caller, m upstream.Method, req, params, id []byte, deadline time.Time) error {
	c := s.cache
	if c == nil {
		return up.Do(m, req, &ctx.Response, deadline)
	}
	pol, n := classify(m, params)
	if pol == noCache {
		ctx.Response.Header.SetBytesKV(headerXCache, valueMiss)
		return up.Do(m, req, &ctx.Response, deadline)
	}
	buf := getBuf()
	defer putBuf(buf)
	key := append(append((*buf)[:0], byte(m)), proto.TrimWS(params)...)
	epoch := c.heads.epoch.Load()
	if pol != coalesceOnly {
		if body := c.lookup(key, pol, epoch, ctx.Time()); body != nil {
			cacheHits.Inc()
			serveStored(ctx, body, id)
			ctx.Response.Header.SetBytesKV(headerXCache, valueHit)
			return nil
		}
	}
	ctx.Response.Header.SetBytesKV(headerXCache, valueMiss)
	keyLen := len(key)
	// Callers in different head epochs never share a flight: a call made after a new
	// head must not get an answer fetched before it.
	key = append(key, byte(epoch), byte(epoch>>8), byte(epoch>>16), byte(epoch>>24), byte(epoch>>32))
	*buf = key
	f, leader := c.join(key)
	if !leader {
		cacheCoalesced.Inc()
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		select {
		case <-f.done:
		case <-t.C:
			return proto.ErrTimeout
		}
		if f.err != nil {
			return f.err
		}
		serveStored(ctx, f.body, id)
		return nil
	}
	cacheMisses.Inc()
	err := up.Do(m, req, &ctx.Response, deadline)
	if err != nil {
		f.err = asError(err)
	} else {
		f.body = withID(ctx.Response.Body(), restID)
	}
	// Store before ending the flight: a caller arriving in between would otherwise find
	// neither the flight nor the answer, and call the upstream again.
	if err == nil && pol != coalesceOnly {
		c.store(key[:keyLen], m, pol, n, epoch, f.body)
	}
	c.finish(key, f)
	return err
}

// withID returns a copy of answer with its id replaced by id.
func withID(answer, id []byte) []byte {
	span := proto.FirstMember(answer, "id")
	if !span.Present() || bytes.Equal(span.Bytes(answer), id) {
		return bytes.Clone(answer)
	}
	return proto.Splice(make([]byte, 0, len(answer)+len(id)), answer, span, id)
}

// serveStored writes a stored answer (id 1) with the caller's id. REST callers use id 1:
// the stored bytes are sent as they are, without a copy.
func serveStored(ctx *fasthttp.RequestCtx, body, id []byte) {
	ctx.Response.Header.SetContentTypeBytes(contentTypeJSON)
	if bytes.Equal(id, restID) {
		ctx.Response.SetBodyRaw(body)
		return
	}
	span := proto.FirstMember(body, "id")
	ctx.Response.ResetBody()
	ctx.Response.AppendBody(body[:span.Start])
	ctx.Response.AppendBody(id)
	ctx.Response.AppendBody(body[span.End:])
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
