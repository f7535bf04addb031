package limit

import (
	"fmt"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/internal/redistest"
)

// TestRedisAccuracyThreeReplicas: 3 limiters, each with its own Redis client as 3
// gateway replicas would have, share one bucket of 100/s (burst 100); clients offer
// ~1,000/s spread over them. After the first second (the burst and the cold-start credit)
// the cluster admits 100 ± 10 per second, and over the whole run never more than
// burst + rate×T + replicas×slack (the package doc's bound).
func TestRedisAccuracyThreeReplicas(t *testing.T) {
	srv := redistest.Start(t)
	const (
		rate     = 100
		burst    = 100
		replicas = 3
		offered  = 1000.0 // per second, whole cluster
		run      = 4 * time.Second
		warm     = time.Second
	)
	buckets := make([]*Bucket, replicas)
	for i := range buckets {
		r := newReplica(t, srv, Config{Prefix: "acc:"})
		b, err := r.lim.NewBucket("key:1:rps", rate, burst)
		if err != nil {
			t.Fatal(err)
		}
		buckets[i] = b
		waitFor(t, 10*time.Second, "replica connected", r.conn.Up) // a slow first dial would start in fail-open
	}
	start := time.Now()
	var total, steady atomic.Int64
	var perSecond [8]atomic.Int64
	var wg sync.WaitGroup
	for _, b := range buckets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sent := 0
			for {
				el := time.Since(start)
				if el >= run {
					return
				}
				// Offer at a steady pace: catch up to offered/replicas per second.
				for float64(sent) < el.Seconds()*offered/replicas {
					sent++
					if b.Take(1).OK {
						total.Add(1)
						if el >= warm {
							steady.Add(1)
						}
						perSecond[int(el/time.Second)].Add(1)
					}
				}
				time.Sleep(time.Millisecond) // pacing of the load, not synchronisation
			}
		}()
	}
	wg.Wait()
	secs := (run - warm).Seconds()
	got := float64(steady.Load()) / secs
	var per []int64
	for i := 0; i < int(run/time.Second); i++ {
		per = append(per, perSecond[i].Load())
	}
	t.Logf("admitted per second: %v; steady %.1f/s; total %d in %v", per, got, total.Load(), run)
	// The upper side is the limit's promise over the steady window too: burst + rate×T
	// + replicas×slack. Not rate + 10 %: a bucket nobody took from while the replicas
	// were starved (a loaded machine) refills up to its burst, which the next second
	// rightly admits ([181 105 93 178] per second, 125/s steady, seen under a CPU hog
	// with -race). The lower side (not starved) depends on Redis's round trips: on a
	// machine loaded far past its cores they pass the lease timeout and the 3 s window
	// fell to 76/s in CI. Both are held to ± 10 % over 10 s, beside a CPU hog, by
	// TestRedisAccuracyUnderCPUSaturation.
	slack := bucketSlack(rate, burst, 100*time.Millisecond)
	if most := float64(burst) + rate*secs + replicas*float64(slack); got < rate*0.5 || got*secs > most {
		t.Errorf("steady rate %.1f/s, want %d (at most %.0f in %.0f s, at least half the rate)", got, rate, most, secs)
	}
	if max := burst + rate*int64(run/time.Second) + replicas*slack; total.Load() > max {
		t.Errorf("admitted %d over %v, more than burst + rate×T + replicas×slack = %d", total.Load(), run, max)
	}
}

// TestRedisColdStartAndIdleKeys: the first check of a key is answered at once from the
// cold-start credit, and keys nobody uses cost no Redis call and no Redis key.
func TestRedisColdStartAndIdleKeys(t *testing.T) {
	srv := redistest.Start(t)
	r := newReplica(t, srv, Config{Prefix: "cold:"})
	var idle []*Bucket
	for i := range 1000 {
		b, err := r.lim.NewBucket(fmt.Sprintf("key:%d:rps", i), 50, 50)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, b)
	}
	used, _ := r.lim.NewBucket("key:used:rps", 50, 50)
	start := time.Now()
	if d := used.Take(1); !d.OK {
		t.Fatalf("first take of a key refused: %+v", d)
	}
	if el := time.Since(start); el > 5*time.Millisecond {
		t.Fatalf("first take took %v", el)
	}
	// Spend the credit so a lease goes out, then wait until Redis has the bucket.
	for range 10 {
		used.Take(1)
	}
	waitFor(t, 5*time.Second, "the used key's bucket in Redis", func() bool {
		return redisInt(t, r.conn, "EXISTS", "cold:b:key:used:rps") == 1
	})
	if n := redisInt(t, r.conn, "DBSIZE"); n != 1 {
		t.Errorf("%d keys in Redis, want 1 (idle keys must not be leased)", n)
	}
	if calls := counterValue(r.ms, "gateway_limit_lease_calls_total"); calls > 5 {
		t.Errorf("%d lease calls for one used key", calls)
	}
	_ = idle
}

// TestRedisBatchTakesItsSum: a batch of n costs n units from the shared bucket.
func TestRedisBatchTakesItsSum(t *testing.T) {
	srv := redistest.Start(t)
	r := newReplica(t, srv, Config{Prefix: "batch:"})
	b, _ := r.lim.NewBucket("k", 0.001, 20) // no refill to speak of: only the burst
	admitted := int64(0)
	waitFor(t, 5*time.Second, "the whole burst admitted in batches of 3", func() bool {
		if b.Take(3).OK {
			admitted += 3
		}
		return admitted >= 18
	})
	if d := b.Take(21); d.Reason != ReasonTooLarge {
		t.Fatalf("a batch larger than the burst: %+v", d)
	}
	// 2 units are left in all. A batch of 3 may only be admitted on the borrow a check
	// makes while the renewal looks late (at most one lease, paid back first from the
	// next: the documented slack); never a second time once Redis said the bucket is
	// empty, and never beyond the borrow bound.
	var beyond int64
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		if b.Take(3).OK {
			beyond += 3
		}
		time.Sleep(time.Millisecond)
	}
	if max := 2 + b.s.maxLease; beyond > max {
		t.Fatalf("admitted %d units beyond the burst's last 2, want at most the borrow bound %d", beyond, max)
	}
}

// TestRedisQuotaSharedAndRollover: a daily quota shared by 3 replicas admits its limit
// (give or take one unit of credit or stranded allowance per replica) and starts again
// when Redis's UTC day ends. Redis's clock is moved (an offset in the script) to just
// before midnight.
func TestRedisQuotaSharedAndRollover(t *testing.T) {
	srv := redistest.Start(t)
	now := time.Now().UTC()
	midnight := now.Truncate(24 * time.Hour).Add(24 * time.Hour)
	offset := midnight.Add(-3 * time.Second).Sub(now)
	const limit, replicas = 30, 3
	var quotas []*Quota
	for range replicas {
		r := newReplica(t, srv, Config{Prefix: "quota:", clockOffset: offset})
		q, err := r.lim.NewQuota("key:9:daily", limit)
		if err != nil {
			t.Fatal(err)
		}
		quotas = append(quotas, q)
	}
	admitted := 0
	var last Decision
	waitFor(t, 2*time.Second, "the quota used up (refusal naming the day end)", func() bool {
		for _, q := range quotas {
			d := q.Take(1)
			if d.OK {
				admitted++
			} else {
				last = d
			}
		}
		return !last.OK && last.RetryAfter > 500*time.Millisecond
	})
	if admitted < limit-replicas || admitted > limit+replicas {
		t.Fatalf("admitted %d of a daily quota of %d over %d replicas", admitted, limit, replicas)
	}
	if last.Kind != KindQuota || last.Reason != ReasonExceeded || last.RetryAfter > 3*time.Second {
		t.Fatalf("refusal %+v, want quota exceeded with retry-after ≤ 3s (until Redis's midnight)", last)
	}
	t.Logf("admitted %d of %d; refusal: retry after %v", admitted, limit, last.RetryAfter)
	// After Redis's midnight the quota is fresh on every replica.
	for i, q := range quotas {
		waitFor(t, 10*time.Second, fmt.Sprintf("replica %d admits on the new day", i), func() bool { return q.Take(1).OK })
	}
	if time.Now().UTC().Add(offset).Before(midnight) {
		t.Fatal("admitted again before Redis's midnight")
	}
}

// TestRedisSlotsAcrossReplicasAndCrashExpiry: slots are counted across replicas, and the
// slots of a replica that dies without cleaning up expire after SlotTTL.
func TestRedisSlotsAcrossReplicasAndCrashExpiry(t *testing.T) {
	srv := redistest.Start(t)
	// 3 s: a heartbeat late past the TTL on a loaded machine would free b's slots
	// to a while b holds them (what the TTL is for, not what this test checks).
	cfg := Config{Prefix: "slots:", SlotTTL: 3 * time.Second}
	a, b := newReplica(t, srv, cfg), newReplica(t, srv, cfg)
	const max = 6
	sa, _ := a.lim.NewSlots("key:3:ws", max)
	sb, _ := b.lim.NewSlots("key:3:ws", max)
	// Warm both handles: each replica reserves in Redis.
	for _, s := range []*Slots{sa, sb} {
		if !s.Acquire().OK {
			t.Fatal("first acquire refused (cold-start credit)")
		}
	}
	waitFor(t, 5*time.Second, "both reservations in Redis", func() bool {
		return redisInt(t, a.conn, "HLEN", "slots:s:key:3:ws") == 2
	})
	// Fill the cluster from both sides.
	waitFor(t, 5*time.Second, "the cluster fills up to max", func() bool {
		sa.Acquire()
		sb.Acquire()
		return sa.InUse()+sb.InUse() >= max-1
	})
	// It never goes over max: both keep trying for a while.
	deadline := time.Now().Add(500 * time.Millisecond)
	for time.Now().Before(deadline) {
		sa.Acquire()
		sb.Acquire()
		if n := sa.InUse() + sb.InUse(); n > max {
			t.Fatalf("%d slots in use across replicas, max %d", n, max)
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Logf("in use: a=%d b=%d (max %d)", sa.InUse(), sb.InUse(), max)
	heldByA := sa.InUse()
	if heldByA == 0 {
		t.Fatal("replica a holds no slot")
	}
	// Replica a dies: no release, no more heartbeats.
	a.lim.crash.Store(true)
	a.lim.Close()
	a.conn.Close()
	start := time.Now()
	el := waitFor(t, 15*time.Second, "b gets a's slots after a's TTL", func() bool {
		sb.Acquire()
		return sb.InUse() == max
	})
	t.Logf("a's %d slots free again after %v (SlotTTL %v)", heldByA, el, cfg.SlotTTL)
	if time.Since(start) < cfg.SlotTTL/2 {
		t.Errorf("a's slots were free after %v, before its TTL", el)
	}
	for range max {
		sb.Release()
	}
	if sb.InUse() != 0 {
		t.Fatal("release did not bring in-use to 0")
	}
}

// TestRedisOutageUnderLoad: Redis is killed (SIGKILL) and restarted on the same port, or
// frozen (SIGSTOP, a Redis that accepts connections and answers nothing) and resumed,
// under load. Every check answers at once throughout (fail open: per-process limiting),
// the goroutine count and the heap stay flat during the outage, and leasing is back
// within 5 s of Redis returning.
func TestRedisOutageUnderLoad(t *testing.T) {
	t.Run("killed", func(t *testing.T) {
		srv := redistest.Start(t)
		outageUnderLoad(t, srv, srv.Kill, func() { srv.Restart(t) })
	})
	t.Run("frozen", func(t *testing.T) {
		srv := redistest.Start(t)
		outageUnderLoad(t, srv, srv.Pause, srv.Resume)
	})
}

func outageUnderLoad(t *testing.T, srv *redistest.Server, down, up func()) {
	r := newReplica(t, srv, Config{Prefix: "outage:"})
	var buckets []*Bucket
	var quotas []*Quota
	var slots []*Slots
	for i := range 100 {
		b, _ := r.lim.NewBucket(fmt.Sprintf("k%d:rps", i), 500, 50)
		q, _ := r.lim.NewQuota(fmt.Sprintf("k%d:day", i), 1_000_000)
		s, _ := r.lim.NewSlots(fmt.Sprintf("k%d:ws", i), 20)
		buckets, quotas, slots = append(buckets, b), append(quotas, q), append(slots, s)
	}
	var stop atomic.Bool
	var mu sync.Mutex
	var lat []time.Duration
	var checks atomic.Int64
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var worst []time.Duration
			for i := w; !stop.Load(); i++ {
				k := i % len(buckets)
				t0 := time.Now()
				buckets[k].Take(1)
				quotas[k].Take(1)
				d := time.Since(t0) // a slot's Acquire may wait, on a connection's start only
				if slots[k].Acquire().OK {
					slots[k].Release()
				}
				checks.Add(1)
				worst = append(worst, d)
				if len(worst) > 4096 { // keep the slowest few
					sort.Slice(worst, func(i, j int) bool { return worst[i] > worst[j] })
					worst = worst[:64]
				}
				if i%64 == 0 {
					time.Sleep(time.Millisecond) // pacing of the load
				}
			}
			mu.Lock()
			lat = append(lat, worst...)
			mu.Unlock()
		}()
	}
	defer func() { stop.Store(true); wg.Wait() }()

	waitFor(t, 5*time.Second, "leases under way", func() bool {
		return counterValue(r.ms, "gateway_limit_lease_calls_total") > 100
	})
	baseHeap, baseG := heapAndGoroutines()

	down()
	waitFor(t, 5*time.Second, "the conn notices Redis is down", func() bool { return !r.conn.Up() })
	fallbackBefore := counterValue(r.ms, `gateway_limit_fallback_total{kind="rate"}`)
	// Sample 3 s of outage. Calls under way when Redis froze hold a goroutine each until
	// the client drops the dead connection (about 2 × ConnTimeout, 1 s): a bounded
	// transient. After that the count must be back to where it was, and stay there.
	var peakHeap uint64
	var gs []int
	for range 15 {
		h, g := heapAndGoroutines()
		peakHeap = max(peakHeap, h)
		gs = append(gs, g)
		time.Sleep(200 * time.Millisecond) // outage length, not synchronisation
	}
	if counterValue(r.ms, `gateway_limit_fallback_total{kind="rate"}`) == fallbackBefore {
		t.Error("no check fell back to per-process limits during the outage")
	}
	// Redis still down: 1,000 checks of one key one after the other, past anything it
	// leased, so on the fallback. Were a check to wait for Redis, each would take at
	// least the limiter's call deadline (50 ms): 50 s in all, where they take
	// milliseconds. Timed in sum, not one by one: load delays some checks, not a
	// thousand by 10 ms each.
	fbSeq, seqStart := counterValue(r.ms, `gateway_limit_fallback_total{kind="rate"}`), time.Now()
	for range 1000 {
		buckets[0].Take(1)
		quotas[0].Take(1)
	}
	if seq := time.Since(seqStart); seq > 10*time.Second {
		t.Errorf("1,000 checks took %v with Redis down: checks must never wait for Redis", seq)
	}
	if counterValue(r.ms, `gateway_limit_fallback_total{kind="rate"}`) == fbSeq {
		t.Error("1,000 checks of one key with Redis down: none on the fallback")
	}
	t.Logf("goroutines: before %d, every 200ms during the outage %v; heap: before %d KiB, peak %d KiB",
		baseG, gs, baseHeap>>10, peakHeap>>10)
	for i, g := range gs {
		if g > baseG+32 || (i >= 10 && g > baseG+4) {
			t.Errorf("goroutines grew from %d to %v while Redis was down", baseG, gs)
			break
		}
	}
	if peakHeap > baseHeap+8<<20 {
		t.Errorf("heap grew from %d to %d bytes while Redis was down", baseHeap, peakHeap)
	}

	up()
	callsAtRestart := counterValue(r.ms, "gateway_limit_lease_calls_total")
	el := waitFor(t, 5*time.Second, "leasing back after Redis returned", func() bool {
		return r.conn.Up() && r.lim.shards[0].leasing.Load() && r.lim.shards[1].leasing.Load() &&
			redisIntIs(r.conn, 1, "EXISTS", "outage:b:k0:rps") &&
			counterValue(r.ms, "gateway_limit_lease_calls_total") > callsAtRestart+10
	})
	t.Logf("leasing again %v after Redis returned", el)
	// Checks go through leases again, not the fallback.
	fb := counterValue(r.ms, `gateway_limit_fallback_total{kind="rate"}`)
	waitFor(t, 5*time.Second, "checks leave the fallback", func() bool {
		n := checks.Load()
		waitFor(t, 5*time.Second, "more checks", func() bool { return checks.Load() > n+1000 })
		cur := counterValue(r.ms, `gateway_limit_fallback_total{kind="rate"}`)
		defer func() { fb = cur }()
		return cur == fb
	})
	_, afterG := heapAndGoroutines()
	if afterG > baseG+4 {
		t.Errorf("goroutines %d after recovery, %d before the outage", afterG, baseG)
	}

	stop.Store(true)
	wg.Wait()
	sort.Slice(lat, func(i, j int) bool { return lat[i] > lat[j] })
	t.Logf("%d checks; slowest (a rate and a quota check each): %v", checks.Load(), lat[:min(10, len(lat))])
	// A check has nothing to wait on; the rare slow one is the scheduler or the collector
	// (this test forces collections) on a loaded 2-core machine: a CI run beside three
	// other test runs (load average 10) saw ten between 188 and 444 ms. One that waited
	// on a dead connection while Redis went down would take about a second (2 ×
	// ConnTimeout); one that waited for a call's deadline, 50 ms each time, is what the
	// 1,000 checks above catch.
	if len(lat) >= 10 && lat[9] > 750*time.Millisecond {
		t.Errorf("10 or more checks took over 750 ms (slowest %v): checks must never wait for Redis", lat[0])
	}
}

// TestRedisFailClosed: with FailClosed, checks are refused with ReasonRedisDown while
// Redis is down, and admitted again when it returns.
func TestRedisFailClosed(t *testing.T) {
	srv := redistest.Start(t)
	r := newReplica(t, srv, Config{Prefix: "closed:", FailClosed: true})
	b, _ := r.lim.NewBucket("k:rps", 1000, 100)
	q, _ := r.lim.NewQuota("k:day", 1000)
	s, _ := r.lim.NewSlots("k:ws", 10)
	if !b.Take(1).OK || !q.Take(1).OK || !s.Acquire().OK {
		t.Fatal("refused with Redis up")
	}
	s.Release()
	srv.Kill()
	// Refused as soon as Redis is known to be unusable (the breaker, or a failed lease).
	waitFor(t, 5*time.Second, "every kind refused naming Redis", func() bool {
		db, dq, ds := b.Take(1), q.Take(1), s.Acquire()
		if ds.OK {
			s.Release()
		}
		return db.Reason == ReasonRedisDown && dq.Reason == ReasonRedisDown && ds.Reason == ReasonRedisDown
	})
	if d := q.Take(1); d.OK || d.Kind != KindQuota || d.RetryAfter <= 0 {
		t.Fatalf("quota while down: %+v", d)
	}
	if d := s.Acquire(); d.OK || d.Kind != KindSlots || d.RetryAfter <= 0 {
		t.Fatalf("slots while down: %+v", d)
	}
	srv.Restart(t)
	waitFor(t, 5*time.Second, "admitted again after Redis returned", func() bool {
		return b.Take(1).OK && q.Take(1).OK
	})
}

// TestRedisDroppedHandlesAreCollected: handles dropped on a configuration reload without
// Close leave nothing behind: the collector closes them and their shard forgets them.
func TestRedisDroppedHandlesAreCollected(t *testing.T) {
	srv := redistest.Start(t)
	r := newReplica(t, srv, Config{Prefix: "gc:"})
	func() {
		for i := range 300 {
			b, _ := r.lim.NewBucket(fmt.Sprintf("b%d", i), 10, 10)
			q, _ := r.lim.NewQuota(fmt.Sprintf("q%d", i), 10)
			s, _ := r.lim.NewSlots(fmt.Sprintf("s%d", i), 10)
			b.Take(1)
			q.Take(1)
			s.Acquire()
		}
	}()
	kept, _ := r.lim.NewBucket("kept", 10, 10)
	waitFor(t, 10*time.Second, "dropped handles collected", func() bool {
		runtime.GC()
		return r.lim.Handles() == 1
	})
	waitFor(t, 10*time.Second, "shards forget them", func() bool {
		n := 0
		for _, sh := range r.lim.shards {
			sh.mu.Lock()
			n += len(sh.reg)
			sh.mu.Unlock()
		}
		return n == 1
	})
	if !kept.Take(1).OK {
		t.Fatal("the kept handle stopped working")
	}
}

// TestRedisSlotsReleasedOnClose: a replica that shuts down cleanly gives its slots back at
// once; the others need not wait for its TTL.
func TestRedisSlotsReleasedOnClose(t *testing.T) {
	srv := redistest.Start(t)
	cfg := Config{Prefix: "rel:", SlotTTL: time.Minute}
	a, b := newReplica(t, srv, cfg), newReplica(t, srv, cfg)
	sa, _ := a.lim.NewSlots("k", 4)
	sb, _ := b.lim.NewSlots("k", 4)
	waitFor(t, 5*time.Second, "a holds 4", func() bool { sa.Acquire(); return sa.InUse() == 4 })
	if sb.Acquire().OK && sb.Acquire().OK {
		t.Fatal("b got 2 slots while a holds all 4 (b has 1 of cold-start credit)")
	}
	a.lim.Close()
	waitFor(t, 5*time.Second, "b gets all 4 after a closed", func() bool { sb.Acquire(); return sb.InUse() == 4 })
}

// TestRedisManyKeys: thousands of active keys are leased by the shards in pipelined
// batches, without a goroutine per key.
func TestRedisManyKeys(t *testing.T) {
	srv := redistest.Start(t)
	r := newReplica(t, srv, Config{Prefix: "many:"})
	const n = 3000
	bs := make([]*Bucket, n)
	for i := range bs {
		bs[i], _ = r.lim.NewBucket(fmt.Sprintf("key:%d:rps", i), 100, 100) // L = 10
	}
	bs[0].Take(10) // warm the client's connections before counting goroutines
	waitFor(t, 5*time.Second, "a first lease", func() bool {
		return counterValue(r.ms, "gateway_limit_lease_calls_total") > 0
	})
	_, g0 := heapAndGoroutines()
	admitted := 0
	waitFor(t, 20*time.Second, "every key admits 15 (past its credit of 10)", func() bool {
		for _, b := range bs {
			if b.Take(1).OK {
				admitted++
			}
		}
		return admitted >= n*15
	})
	calls := counterValue(r.ms, "gateway_limit_lease_calls_total")
	batches := counterValue(r.ms, "gateway_limit_lease_batches_total")
	_, g1 := heapAndGoroutines()
	t.Logf("%d keys: %d leases in %d pipelined calls; goroutines %d → %d", n, calls, batches, g0, g1)
	if batches*4 > calls {
		t.Errorf("%d calls for %d leases: leases are not batched", batches, calls)
	}
	// The client's 2 pipelined connections run 2 goroutines each once calls overlap; a
	// goroutine per key would be thousands.
	if g1 > g0+8 {
		t.Errorf("goroutines %d → %d with %d keys", g0, g1, n)
	}
}

// TestRedisChecksAfterClose: after the Limiter is closed its handles keep answering, per
// process, instead of spending an allowance nobody refills.
func TestRedisChecksAfterClose(t *testing.T) {
	srv := redistest.Start(t)
	r := newReplica(t, srv, Config{Prefix: "after:"})
	b, _ := r.lim.NewBucket("k", 1000, 1000)
	r.lim.Close()
	for i := range 500 {
		if d := b.Take(1); !d.OK {
			t.Fatalf("take %d after Close refused: %+v", i, d)
		}
	}
	if counterValue(r.ms, `gateway_limit_fallback_total{kind="rate"}`) == 0 {
		t.Fatal("checks after Close did not use the per-process fallback")
	}
}

// TestRedisCallsLargerThanALease: a call costing more than a lease (a batch, an
// expensive method on a plan of a few units a second, a quota whose chunk is a few
// units) is admitted while the shared bucket or quota has room: by the cold credit and
// the borrow of its own cost, on a key's first call and on every later one once the
// lease before it has paid back what was borrowed. Before, it was refused until enough
// small leases had piled up, and on a quota chunk of 5 units every call of 10 was
// refused half the time while far under the quota.
func TestRedisCallsLargerThanALease(t *testing.T) {
	srv := redistest.Start(t)
	var replicas []*replica
	for range 2 {
		replicas = append(replicas, newReplica(t, srv, Config{Prefix: "large:"}))
	}
	var buckets []*Bucket
	var quotas []*Quota
	for _, r := range replicas {
		// A lease of 1 unit; a burst far above the 110 units the test spends in well
		// under a second (with a burst of 100 the last call was refused on a slow run).
		b, err := r.lim.NewBucket("key:units", 10, 1000)
		if err != nil {
			t.Fatal(err)
		}
		q, err := r.lim.NewQuota("key:daily", 5000) // chunks of 5 units
		if err != nil {
			t.Fatal(err)
		}
		buckets, quotas = append(buckets, b), append(quotas, q)
	}
	if d := buckets[0].Take(50); !d.OK {
		t.Fatalf("a fresh key's call of 50 units (burst 1000, lease 1): %+v", d)
	}
	if d := quotas[0].Take(10); !d.OK {
		t.Fatalf("a fresh key's call of 10 units (daily 5000, chunk 5): %+v", d)
	}
	for i := range 6 {
		b, q := buckets[i%2], quotas[i%2]
		waitFor(t, 5*time.Second, "the borrow paid back", func() bool { return b.s.avail.Load() >= 0 && q.s.avail.Load() >= 0 })
		if d := b.Take(10); !d.OK {
			t.Fatalf("call %d of 10 units on replica %d, bucket far from empty: %+v", i, i%2, d)
		}
		if d := q.Take(10); !d.OK {
			t.Fatalf("call %d of 10 units on replica %d, quota far from used up: %+v", i, i%2, d)
		}
	}
}

// TestRedisSlotsFollowAClientToAnotherReplica: a key with 2 connection slots, both used
// on one replica, then both closed: a client reconnecting through another replica gets
// both there once the first gives its idle reservation back (SlotIdleRelease, 2 s),
// not 30 s later.
func TestRedisSlotsFollowAClientToAnotherReplica(t *testing.T) {
	srv := redistest.Start(t)
	a, b := newReplica(t, srv, Config{Prefix: "move:"}), newReplica(t, srv, Config{Prefix: "move:"})
	sa, _ := a.lim.NewSlots("key:conns", 2)
	sb, _ := b.lim.NewSlots("key:conns", 2)
	if !sa.Acquire().OK {
		t.Fatal("a's first slot (the cold credit) refused")
	}
	waitFor(t, 5*time.Second, "a's second slot", func() bool { return sa.Acquire().OK })
	sa.Release()
	sa.Release()
	start := time.Now()
	var got int
	waitFor(t, 10*time.Second, "both slots on replica b", func() bool {
		for got < 2 && sb.Acquire().OK {
			got++
		}
		return got == 2
	})
	t.Logf("both slots on b %v after a's clients left", time.Since(start).Round(10*time.Millisecond))
}

// TestRedisSlotsExactAcrossReplicas: a key's slots are never more than its max across
// replicas, a replica's first Acquire included (it holds no credit: it waits for Redis's
// grant), and a replica fills every free slot in a row, each Acquire waiting for the
// reservation to grow rather than refusing while Redis has room.
func TestRedisSlotsExactAcrossReplicas(t *testing.T) {
	srv := redistest.Start(t)
	cfg := Config{Prefix: "exact:", SlotIdleRelease: 300 * time.Millisecond}
	const max = 3
	var rs [3]*Slots
	for i := range rs {
		rs[i], _ = newReplica(t, srv, cfg).lim.NewSlots("key:conns", max)
	}
	for i := range max {
		if d := rs[0].Acquire(); !d.OK {
			t.Fatalf("replica 0, slot %d of %d refused: %+v", i+1, max, d)
		}
	}
	for _, i := range []int{1, 2} {
		if d := rs[i].Acquire(); d.OK {
			t.Fatalf("replica %d admitted a slot with %d of %d in use on replica 0", i, max, max)
		} else if d.Kind != KindSlots || d.Reason != ReasonExceeded {
			t.Fatalf("replica %d: refused as %+v, want slots exceeded", i, d)
		}
	}
	for range max {
		rs[0].Release()
	}
	// Replica 0 gives its reservation back once idle; then replica 1 fills the key, and
	// replica 2 (cold, first Acquire) still gets nothing.
	waitFor(t, 10*time.Second, "replica 1's first slot", func() bool {
		if rs[1].Acquire().OK {
			return true
		}
		return false
	})
	for i := 1; i < max; i++ {
		if d := rs[1].Acquire(); !d.OK {
			t.Fatalf("replica 1, slot %d of %d refused with the key free: %+v", i+1, max, d)
		}
	}
	if rs[2].Acquire().OK || rs[0].Acquire().OK {
		t.Fatalf("a slot past %d admitted on another replica", max)
	}

	// Under churn on all three at once, cold reservations and idle releases included,
	// the slots in use never add up to more than max.
	for range max {
		rs[1].Release()
	}
	var inUse, peak atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(3 * time.Second)
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := rs[w%3]
			for time.Now().Before(stop) {
				if !s.Acquire().OK {
					time.Sleep(time.Millisecond)
					continue
				}
				n := inUse.Add(1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				time.Sleep(time.Duration(w+1) * time.Millisecond)
				inUse.Add(-1)
				s.Release()
				if w%2 == 0 {
					time.Sleep(400 * time.Millisecond) // idle past SlotIdleRelease now and then
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("peak slots in use across replicas under churn: %d (max %d)", peak.Load(), max)
	if peak.Load() > max {
		t.Fatalf("%d slots in use across replicas, max %d", peak.Load(), max)
	}
}

// TestRedisQuotaUnspentAllowanceMoves: allowance a replica leased and left unspent is
// not lost to the day. An idle replica gives it back to Redis after QuotaIdleReturn; a
// closed handle (a reload replaced it, the process stops) at once; and a replica told
// the day's quota is used up asks again while its clients go on, so it spends what came
// back: the day's total reaches the limit (past it by at most the last borrow, the
// package's bound).
func TestRedisQuotaUnspentAllowanceMoves(t *testing.T) {
	srv := redistest.Start(t)
	// holding leases a quota's allowance through q and spends units of it, until q holds
	// more than least unspent; it returns the units spent.
	holding := func(q *Quota, key string, least int64) int64 {
		var spent int64
		waitFor(t, 5*time.Second, "a leased allowance held", func() bool {
			for range 50 { // fast enough for the lease size to grow
				if q.Take(1).OK {
					spent++
				}
				if q.s.avail.Load() > least && quotaUsed(t, q, key) > spent {
					return true
				}
			}
			return false
		})
		return spent
	}

	t.Run("idle", func(t *testing.T) {
		a, _ := newReplica(t, srv, Config{Prefix: "idle:", QuotaIdleReturn: 200 * time.Millisecond}).lim.NewQuota("key:day", 5000)
		spent := holding(a, "idle:q:key:day", 0)
		waitFor(t, 5*time.Second, "the idle replica's allowance back in Redis", func() bool {
			return quotaUsed(t, a, "idle:q:key:day") == spent
		})
	})

	t.Run("exhausted replica", func(t *testing.T) {
		const limit = 100_000 // leases of 100 to 1,000 units
		cfg := Config{Prefix: "moves:", QuotaIdleReturn: time.Hour}
		a, _ := newReplica(t, srv, cfg).lim.NewQuota("key:day", limit)
		b, _ := newReplica(t, srv, cfg).lim.NewQuota("key:day", limit)
		// a holds more than b may borrow (half its largest lease), so b's last borrow
		// cannot stand in for a's allowance.
		spent := holding(a, "moves:q:key:day", b.s.maxLease/2)
		exhausted := func() bool {
			d := b.Take(1)
			if d.OK {
				spent++
				return false
			}
			return d.RetryAfter > time.Minute // refused until Redis's day ends, not a lease on its way
		}
		waitFor(t, 10*time.Second, "b told the day's quota is used up", func() bool {
			for range 1000 {
				if exhausted() {
					return true
				}
			}
			return false
		})
		held := a.s.avail.Load()
		t.Logf("b told the quota is used up after %d of %d units; a holds %d unspent", spent, limit, held)
		if held <= 0 || spent >= limit {
			t.Fatalf("a holds %d, %d of %d spent: the case is not set up", held, spent, limit)
		}
		a.Close() // a reload replaced a's plan
		waitFor(t, 10*time.Second, "b spends what a left", func() bool {
			exhausted()
			return spent >= limit
		})
		for range 10 {
			if b.Take(1).OK {
				spent++
			}
		}
		if spent > limit+b.s.maxLease {
			t.Fatalf("%d units admitted of a daily quota of %d, past the borrow bound", spent, limit)
		}
	})
}

// quotaUsed is the day's used units Redis holds for a quota's key (0 before its first lease).
func quotaUsed(t *testing.T, q *Quota, key string) int64 {
	return redisInt(t, q.s.lim.conn, "EVAL", "return tonumber(redis.call('HGET', KEYS[1], 'u') or '0')", "1", key)
}
