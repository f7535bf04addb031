// Package sharedcache is the Redis tier behind the gateway's in-process cache, for
// immutable answers (anything by hash, deep blocks, their receipts and transactions), so
// that N replicas fetch each immutable answer from the upstream about once, not N times.
//
//   - Get is bounded by the Conn's deadline (50 ms) and is a miss on any error; while the
//     Conn's circuit breaker is open it is a miss at once, without touching the network.
//     What a request does (GetOrFetch's lookup and claim, GetMulti) shares one
//     RequestBudget (40 ms), so a slow Redis costs a request less than 50 ms.
//   - Set is asynchronous: the value is copied into a bounded queue (by count and by
//     bytes) that a fixed number of writer goroutines drain in pipelined batches; when the
//     queue is full the value is dropped and counted. Values over MaxValueBytes (256 KiB)
//     are never stored. Every key gets a TTL (values TTL, fetch claims LockTTL), so
//     nothing written here stays in Redis for good.
//   - SetFor and GetOrFetchFor charge a Budget, the caller's per tenant: one tenant's
//     answers write at most TenantBytesPerMinute into Redis per minute from this
//     replica; what is over it is not written (counted), and nobody waits for it.
//   - GetOrFetch coalesces across replicas: on a miss, one replica wins a short lock
//     (SET NX PX) and fetches; the others poll Redis for its answer for at most
//     FollowerWait, then fetch themselves. Within a replica the in-process cache already
//     coalesces concurrent callers.
//
// Ownership: the Cache owns its writer goroutines and its queue; Close drains nothing,
// ends the writers and waits for them. The Conn is the caller's and is not closed; the
// gateway gives the Cache a Conn of its own, so that the tier's large values and its
// breaker never touch the limiter's connection. Keys are the caller's cache keys (never a
// secret); values are stored as given.
package sharedcache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/redis/rueidis"

	"github.com/infura-gateway/infura-gateway/gateway/redisconn"
)

// Config configures a Cache. The zero value is a working default.
type Config struct {
	// Prefix starts every Redis key; default "igw:cache:".
	Prefix string
	// AwaitNamespace keeps the tier skipped until SetNamespace names what it caches
	// (the gateway: the chain id, so gateways of different chains sharing one Redis
	// never answer from each other's entries).
	AwaitNamespace bool
	// TTL of every stored value; default 24h.
	TTL time.Duration
	// MaxValueBytes: larger values are not stored; default 256 KiB.
	MaxValueBytes int
	// TenantBytesPerMinute is what one Budget may write per minute (key and value
	// bytes); default 4 MiB. Negative: budgets are not checked.
	TenantBytesPerMinute int64
	// QueueSize and QueueBytes bound the values waiting to be written; defaults 1024
	// values and 32 MiB. Past either bound a Set is dropped.
	QueueSize  int
	QueueBytes int64
	// Writers is the number of goroutines writing to Redis; default 2.
	Writers int
	// LockTTL is how long a replica's claim to fetch a key lasts; default 2s.
	LockTTL time.Duration
	// FollowerWait is how long a replica that lost the claim waits for the winner's
	// answer before fetching itself; default 500ms.
	FollowerWait time.Duration
	// PollInterval is the pause between a follower's looks; default 10ms.
	PollInterval time.Duration
	// RequestBudget is the longest a request waits for Redis in all (lookup and claim)
	// before it goes to the upstream itself; default 40ms, so that with timer slack a
	// slow or frozen Redis costs a request less than 50 ms.
	RequestBudget time.Duration
}

func (c *Config) setDefaults() {
	if c.Prefix == "" {
		c.Prefix = "igw:cache:"
	}
	if c.TTL <= 0 {
		c.TTL = 24 * time.Hour
	}
	if c.MaxValueBytes <= 0 {
		c.MaxValueBytes = 256 << 10
	}
	if c.TenantBytesPerMinute == 0 {
		c.TenantBytesPerMinute = 4 << 20
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 1024
	}
	if c.QueueBytes <= 0 {
		c.QueueBytes = 32 << 20
	}
	if c.Writers <= 0 {
		c.Writers = 2
	}
	if c.LockTTL <= 0 {
		c.LockTTL = 2 * time.Second
	}
	if c.FollowerWait <= 0 {
		c.FollowerWait = 500 * time.Millisecond
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 10 * time.Millisecond
	}
	if c.RequestBudget <= 0 {
		c.RequestBudget = 40 * time.Millisecond
	}
}

// Source says where GetOrFetch's answer came from.
type Source uint8

const (
	SourceRedis    Source = iota + 1 // stored in Redis already
	SourceFollower                   // another replica fetched it while this one waited
	SourceFetched                    // this replica called fetch
)

// Cache is the shared tier. Safe for concurrent use.
type Cache struct {
	cfg   Config
	conn  *redisconn.Conn
	ns    atomic.Pointer[string] // after Prefix in every key; nil: not known yet, skip
	token string                 // this replica's lock token prefix
	seq   atomic.Uint64

	queue       chan job
	queuedBytes atomic.Int64
	stop        chan struct{}
	wg          sync.WaitGroup
	once        sync.Once

	hits, misses, skipped, sets, drops, errs, tooLarge *metrics.Counter
	overBudget                                         *metrics.Counter
	leaders, followerHits, followerTimeouts            *metrics.Counter
}

type job struct {
	key   string
	value []byte
}

// New starts the writer goroutines. conn is required: without Redis there is no shared
// tier (the caller keeps only its in-process cache).
func New(cfg Config, conn *redisconn.Conn, ms *metrics.Set) (*Cache, error) {
	cfg.setDefaults()
	if conn == nil {
		return nil, errors.New("sharedcache: a Redis connection is required")
	}
	if ms == nil {
		return nil, errors.New("sharedcache: a metrics set is required")
	}
	if slices.Contains(ms.ListMetricNames(), `gateway_sharedcache_queue_bytes`) {
		return nil, errors.New("sharedcache: another Cache already reports to this metrics set")
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("sharedcache: cannot make a lock token: %w", err)
	}
	c := &Cache{
		cfg:   cfg,
		conn:  conn,
		token: hex.EncodeToString(b[:]) + ":",
		queue: make(chan job, cfg.QueueSize),
		stop:  make(chan struct{}),

		hits:             ms.GetOrCreateCounter(`gateway_sharedcache_requests_total{result="hit"}`),
		misses:           ms.GetOrCreateCounter(`gateway_sharedcache_requests_total{result="miss"}`),
		skipped:          ms.GetOrCreateCounter(`gateway_sharedcache_requests_total{result="skipped"}`),
		sets:             ms.GetOrCreateCounter(`gateway_sharedcache_sets_total`),
		drops:            ms.GetOrCreateCounter(`gateway_sharedcache_drops_total`),
		errs:             ms.GetOrCreateCounter(`gateway_sharedcache_errors_total`),
		tooLarge:         ms.GetOrCreateCounter(`gateway_sharedcache_value_too_large_total`),
		overBudget:       ms.GetOrCreateCounter(`gateway_sharedcache_over_budget_total`),
		leaders:          ms.GetOrCreateCounter(`gateway_sharedcache_leader_fetches_total`),
		followerHits:     ms.GetOrCreateCounter(`gateway_sharedcache_follower_hits_total`),
		followerTimeouts: ms.GetOrCreateCounter(`gateway_sharedcache_follower_timeouts_total`),
	}
	ms.GetOrCreateGauge(`gateway_sharedcache_queue_bytes`, func() float64 { return float64(c.queuedBytes.Load()) })
	if cfg.AwaitNamespace {
		ms.GetOrCreateGauge(`gateway_sharedcache_ready`, func() float64 {
			if c.ns.Load() != nil {
				return 1
			}
			return 0
		})
	}
	if !cfg.AwaitNamespace {
		c.SetNamespace("")
	}
	for range cfg.Writers {
		c.wg.Add(1)
		go c.writer()
	}
	return c, nil
}

// Close ends the writers and waits for them; queued values are dropped.
func (c *Cache) Close() {
	c.once.Do(func() {
		close(c.stop)
		c.wg.Wait()
	})
}

// SetNamespace sets what follows Prefix in every key, and makes the tier usable; the
// first call wins.
func (c *Cache) SetNamespace(ns string) { c.ns.CompareAndSwap(nil, &ns) }

// usable reports whether the tier may be used now: its namespace is known and Redis is
// up (decided at once, without a network call). What a request waits on (lookups and
// claims) needs more: nothing failed since Redis last answered (redisconn.Conn.Clean),
// so a request never waits behind the redial that follows a failure.
func (c *Cache) usable() bool { return c.ns.Load() != nil && c.conn.Up() }

func (c *Cache) usableNow() bool { return c.ns.Load() != nil && c.conn.Clean() }

func (c *Cache) valueKey(key string) string { return c.cfg.Prefix + *c.ns.Load() + "v:" + key }
func (c *Cache) lockKey(key string) string  { return c.cfg.Prefix + *c.ns.Load() + "l:" + key }

// Get returns the stored value of key. It is a miss, never an error, when the key is
// absent, Redis is down (decided at once) or slow (after the 50 ms deadline).
func (c *Cache) Get(ctx context.Context, key string) ([]byte, bool) {
	v, ok, _ := c.get(ctx, key, c.cfg.RequestBudget)
	return v, ok
}

// GetMulti looks keys up in one round trip: vals[i] is key i's value, nil on a miss
// (read-only: it may share memory with the client's reply, never reused). A
// failure is a miss for every key, decided like Get's. Batches use it: their elements
// are looked up together, not coalesced across replicas one by one.
func (c *Cache) GetMulti(ctx context.Context, keys []string) (vals [][]byte) {
	vals = make([][]byte, len(keys))
	if len(keys) == 0 {
		return vals
	}
	if !c.usableNow() {
		c.skipped.Add(len(keys))
		return vals
	}
	cmds := make(rueidis.Commands, len(keys))
	for i, k := range keys {
		cmds[i] = c.conn.B().Get().Key(c.valueKey(k)).Build()
	}
	for i, r := range c.conn.DoMultiWithin(ctx, c.cfg.RequestBudget, cmds...) {
		v, err := r.AsBytes()
		switch {
		case err == nil:
			c.hits.Inc()
			vals[i] = v
		case rueidis.IsRedisNil(err):
			c.misses.Inc()
		default:
			c.errs.Inc()
			c.misses.Inc()
		}
	}
	return vals
}

// Skip counts n lookups or writes its caller passed over (the gateway: a network whose
// chain, and so its namespace, is not known yet).
func (c *Cache) Skip(n int) { c.skipped.Add(n) }

// get also says whether Redis failed (not a plain miss).
func (c *Cache) get(ctx context.Context, key string, within time.Duration) ([]byte, bool, bool) {
	if !c.usableNow() {
		c.skipped.Inc()
		return nil, false, true
	}
	v, err := c.conn.DoWithin(ctx, within, c.conn.B().Get().Key(c.valueKey(key)).Build()).AsBytes()
	if err != nil {
		failed := !rueidis.IsRedisNil(err)
		if failed {
			c.errs.Inc()
		}
		c.misses.Inc()
		return nil, false, failed
	}
	c.hits.Inc()
	return v, true, false
}

// Budget is one tenant's allowance of bytes written into Redis per minute, on this
// replica. The zero value is ready to use; the caller keeps one per tenant (the gateway:
// per API key, or per anonymous client address as its limits count them).
type Budget struct {
	minute atomic.Int64 // the unix minute used counts for
	used   atomic.Int64
}

// spend takes n bytes from b's allowance of limit bytes for the minute of now, and
// reports whether they were there. It never waits. At a minute's turn an Add racing the
// reset may be forgotten: the budget errs by a value or two towards writing.
func (b *Budget) spend(n, limit int64, now time.Time) bool {
	m := now.Unix() / 60
	if cur := b.minute.Load(); cur != m && b.minute.CompareAndSwap(cur, m) {
		b.used.Store(0)
	}
	if b.used.Add(n) > limit {
		b.used.Add(-n)
		return false
	}
	return true
}

func (b *Budget) refund(n int64) { b.used.Add(-n) }

// Set stores value under key asynchronously; it copies value. It reports whether the
// value was queued (false: too large, queue full, or Redis down). It charges no budget:
// SetFor does.
func (c *Cache) Set(key string, value []byte) bool { return c.SetFor(nil, key, value) }

// SetFor is Set charged to b (nil: to nobody). A value over b's budget for the minute is
// not stored and is counted (gateway_sharedcache_over_budget_total).
func (c *Cache) SetFor(b *Budget, key string, value []byte) bool {
	if len(value) > c.cfg.MaxValueBytes {
		c.tooLarge.Inc()
		return false
	}
	if !c.usable() {
		c.skipped.Inc()
		return false
	}
	n := int64(len(value) + len(key))
	if b != nil && c.cfg.TenantBytesPerMinute > 0 && !b.spend(n, c.cfg.TenantBytesPerMinute, time.Now()) {
		c.overBudget.Inc()
		return false
	}
	if c.queuedBytes.Add(n) > c.cfg.QueueBytes {
		c.queuedBytes.Add(-n)
		c.drop(b, n)
		return false
	}
	select {
	case c.queue <- job{key: key, value: append([]byte(nil), value...)}:
		return true
	default:
		c.queuedBytes.Add(-n)
		c.drop(b, n)
		return false
	}
}

// drop counts a value that was not queued and gives its bytes back to its budget:
// nothing was written.
func (c *Cache) drop(b *Budget, n int64) {
	c.drops.Inc()
	if b != nil && c.cfg.TenantBytesPerMinute > 0 {
		b.refund(n)
	}
}

// writer drains the queue in pipelined batches of up to 64 values.
func (c *Cache) writer() {
	defer c.wg.Done()
	batch := make([]job, 0, 64)
	for {
		select {
		case <-c.stop:
			return
		case j := <-c.queue:
			batch = append(batch[:0], j)
		}
	more:
		for len(batch) < cap(batch) {
			select {
			case j := <-c.queue:
				batch = append(batch, j)
			default:
				break more
			}
		}
		// A fresh slice per batch: after a deadline the client may still be writing the
		// last batch's commands from it (found by the race detector with a choked
		// connection).
		cmds := make(rueidis.Commands, 0, len(batch))
		var n int64
		for _, j := range batch {
			n += int64(len(j.value) + len(j.key))
			cmds = append(cmds, c.conn.B().Set().Key(c.valueKey(j.key)).Value(rueidis.BinaryString(j.value)).
				PxMilliseconds(c.cfg.TTL.Milliseconds()).Build())
		}
		for i, r := range c.conn.DoMulti(context.Background(), cmds...) {
			if r.Error() != nil {
				c.errs.Inc()
				c.drops.Inc()
			} else {
				c.sets.Inc()
			}
			batch[i] = job{}
		}
		c.queuedBytes.Add(-n)
	}
}

// releaseScript deletes a fetch claim only if it is still ours.
var releaseScript = redisconn.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`)

// GetOrFetch returns key's value from Redis, or from the replica that is fetching it
// right now, or from fetch. A value fetched here is stored (Set). fetch's error is
// returned as is. Without Redis it is fetch, at once.
func (c *Cache) GetOrFetch(ctx context.Context, key string, fetch func(context.Context) ([]byte, error)) ([]byte, Source, error) {
	return c.GetOrFetchFor(ctx, nil, key, fetch)
}

// GetOrFetchFor is GetOrFetch with the store of a fetched value charged to b (SetFor).
func (c *Cache) GetOrFetchFor(ctx context.Context, b *Budget, key string, fetch func(context.Context) ([]byte, error)) ([]byte, Source, error) {
	// The lookup and the claim share one budget: Redis going slow between the two must
	// not make a request wait for it twice before it fetches.
	start := time.Now()
	v, ok, failed := c.get(ctx, key, c.cfg.RequestBudget)
	if ok {
		return v, SourceRedis, nil
	}
	if failed || !c.usableNow() {
		return c.fetch(ctx, b, key, fetch, "") // Redis is down or slow: not one more wait for it
	}
	token := c.token + strconv.FormatUint(c.seq.Add(1), 10)
	won, err := c.conn.DoWithin(ctx, c.cfg.RequestBudget-time.Since(start), c.conn.B().Set().Key(c.lockKey(key)).Value(token).Nx().
		PxMilliseconds(c.cfg.LockTTL.Milliseconds()).Build()).ToString()
	switch {
	case err == nil && won == "OK":
		c.leaders.Inc()
		return c.fetch(ctx, b, key, fetch, token)
	case err != nil && !rueidis.IsRedisNil(err):
		c.errs.Inc()
		return c.fetch(ctx, b, key, fetch, "")
	}
	// Another replica is fetching: poll for its answer, briefly.
	deadline := time.Now().Add(c.cfg.FollowerWait)
	t := time.NewTimer(c.cfg.PollInterval)
	defer t.Stop()
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		case <-t.C:
		}
		if !c.usableNow() {
			break // Redis failed meanwhile: fetch rather than wait behind its redial
		}
		rs := c.conn.DoMulti(ctx,
			c.conn.B().Get().Key(c.valueKey(key)).Build(),
			c.conn.B().Exists().Key(c.lockKey(key)).Build())
		if v, err := rs[0].AsBytes(); err == nil {
			c.hits.Inc()
			c.followerHits.Inc()
			return v, SourceFollower, nil
		} else if !rueidis.IsRedisNil(err) {
			c.errs.Inc()
			return c.fetch(ctx, b, key, fetch, "")
		}
		if n, err := rs[1].AsInt64(); err != nil || n == 0 {
			break // the claim is gone without an answer: the winner failed
		}
		t.Reset(c.cfg.PollInterval)
	}
	if time.Now().After(deadline) {
		c.followerTimeouts.Inc()
	}
	return c.fetch(ctx, b, key, fetch, "")
}

// fetch calls the upstream, stores a good answer and releases our claim if the answer
// will not be stored (error, too large, not queued), so waiting replicas stop waiting.
func (c *Cache) fetch(ctx context.Context, b *Budget, key string, fetch func(context.Context) ([]byte, error), token string) ([]byte, Source, error) {
	v, err := fetch(ctx)
	stored := err == nil && c.SetFor(b, key, v)
	if token != "" && !stored && c.usable() {
		rs := c.conn.EvalMulti(context.WithoutCancel(ctx), releaseScript,
			[]redisconn.Exec{{Keys: []string{c.lockKey(key)}, Args: []string{token}}})
		if rs[0].Error() != nil {
			c.errs.Inc()
		}
	}
	if err != nil {
		return nil, SourceFetched, err
	}
	return v, SourceFetched, nil
}
