// Package limit enforces per-key limits — token buckets (requests or cost units per
// second with a burst), daily quotas and concurrency slots — either per process (local
// mode) or shared by every gateway replica through Redis, with the same API.
//
// # The hot path
//
// The caller creates one handle per (key, limit) when its configuration loads
// (Limiter.NewBucket, NewQuota, NewSlots) and keeps it. A check (Bucket.Take, Quota.Take,
// Slots.Acquire) is a compare-and-swap on the handle's own state: no allocation, no lock,
// no Redis round trip, never a wait. It answers with a Decision: ok, or refused with the
// limit's kind and caller-given name (never the API key itself: name limits by key *name*
// or id) and a retry-after duration, so the gateway can answer 429 with Retry-After and a
// JSON-RPC -32005 error naming the limit.
//
// # Redis mode: allowances leased from Redis
//
// With a *redisconn.Conn, each handle spends a local allowance leased from a global state
// in Redis by a few background goroutines (Config.Shards, each owning a share of the
// handles), never by a request. A Lua script keeps each global bucket or quota using
// Redis's own clock (TIME), so replica clocks do not matter. The admitted total of the
// cluster is therefore bounded by what Redis granted, plus the small credit below:
//
//   - Lease size: L = rate × LeaseWindow (100 ms by default; at least 1, at most burst) is
//     the smallest lease. The shard sizes each bucket's lease on the key's take rate on
//     this replica (units taken and refused over the last 10 lease windows) and on how
//     late its renewals land (from the check that saw the need to the answer; the peak,
//     decaying): enough for that rate over max(LeaseWindow, 3 renewals), between L and
//     4L (at most burst). It tops a handle up when its allowance falls under half the
//     lease, so a renewal goes out well ahead of need however slow renewals are (a shard
//     starved by a saturated CPU, a slow Redis), and a quiet key keeps small leases. When
//     the global bucket is empty the script says when tokens will be there and the shard
//     waits that long, but never longer than half the time the bucket takes to fill, so
//     no token is lost to the burst cap while replicas are hungry.
//   - Borrow: a check that finds the allowance spent, while its renewal is due or under
//     way and Redis has not said the global bucket is empty, borrows up to one lease, or
//     the check's own cost when that is more (a batch or an expensive call on a plan
//     whose lease is a few units), against the next lease, which pays it back first. A
//     late renewal refuses nobody, and neither does a call larger than a lease.
//   - Lease calls have a deadline of their own (LeaseTimeout, 500 ms), not the Conn's 50 ms
//     of a call a request waits on: nobody waits on a lease, and on a saturated CPU a
//     grant that lands late is still a grant. A handle's checks leave for the fallback
//     only after 2 of its lease calls in a row went unanswered (or when the Conn's
//     breaker says Redis is down).
//   - Cold start: a new handle holds a credit of L units, not yet charged to Redis, so
//     the first request of a key never waits. The credit is charged (as debt, which may
//     take the global bucket below zero) with the handle's first lease; a handle nobody
//     uses is never charged and causes no Redis traffic at all.
//   - Accuracy: over any window T the cluster admits at most burst + rate×T (what Redis
//     granted) + replicas × 2 × 4L (per replica, an allowance or credit of at most the
//     largest lease outstanding at the start and a borrow of at most one lease, or one
//     call's cost, not yet paid back at the end). For 3 replicas, 100/s, burst 100, L = 10 and 1,000/s offered
//     for 30 s: at most 3,340 admitted (111/s); the lower side loses at most the
//     allowances left unused at the end (≤ 3×4L) and the grant of a lease call that
//     missed LeaseTimeout after Redis ran it. Three replicas beside a CPU hog (load far
//     above the cores) admit a 100/s plan within 10 % (TestRedisAccuracyUnderCPUSaturation).
//   - Daily quotas lease in chunks of limit/1000 units (at least 1, at most 2^20) per UTC
//     day of Redis's clock, doubled while leases come faster than one per LeaseWindow (up
//     to 1% of the quota) and halved back when they slow down; until Redis says the day's
//     quota is used up, a take may borrow half a chunk (or its own cost, when more) ahead of
//     its allowance, so a busy key is never refused while under its quota. A replica drops yesterday's allowance
//     when Redis's day ends. No allowance is stranded on a replica: one that had no take
//     for QuotaIdleReturn (2 s) gives what it holds back to Redis, a closed handle (a
//     reload, a shutdown) at once, and a replica told the day's quota is used up asks
//     again, at most once a second while its clients keep calling, so it spends what
//     came back (TestRedisQuotaUnspentAllowanceMoves).
//   - Slots (concurrent websocket connections, subscriptions) are reserved per replica in
//     Redis: a replica keeps its in-use count reserved, plus a small spare (max/10, 1 to
//     16) for SlotIdleRelease after a grant, so a burst of Acquires is local too; a spare
//     not taken goes back, so another replica of the key gets its share (an Acquire there
//     that needs it meanwhile is refused). Each replica
//     renews a liveness deadline (SlotTTL); the reservations of a replica past its
//     deadline are dropped by the next script run, so a crashed replica's slots expire on
//     their own. While Redis answers, slots are exact across replicas: a replica fills
//     only what Redis reserved for it. A cold handle (a key's first Acquire on a replica,
//     or the first after its idle reservation went back) holds no credit, and an Acquire
//     finding the reservation full while the key may have room waits for the grant: one
//     Redis round trip, on a connection's or subscription's start only. After Redis lost
//     its state (a restart without persistence, FLUSHALL) each replica asserts its in-use
//     count again, without a spare, once its breaker closes or at its next heartbeat
//     (SlotTTL/3); until every replica has, a grant may count only some of the slots in
//     use, so a key can pass its max by what the others hold.
//
// # Redis down or slow
//
// Every lease call has a deadline (LeaseTimeout) and the Conn's circuit breaker stops
// calls after failures; no request waits for any of it. While Redis is unusable, handles
// fall back to FailOpen (the default): each process limits at the plan's own rates, so the
// cluster admits up to replicas × limit; or FailClosed: every check is refused with
// ReasonRedisDown. When Redis returns, leasing resumes by itself (the Conn probes every
// 250 ms). Nothing piles up while it is down: the shards stop calling Redis, requests
// never call it, and the handles' state is fixed-size.
//
// # Ownership
//
// The Limiter owns its shard goroutines and every handle's Redis-side state. Close a
// handle when a configuration reload drops it (a handle the caller forgets is closed
// when it is garbage collected), and Close the Limiter to end its goroutines; Close
// waits for them and releases this replica's slot reservations.
package limit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/infura-gateway/infura-gateway/gateway/redisconn"
)

// Kind is the kind of limit that refused a check.
type Kind uint8

const (
	KindNone  Kind = iota
	KindRate       // a token bucket: requests or cost units per second
	KindQuota      // a daily quota
	KindSlots      // concurrency slots: websocket connections, subscriptions
)

// String names the kind for an error message ("requests per second limit of plan X").
func (k Kind) String() string {
	switch k {
	case KindRate:
		return "requests per second"
	case KindQuota:
		return "daily quota"
	case KindSlots:
		return "concurrency"
	}
	return "none"
}

func (k Kind) label() string {
	switch k {
	case KindRate:
		return "rate"
	case KindQuota:
		return "quota"
	case KindSlots:
		return "slots"
	}
	return "none"
}

// Reason says why a check was refused.
type Reason uint8

const (
	ReasonNone      Reason = iota
	ReasonExceeded         // the limit is used up; RetryAfter says when to come back
	ReasonTooLarge         // more units than the limit can ever grant at once (n > burst)
	ReasonRedisDown        // FailClosed and Redis is unusable
)

// String names the reason ("exceeded", "too_large", "redis_down").
func (r Reason) String() string {
	switch r {
	case ReasonExceeded:
		return "exceeded"
	case ReasonTooLarge:
		return "too_large"
	case ReasonRedisDown:
		return "redis_down"
	}
	return "none"
}

// Decision is the answer to a check. It is returned by value: nothing is allocated.
type Decision struct {
	OK bool
	// When refused: which limit, why, and how long until it may succeed (0 when unknown).
	Kind       Kind
	Reason     Reason
	RetryAfter time.Duration
	// Name is the handle's name as the caller gave it.
	Name string
}

// Config configures a Limiter. The zero value is a working default.
type Config struct {
	// Prefix starts every Redis key the limiter writes; default "igw:limit:".
	Prefix string
	// FailClosed refuses every check while Redis is unusable (ReasonRedisDown). The
	// default, fail open, limits per process at the plan's rates meanwhile.
	FailClosed bool
	// LeaseWindow is the share of a rate one lease covers: L = rate × LeaseWindow;
	// default 100ms. Smaller is more accurate and costs more Redis calls.
	LeaseWindow time.Duration
	// LeaseTimeout is the deadline of a lease call; default DefaultLeaseTimeout (500ms). Leases are off the
	// request path, so they need not keep the Conn's 50 ms: on a saturated CPU an answer
	// lands late, and a late grant is still a grant, not a failure that would put checks
	// on the fallback.
	LeaseTimeout time.Duration
	// Shards is the number of goroutines that lease from Redis; default 2. Each owns a
	// share of the handles and sends its due leases in one pipelined call.
	Shards int
	// MaxBatch bounds the leases in one pipelined call; default 256.
	MaxBatch int
	// SlotTTL is how long a replica's slot reservations outlive its last heartbeat
	// (a crashed replica's slots are free again after it); default 15s. Heartbeats go
	// every SlotTTL/3.
	SlotTTL time.Duration
	// SlotIdleRelease returns a slot reservation to Redis after the handle had nothing in
	// use for this long, and a spare reserved beside slots in use this long after its
	// grant; default 2s: a client that leaves one replica and reconnects to another (a
	// load balancer's choice) finds its slots there within it, and a key's clients on
	// several replicas get the key's max between them.
	SlotIdleRelease time.Duration
	// QuotaIdleReturn gives a daily quota's unspent allowance back to Redis after the
	// handle had no take for this long; default 2s: another replica whose clients go on
	// can spend it once Redis says the day's quota is used up.
	QuotaIdleReturn time.Duration
	// ReplicaID names this process in slot reservations; default random. Not a secret.
	ReplicaID string
	// Now is the wall clock of local daily quotas (local mode and fail-open fallback);
	// default time.Now. Redis mode uses Redis's clock.
	Now func() time.Time

	// clockOffset is added to Redis's clock in the scripts (tests of the day rollover).
	clockOffset time.Duration
	// slotRefresh is how often a slot reservation in use is written again, well within
	// the key's expiry of a day; default an hour (tests: shorter).
	slotRefresh time.Duration
}

func (c *Config) setDefaults() {
	if c.Prefix == "" {
		c.Prefix = "igw:limit:"
	}
	if c.LeaseWindow <= 0 {
		c.LeaseWindow = 100 * time.Millisecond
	}
	if c.LeaseTimeout <= 0 {
		c.LeaseTimeout = DefaultLeaseTimeout
	}
	if c.Shards <= 0 {
		c.Shards = 2
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 256
	}
	if c.SlotTTL <= 0 {
		c.SlotTTL = 15 * time.Second
	}
	if c.SlotIdleRelease <= 0 {
		c.SlotIdleRelease = 2 * time.Second
	}
	if c.QuotaIdleReturn <= 0 {
		c.QuotaIdleReturn = 2 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.slotRefresh <= 0 {
		c.slotRefresh = time.Hour
	}
}

// DefaultLeaseTimeout is Config.LeaseTimeout's default: what a lease call may take before
// it counts as a failure. A Conn only the limiter uses can take it as its CallTimeout, so
// its breaker's probes are as patient as the leases.
const DefaultLeaseTimeout = 500 * time.Millisecond

// Limiter creates limit handles and, in Redis mode, leases their allowances.
type Limiter struct {
	cfg   Config
	conn  *redisconn.Conn // nil: local mode
	epoch time.Time       // monotonic origin of the handles' nanosecond clocks

	shards []*shard
	next   atomic.Uint32 // round robin over shards
	stop   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
	crash  atomic.Bool // tests: end without cleaning up, as a killed process would

	handles atomic.Int64

	// slotsNewest is the newest slots handle of each name (Redis mode): the one that
	// writes this replica's field of the name in Redis (see slotsState.pred).
	slotsMu     sync.Mutex
	slotsNewest map[string]*slotsState

	leaseCalls, leaseErrors, leaseBatches, wakeDropped *metrics.Counter
	fallback                                           [4]*metrics.Counter
	refused                                            [4][4]*metrics.Counter
}

// New returns a Limiter: in Redis mode when conn is non-nil (limits shared by every
// replica using the same Redis and Prefix), per process otherwise. Metrics go to ms.
func New(cfg Config, conn *redisconn.Conn, ms *metrics.Set) (*Limiter, error) {
	cfg.setDefaults()
	if ms == nil {
		return nil, errors.New("limit: a metrics set is required")
	}
	if cfg.ReplicaID == "" {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("limit: cannot make a replica id: %w", err)
		}
		cfg.ReplicaID = hex.EncodeToString(b[:])
	}
	if slices.Contains(ms.ListMetricNames(), `gateway_limit_handles`) {
		return nil, errors.New("limit: another Limiter already reports to this metrics set")
	}
	l := &Limiter{cfg: cfg, conn: conn, epoch: time.Now(), stop: make(chan struct{}), slotsNewest: map[string]*slotsState{}}
	l.leaseCalls = ms.GetOrCreateCounter(`gateway_limit_lease_calls_total`)
	l.leaseErrors = ms.GetOrCreateCounter(`gateway_limit_lease_errors_total`)
	l.leaseBatches = ms.GetOrCreateCounter(`gateway_limit_lease_batches_total`)
	l.wakeDropped = ms.GetOrCreateCounter(`gateway_limit_wake_dropped_total`)
	for _, k := range []Kind{KindRate, KindQuota, KindSlots} {
		l.fallback[k] = ms.GetOrCreateCounter(`gateway_limit_fallback_total{kind="` + k.label() + `"}`)
		for _, r := range []Reason{ReasonExceeded, ReasonTooLarge, ReasonRedisDown} {
			l.refused[k][r] = ms.GetOrCreateCounter(`gateway_limit_refused_total{kind="` + k.label() + `",reason="` + r.String() + `"}`)
		}
	}
	ms.GetOrCreateGauge(`gateway_limit_handles`, func() float64 { return float64(l.handles.Load()) })
	if conn != nil {
		for i := 0; i < cfg.Shards; i++ {
			sh := newShard(l)
			l.shards = append(l.shards, sh)
			l.wg.Add(1)
			go sh.run()
		}
	} else {
		l.shards = []*shard{newShard(l)} // registry only; no goroutine in local mode
	}
	return l, nil
}

// Redis reports whether the limiter shares its limits through Redis.
func (l *Limiter) Redis() bool { return l.conn != nil }

// Handles is the number of live handles.
func (l *Limiter) Handles() int { return int(l.handles.Load()) }

// Close ends the leasing goroutines, waits for them, releases this replica's slot
// reservations in Redis and takes it out of the replicas zset (best effort: each within
// the Conn's deadline, LeaseTimeout for the last, none while Redis is down). Handles
// keep working afterwards as in fail-open mode, without Redis. It does not close the
// Conn.
func (l *Limiter) Close() {
	l.once.Do(func() {
		close(l.stop)
		l.wg.Wait()
		l.leave()
	})
}

// leave removes this replica's liveness entry, after the shards released what they
// held (their releases renew it). Without it the entry stayed until its deadline, and
// the zset kept the id for an hour past it.
func (l *Limiter) leave() {
	if l.conn == nil || l.crash.Load() || !l.conn.Up() {
		return
	}
	rs := l.conn.EvalMultiWithin(context.Background(), l.cfg.LeaseTimeout, leaseScript, []redisconn.Exec{{
		Keys: []string{l.cfg.Prefix + "replicas"},
		Args: []string{"x", l.offsetArg(), l.cfg.ReplicaID},
	}})
	if len(rs) == 0 || rs[0].Error() != nil {
		l.leaseErrors.Inc()
	}
}

// nanotime is the limiter's monotonic clock, in nanoseconds since New.
func (l *Limiter) nanotime() int64 { return int64(time.Since(l.epoch)) }

func (l *Limiter) pickShard() *shard {
	return l.shards[int(l.next.Add(1))%len(l.shards)]
}

func (l *Limiter) refuse(k Kind, r Reason, retry time.Duration, name string) Decision {
	l.refused[k][r].Inc()
	if retry < 0 {
		retry = 0
	}
	return Decision{Kind: k, Reason: r, RetryAfter: retry, Name: name}
}

// checkName keeps Redis keys and messages readable: the name is the caller's label of a
// (key, limit) pair, e.g. "key:42:rps"; never the API key itself.
func checkName(name string) error {
	if name == "" || len(name) > 200 {
		return fmt.Errorf("limit: name must be 1-200 bytes, got %d", len(name))
	}
	if strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return fmt.Errorf("limit: name %q has spaces or control characters", name)
	}
	return nil
}

func ftoa(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

func itoa(i int64) string { return strconv.FormatInt(i, 10) }

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

func clamp(v, lo, hi int64) int64 { return max(lo, min(v, hi)) }

// leaseSize is L for a bucket: rate × window, at least 1, at most burst.
func leaseSize(rate float64, burst int64, window time.Duration) int64 {
	l := int64(math.Ceil(rate * window.Seconds()))
	return clamp(l, 1, burst)
}

// leaseGrowth bounds how far a bucket's lease grows with the observed take rate and
// renewal latency: at most leaseGrowth × L (and at most burst).
const leaseGrowth = 4

// maxLeaseSize is the largest lease of a bucket.
func maxLeaseSize(rate float64, burst int64, window time.Duration) int64 {
	return min(leaseGrowth*leaseSize(rate, burst, window), burst)
}

// bucketSlack is what one replica may admit beyond what Redis granted: its allowance
// (at most the largest lease; the cold-start credit is one L of it) and a borrow of at
// most one lease (twice the prefetch point, half a lease rounded up). The package doc's
// accuracy bound is burst + rate×T + replicas × this.
func bucketSlack(rate float64, burst int64, window time.Duration) int64 {
	m := maxLeaseSize(rate, burst, window)
	return m + 2*ceilDiv(m, 2)
}
