package sharedcache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/infura-gateway/infura-gateway/gateway/internal/redistest"
	"github.com/infura-gateway/infura-gateway/gateway/redisconn"
)

type replica struct {
	conn  *redisconn.Conn
	cache *Cache
	ms    *metrics.Set
}

func newReplica(t testing.TB, srv *redistest.Server, cfg Config) *replica {
	t.Helper()
	ms := metrics.NewSet()
	// A test that widens the request budget widens the calls' deadline with it (0: the
	// default).
	conn, err := redisconn.New(redisconn.Config{Addr: srv.Addr, CallTimeout: cfg.RequestBudget}, ms)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(cfg, conn, ms)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); conn.Close() })
	return &replica{conn: conn, cache: c, ms: ms}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(start)
}

func counter(ms *metrics.Set, name string) uint64 { return ms.GetOrCreateCounter(name).Get() }

func TestSetGetAndTTL(t *testing.T) {
	srv := redistest.Start(t)
	// 3 s, not 400 ms: the value must still be there when the poll below, the Get and
	// the PTTL after it run, and on a loaded machine a second between them is seen.
	const ttl = 3 * time.Second
	r := newReplica(t, srv, Config{TTL: ttl, Prefix: "ttl:"})
	ctx := context.Background()
	if _, ok := r.cache.Get(ctx, "block:0x10"); ok {
		t.Fatal("hit on an empty Redis")
	}
	val := []byte(`{"number":"0x10"}`)
	if !r.cache.Set("block:0x10", val) {
		t.Fatal("Set refused")
	}
	val[0] = 'X' // Set copied the value
	waitFor(t, 5*time.Second, "the asynchronous Set lands", func() bool {
		_, ok := r.cache.Get(ctx, "block:0x10")
		return ok
	})
	got, _ := r.cache.Get(ctx, "block:0x10")
	if string(got) != `{"number":"0x10"}` {
		t.Fatalf("got %q", got)
	}
	pttl, err := r.conn.Do(ctx, r.conn.B().Pttl().Key("ttl:v:block:0x10").Build()).AsInt64()
	if err != nil || pttl <= 0 || pttl > ttl.Milliseconds() {
		t.Fatalf("PTTL %d (%v), want (0, %d]", pttl, err, ttl.Milliseconds())
	}
	waitFor(t, ttl+10*time.Second, "the value expires with its TTL", func() bool {
		_, ok := r.cache.Get(ctx, "block:0x10")
		return !ok
	})
	if counter(r.ms, "gateway_sharedcache_sets_total") != 1 || counter(r.ms, `gateway_sharedcache_requests_total{result="hit"}`) == 0 {
		t.Fatal("sets/hits not counted")
	}
}

func TestValueSizeBound(t *testing.T) {
	srv := redistest.Start(t)
	r := newReplica(t, srv, Config{MaxValueBytes: 100})
	if r.cache.Set("big", make([]byte, 101)) {
		t.Fatal("a value over MaxValueBytes was queued")
	}
	if !r.cache.Set("ok", make([]byte, 100)) {
		t.Fatal("a value of exactly MaxValueBytes was refused")
	}
	if counter(r.ms, "gateway_sharedcache_value_too_large_total") != 1 {
		t.Fatal("too-large not counted")
	}
	// A too-large answer still reaches the caller, and its fetch claim is released.
	v, src, err := r.cache.GetOrFetch(context.Background(), "big2", func(context.Context) ([]byte, error) {
		return make([]byte, 200), nil
	})
	if err != nil || len(v) != 200 || src != SourceFetched {
		t.Fatalf("GetOrFetch of a large value: %d bytes, %v, %v", len(v), src, err)
	}
	n, _ := r.conn.Do(context.Background(), r.conn.B().Exists().Key("igw:cache:l:big2").Build()).AsInt64()
	if n != 0 {
		t.Fatal("the claim of a value that will not be stored was kept")
	}
}

func TestQueueFullDrops(t *testing.T) {
	srv := redistest.Start(t)
	r := newReplica(t, srv, Config{QueueSize: 4, Writers: 1})
	srv.Pause() // the writer waits out its deadline; the queue fills
	defer srv.Resume()
	queued := 0
	for i := range 100 {
		if r.cache.Set(fmt.Sprint("k", i), []byte("v")) {
			queued++
		}
	}
	if queued > 4+64+1 { // the queue, one batch being written, one taken
		t.Fatalf("%d of 100 queued with a queue of 4", queued)
	}
	if d := counter(r.ms, "gateway_sharedcache_drops_total"); d == 0 {
		t.Fatal("drops not counted")
	}
	t.Logf("queued %d, dropped %d", queued, counter(r.ms, "gateway_sharedcache_drops_total"))
}

// TestCoalescingAcrossThreeReplicas: 3 replicas, each asked concurrently for the same
// 1,000 immutable answers, fetch each about once in all (goal: ≤ 1,100 upstream calls).
func TestCoalescingAcrossThreeReplicas(t *testing.T) {
	srv := redistest.Start(t)
	const keys, replicas, workers = 1000, 3, 8
	var rs []*replica
	for range replicas {
		// What is under test is the coalescing, not the latency budget: on a loaded
		// machine a Redis round trip can pass 40 ms, and the request then rightly goes
		// to the upstream itself (1,874 fetches seen once), which is not a coalescing
		// failure. A budget of seconds takes the machine's load out of the count.
		rs = append(rs, newReplica(t, srv, Config{Prefix: "co:", RequestBudget: 2 * time.Second}))
	}
	var fetches atomic.Int64
	var wrong atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for _, r := range rs {
		next := atomic.Int64{}
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := next.Add(1) - 1
					if i >= keys {
						return
					}
					key := fmt.Sprintf("eth_getBlockByNumber:%#x:false", i)
					want := []byte(fmt.Sprintf(`{"number":"%#x"}`, i))
					v, _, err := r.cache.GetOrFetch(context.Background(), key, func(context.Context) ([]byte, error) {
						fetches.Add(1)
						time.Sleep(2 * time.Millisecond) // the upstream's latency
						return want, nil
					})
					if err != nil || !bytes.Equal(v, want) {
						wrong.Add(1)
					}
				}
			}()
		}
	}
	wg.Wait()
	var leaders, followers, timeouts uint64
	for _, r := range rs {
		leaders += counter(r.ms, "gateway_sharedcache_leader_fetches_total")
		followers += counter(r.ms, "gateway_sharedcache_follower_hits_total")
		timeouts += counter(r.ms, "gateway_sharedcache_follower_timeouts_total")
	}
	t.Logf("%d replicas × %d keys in %v: %d upstream fetches (%d as claim winner), %d answers from a follower wait, %d follower timeouts",
		replicas, keys, time.Since(start).Round(time.Millisecond), fetches.Load(), leaders, followers, timeouts)
	if wrong.Load() != 0 {
		t.Fatalf("%d wrong answers", wrong.Load())
	}
	if fetches.Load() > 1100 {
		t.Fatalf("%d upstream fetches for %d keys on %d replicas, want ≤ 1100", fetches.Load(), keys, replicas)
	}
}

// TestFetchErrorReleasesClaim: when the winner's fetch fails, waiting replicas do not
// wait out FollowerWait: they see the claim gone and fetch themselves.
func TestFetchErrorReleasesClaim(t *testing.T) {
	srv := redistest.Start(t)
	a := newReplica(t, srv, Config{FollowerWait: 10 * time.Second})
	b := newReplica(t, srv, Config{FollowerWait: 10 * time.Second})
	ctx := context.Background()
	started, fail := make(chan struct{}), make(chan struct{})
	errUp := errors.New("upstream down")
	var aErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _, aErr = a.cache.GetOrFetch(ctx, "k", func(context.Context) ([]byte, error) {
			close(started)
			<-fail
			return nil, errUp
		})
	}()
	<-started
	bDone := make(chan struct{})
	var bv []byte
	var bsrc Source
	go func() {
		defer close(bDone)
		bv, bsrc, _ = b.cache.GetOrFetch(ctx, "k", func(context.Context) ([]byte, error) { return []byte("v"), nil })
	}()
	close(fail)
	<-done
	t0 := time.Now()
	<-bDone
	if !errors.Is(aErr, errUp) {
		t.Fatalf("winner's error %v", aErr)
	}
	if string(bv) != "v" || bsrc != SourceFetched {
		t.Fatalf("follower got %q from %v", bv, bsrc)
	}
	if el := time.Since(t0); el > 2*time.Second {
		t.Fatalf("follower waited %v after the winner failed", el)
	}
}

// TestRedisDownIsSkippedAtOnce: Redis killed: Get is a miss and GetOrFetch fetches
// without waiting, Set is skipped, no goroutine piles up; Redis back: hits again within 5s.
func TestRedisDownIsSkippedAtOnce(t *testing.T) {
	srv := redistest.Start(t)
	r := newReplica(t, srv, Config{})
	ctx := context.Background()
	r.cache.Set("k", []byte("v"))
	waitFor(t, 5*time.Second, "value stored", func() bool { _, ok := r.cache.Get(ctx, "k"); return ok })
	runtime.GC()
	baseG := runtime.NumGoroutine()
	srv.Kill()
	waitFor(t, 5*time.Second, "breaker opens", func() bool {
		r.cache.Get(ctx, "k")
		return !r.conn.Up()
	})
	for i := range 1000 {
		t0 := time.Now()
		if _, ok := r.cache.Get(ctx, "k"); ok {
			t.Fatal("hit while Redis is down")
		}
		v, src, err := r.cache.GetOrFetch(ctx, fmt.Sprint("x", i), func(context.Context) ([]byte, error) { return []byte("u"), nil })
		if err != nil || string(v) != "u" || src != SourceFetched {
			t.Fatalf("GetOrFetch while down: %q %v %v", v, src, err)
		}
		if r.cache.Set("k2", []byte("v")) {
			t.Fatal("Set queued while Redis is down")
		}
		if el := time.Since(t0); el > 50*time.Millisecond {
			t.Fatalf("a call took %v while Redis is down", el)
		}
	}
	if g := runtime.NumGoroutine(); g > baseG+4 {
		t.Fatalf("goroutines %d while down, %d before", g, baseG)
	}
	srv.Restart(t)
	el := waitFor(t, 5*time.Second, "the tier is used again", func() bool {
		if !r.cache.Set("k3", []byte("v")) {
			return false
		}
		_, ok := r.cache.Get(ctx, "k3")
		return ok
	})
	t.Logf("cache tier back %v after Redis restarted", el)
}

// TestFrozenRedisGetIsBounded: a frozen Redis (SIGSTOP) costs a Get at most its 50 ms
// deadline until the breaker opens, then nothing.
func TestFrozenRedisGetIsBounded(t *testing.T) {
	srv := redistest.Start(t)
	r := newReplica(t, srv, Config{})
	ctx := context.Background()
	r.cache.Get(ctx, "k")
	srv.Pause()
	defer srv.Resume()
	slow := 0
	waitFor(t, 5*time.Second, "breaker opens", func() bool {
		t0 := time.Now()
		r.cache.Get(ctx, "k")
		if el := time.Since(t0); el > 20*time.Millisecond {
			slow++
			if el > 150*time.Millisecond {
				t.Fatalf("a Get took %v against a frozen Redis (deadline 50ms)", el)
			}
		}
		return !r.conn.Up()
	})
	t.Logf("%d Gets waited for the deadline before the breaker opened", slow)
	t0 := time.Now()
	for range 1000 {
		r.cache.Get(ctx, "k")
	}
	if el := time.Since(t0); el > 50*time.Millisecond {
		t.Fatalf("1000 Gets with the breaker open took %v", el)
	}
}

// What a request asks of Redis is bounded by RequestBudget, not by the Conn's longer
// per-call deadline: against a frozen Redis, GetOrFetch goes to fetch and GetMulti
// comes back empty within the budget. And a tier awaiting its namespace is skipped
// until it has one.
func TestRequestBudget(t *testing.T) {
	srv := redistest.Start(t)
	ms := metrics.NewSet()
	// A call deadline of 5 s against the bound of 2 s below: a path that waited for it
	// fails, and a loaded machine's second of scheduling delay does not (with 1 s
	// against 400 ms it had 600 ms).
	conn, err := redisconn.New(redisconn.Config{Addr: srv.Addr, CallTimeout: 5 * time.Second}, ms)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{RequestBudget: 40 * time.Millisecond, AwaitNamespace: true}, conn, ms)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); conn.Close() })
	ctx := context.Background()

	fetched := 0
	fetch := func(context.Context) ([]byte, error) { fetched++; return []byte("v"), nil }
	if v, src, err := c.GetOrFetch(ctx, "k", fetch); err != nil || string(v) != "v" || src != SourceFetched || fetched != 1 {
		t.Fatalf("before its namespace: %q %v %v, fetched %d", v, src, err, fetched)
	}
	if c.Set("k", []byte("v")) || counter(ms, `gateway_sharedcache_requests_total{result="skipped"}`) == 0 {
		t.Fatal("a tier without its namespace must skip Redis")
	}
	c.SetNamespace("chain1:")
	c.SetNamespace("chain2:") // the first wins
	if !c.Set("k", []byte("stored")) {
		t.Fatal("Set refused with the namespace set")
	}
	waitFor(t, 5*time.Second, "the value stored", func() bool { v, ok := c.Get(ctx, "k"); return ok && string(v) == "stored" })
	if vals := c.GetMulti(ctx, []string{"k", "absent"}); string(vals[0]) != "stored" || vals[1] != nil {
		t.Fatalf("GetMulti: %q", vals)
	}

	srv.Pause()
	defer srv.Resume()
	t0 := time.Now()
	if _, src, err := c.GetOrFetch(ctx, "k2", fetch); err != nil || src != SourceFetched {
		t.Fatalf("frozen Redis: %v %v", src, err)
	}
	if el := time.Since(t0); el > 2*time.Second {
		t.Fatalf("GetOrFetch waited %v for a frozen Redis: the budget is 40ms (the call deadline 5s)", el)
	}
	t0 = time.Now()
	if vals := c.GetMulti(ctx, []string{"k"}); vals[0] != nil {
		t.Fatalf("GetMulti against a frozen Redis: %q", vals)
	}
	if el := time.Since(t0); el > 2*time.Second {
		t.Fatalf("GetMulti waited %v for a frozen Redis: the budget is 40ms (the call deadline 5s)", el)
	}
}

func BenchmarkGetHit(b *testing.B) {
	srv := redistest.Start(b)
	r := newReplica(b, srv, Config{})
	val := bytes.Repeat([]byte("x"), 2048) // a block-sized answer
	r.cache.Set("k", val)
	ctx := context.Background()
	for {
		if _, ok := r.cache.Get(ctx, "k"); ok {
			break
		}
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(val)))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, ok := r.cache.Get(ctx, "k"); !ok {
				b.Error("miss")
				return
			}
		}
	})
}

func BenchmarkGetRedisDown(b *testing.B) {
	srv := redistest.Start(b)
	r := newReplica(b, srv, Config{})
	srv.Kill()
	ctx := context.Background()
	for r.conn.Up() {
		r.cache.Get(ctx, "k")
	}
	b.ReportAllocs()
	for b.Loop() {
		r.cache.Get(ctx, "k")
	}
}

// TestDefaultValueCap: with the defaults, an answer over 256 KiB is never written (a
// client must not be able to put megabytes into Redis with one call).
func TestDefaultValueCap(t *testing.T) {
	srv := redistest.Start(t)
	r := newReplica(t, srv, Config{})
	for _, tc := range []struct {
		size int
		want bool
	}{{256 << 10, true}, {256<<10 + 1, false}, {1 << 20, false}} {
		if got := r.cache.Set(fmt.Sprint("v", tc.size), make([]byte, tc.size)); got != tc.want {
			t.Errorf("Set of %d bytes queued: %v, want %v", tc.size, got, tc.want)
		}
	}
}
