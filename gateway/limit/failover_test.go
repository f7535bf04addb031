package limit

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/infura-gateway/infura-gateway/gateway/internal/redistest"
	"github.com/infura-gateway/infura-gateway/gateway/redisconn"
)

// TestRedisFailoverUnderLoad: an ElastiCache-like failover under a steady load of checks.
// The limiter's Redis is reached through an endpoint (a proxy) leading to A, B replicating
// A; then B is promoted, A made its replica, and the endpoint flipped to B while the
// limiter's connection stays open on A, where lease writes get READONLY. Limits must be
// enforced through B again: lease keys written on B, the Conn up, the redial counted.
func TestRedisFailoverUnderLoad(t *testing.T) {
	// No 5 s wait before a full sync (Redis 7 default) when a replica links.
	a, b := redistest.Start(t, "--repl-diskless-sync-delay", "0"), redistest.Start(t, "--repl-diskless-sync-delay", "0")
	b.ReplicaOf(t, a)
	p := redistest.StartProxy(t, a.Addr)
	ms := metrics.NewSet()
	// What is under test is the redial after a failover, not latency: with the default
	// 50 ms deadline a loaded machine makes a lease call time out now and then, and a
	// check rightly falls back per process (seen once in CI), which is not a failover.
	conn, err := redisconn.New(redisconn.Config{Addr: p.Addr, CallTimeout: time.Second}, ms)
	if err != nil {
		t.Fatal(err)
	}
	lim, err := New(Config{Prefix: "fo:"}, conn, ms)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lim.Close(); conn.Close() })

	var buckets []*Bucket
	var quotas []*Quota
	for i := range 50 {
		bk, _ := lim.NewBucket(fmt.Sprintf("k%d:rps", i), 500, 50)
		q, _ := lim.NewQuota(fmt.Sprintf("k%d:day", i), 1_000_000)
		buckets, quotas = append(buckets, bk), append(quotas, q)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; !stop.Load(); i++ {
				k := i % len(buckets)
				buckets[k].Take(1)
				quotas[k].Take(1)
				if i%64 == 0 {
					time.Sleep(time.Millisecond) // pacing of the load
				}
			}
		}()
	}
	defer func() { stop.Store(true); wg.Wait() }()
	waitFor(t, 10*time.Second, "leases under way", func() bool {
		return counterValue(ms, "gateway_limit_lease_calls_total") > 100
	})

	b.Promote(t)
	a.ReplicaOf(t, b)
	p.SetTarget(b.Addr) // the DNS flip; the limiter's open connection stays on A
	// Only the gateway writes to B from now on: lease keys there are new writes.
	if _, err := b.Do("FLUSHALL"); err != nil {
		t.Fatal(err)
	}
	el := waitFor(t, 10*time.Second, "limits enforced through B", func() bool {
		keys, err := b.Do("KEYS", "fo:*")
		return err == nil && strings.Contains(keys, "k0:rps") && strings.Contains(keys, "k0:day") &&
			conn.Up() && lim.shards[0].leasing.Load() && lim.shards[1].leasing.Load()
	})
	t.Logf("leases written on the new primary %v after the endpoint flip", el)
	if n := counterValue(ms, `gateway_redis_readonly_reconnects_total{client="redis"}`); n < 1 {
		t.Errorf("gateway_redis_readonly_reconnects_total = %d, want >= 1", n)
	}
	// Checks go through leases again, not the per-process fallback.
	fb := counterValue(ms, `gateway_limit_fallback_total{kind="rate"}`)
	calls := counterValue(ms, "gateway_limit_lease_calls_total")
	waitFor(t, 10*time.Second, "leasing without fallback", func() bool {
		return counterValue(ms, "gateway_limit_lease_calls_total") > calls+50
	})
	if d := counterValue(ms, `gateway_limit_fallback_total{kind="rate"}`) - fb; d > 0 {
		t.Errorf("%d checks fell back to per-process limits after recovery", d)
	}
}
