package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/internal/redistest"
	"github.com/infura-gateway/infura-gateway/gateway/internal/toxiproxy"
)

// These tests bound what clients can put into the shared tier (Redis), and check that
// trouble with the tier never changes limiting. They run the whole gateway against a
// real redis-server.

const openAnonymous = "anonymous: {plan: open}\nplans:\n  open: {}\n"

// sharedOpen is openAnonymous with the shared tier's request budget (and so its Redis
// call deadline, the writers' too) at 2 s, for tests of what the tier stores and serves
// (the other tests here that wait for writes set the same budget their own way),
// not of Redis's latency: with the default 40 ms (a 50 ms deadline) a loaded machine's
// write misses it now and then and is dropped, and a test waiting for every write to
// land waits in vain (TestSharedCacheBatchWithinAnswerBudget: "timed out waiting for the
// blocks stored").
const sharedOpen = openAnonymous + "shared_cache: {request_budget: 2s}\n"

// redisValueBytes is what Redis holds for its keys: the sum of MEMORY USAGE over every
// key (deterministic, unlike used_memory, which counts client buffers too).
func redisValueBytes(t *testing.T, rs *redistest.Server) (total int64, keys []string) {
	t.Helper()
	out, err := rs.Do("KEYS", "*")
	if err != nil {
		t.Fatalf("KEYS: %v", err)
	}
	for _, k := range strings.Split(out, "\n") {
		if k == "" {
			continue
		}
		n, err := rs.Do("MEMORY", "USAGE", k)
		if err != nil {
			t.Fatalf("MEMORY USAGE: %v", err)
		}
		v, _ := strconv.ParseInt(n, 10, 64) // "" when the key expired meanwhile
		total += v
		keys = append(keys, k)
	}
	return total, keys
}

// settled waits until the replica has no answer waiting to be written to Redis.
func settled(t *testing.T, gw *testGateway) {
	t.Helper()
	waitFor(t, "the shared tier's write queue empty", func() bool { return gw.metric(t, "gateway_sharedcache_queue_bytes") == 0 })
}

// paddedBlock answers deep block numbers with a block of about size bytes.
func paddedBlock(r fakeRequest, size int) fakeAnswer {
	if r.Method != "eth_getBlockByNumber" {
		return fakeAnswer{}
	}
	var p []string
	_ = json.Unmarshal(r.Params, &p)
	if len(p) == 0 || p[0] == "latest" {
		return fakeAnswer{}
	}
	n, err := strconv.ParseUint(strings.TrimPrefix(p[0], "0x"), 16, 64)
	if err != nil {
		return fakeAnswer{}
	}
	return fakeAnswer{Result: fmt.Sprintf(`{"number":"0x%x","hash":"%s","extraData":"0x%s"}`, n, fakeHash(n), strings.Repeat("e", size))}
}

// TestSharedTierEthCallDoesNotFillRedis: 20 distinct eth_calls at a deep block, each
// answered with 1 MB, grow Redis by less than 4 MB, whether eth_call is on the shared
// tier's allow list or not (it is off by default; allowed, the 256 KiB cap per answer
// keeps 1 MB answers out). Deep blocks are still shared.
func TestSharedTierEthCallDoesNotFillRedis(t *testing.T) {
	const mb = 1 << 20
	for _, tc := range []struct{ name, file string }{
		{"default", sharedOpen},
		{"eth_call allowed", openAnonymous + "shared_cache: {methods: [eth_call], request_budget: 2s}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := redistest.Start(t)
			big := `"0x` + strings.Repeat("ab", 499_950) + `"` // an answer of 1,000,000 bytes
			up := startFakeUpstream(t, fakeRespond(func(r fakeRequest) fakeAnswer {
				if r.Method == "eth_call" {
					return fakeAnswer{Result: big}
				}
				return fakeAnswer{}
			}))
			up.head.Store(5000)
			gw := startReplicas(t, 1, up, rs.Addr, tc.file)[0]
			waitFor(t, "the head", func() bool { return gw.srv.defaultNetwork().Heads.Number() >= 5000 })
			before, _ := redisValueBytes(t, rs)
			for i := range 20 {
				call := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"eth_call","params":[{"to":"0x00000000000000000000000000000000000000aa","data":"0x%08x"},"0x10"]}`, i, i)
				code, b, err := tryPost(gw.URL, call)
				if err != nil || code != 200 || len(b) < 999_000 {
					t.Fatalf("eth_call %d: %d, %d bytes, %v", i, code, len(b), err)
				}
			}
			// A deep block after them: once it is in Redis, every earlier write is done.
			if code, b, err := tryPost(gw.URL, `{"jsonrpc":"2.0","id":1,"method":"eth_getBlockByNumber","params":["0x20",false]}`); err != nil || code != 200 {
				t.Fatalf("block: %d %s %v", code, b, err)
			}
			waitFor(t, "the deep block stored", func() bool { return gw.metric(t, "gateway_sharedcache_sets_total") >= 1 })
			settled(t, gw)
			after, keys := redisValueBytes(t, rs)
			grew := after - before
			t.Logf("Redis grew by %d bytes (%d keys) for 20 eth_calls of 1 MB and one block", grew, len(keys))
			if grew >= 4*mb {
				t.Fatalf("20 distinct 1 MB eth_call answers grew Redis by %.1f MB, want less than 4 MB", float64(grew)/mb)
			}
		})
	}
}

// TestSharedTierTTLOnEveryKey: every key the shared tier writes expires, within the
// configured TTL (shared_cache.ttl).
func TestSharedTierTTLOnEveryKey(t *testing.T) {
	rs := redistest.Start(t)
	up := startFakeUpstream(t)
	up.head.Store(5000)
	gws := startReplicas(t, 2, up, rs.Addr, openAnonymous+"shared_cache: {ttl: 90m, request_budget: 2s}\n") // what is under test is the TTLs, not Redis latency under load
	for _, gw := range gws {
		waitFor(t, "the head", func() bool { return gw.srv.defaultNetwork().Heads.Number() >= 5000 })
	}
	var wg sync.WaitGroup
	for _, gw := range gws {
		for n := 1; n <= 10; n++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, call := range []string{
					fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"eth_getBlockByNumber","params":["0x%x",false]}`, n),
					fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"eth_getBlockByHash","params":["%s",false]}`, fakeHash(uint64(n))),
				} {
					if code, b, err := tryPost(gw.URL, call); err != nil || code != 200 {
						t.Errorf("%s: %d %s %v", call, code, b, err)
					}
				}
			}()
		}
	}
	wg.Wait()
	waitFor(t, "answers stored", func() bool {
		return gws[0].metric(t, "gateway_sharedcache_sets_total")+gws[1].metric(t, "gateway_sharedcache_sets_total") >= 20
	})
	for _, gw := range gws {
		settled(t, gw)
	}
	_, keys := redisValueBytes(t, rs)
	if len(keys) < 20 {
		t.Fatalf("%d keys in Redis, want at least 20", len(keys))
	}
	for _, k := range keys {
		v, err := rs.Do("PTTL", k)
		if err != nil {
			t.Fatal(err)
		}
		ms, _ := strconv.ParseInt(v, 10, 64)
		switch {
		case ms == -2: // a fetch claim that expired meanwhile
		case ms <= 0:
			t.Errorf("key %s has no TTL (PTTL %s)", k, v)
		case time.Duration(ms)*time.Millisecond > 90*time.Minute:
			t.Errorf("key %s: TTL %v, more than the configured 90m", k, time.Duration(ms)*time.Millisecond)
		}
	}
}

// TestSharedTierTenantBudget: a tenant's answers write at most its budget of bytes per
// minute into Redis (shared_cache.tenant_bytes_per_minute); what is over it is skipped
// and counted, the requests are answered as usual, and another tenant's answers are
// still written.
func TestSharedTierTenantBudget(t *testing.T) {
	rs := redistest.Start(t)
	up := startFakeUpstream(t, fakeRespond(func(r fakeRequest) fakeAnswer { return paddedBlock(r, 1000) }))
	up.head.Store(5000)
	const budget = 8192
	gw := startReplicas(t, 1, up, rs.Addr, accessConfig("{}")+fmt.Sprintf("shared_cache: {tenant_bytes_per_minute: %d, request_budget: 2s}\n", budget))[0]
	waitFor(t, "the head", func() bool { return gw.srv.defaultNetwork().Heads.Number() >= 5000 })
	block := func(key string, n int) {
		t.Helper()
		call := fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"eth_getBlockByNumber","params":["0x%x",false]}`, n)
		t0 := time.Now()
		code, b, err := tryPost(gw.URL+"/v3/"+key, call)
		if err != nil || code != 200 || !strings.Contains(b, fmt.Sprintf(`"number":"0x%x"`, n)) {
			t.Fatalf("block %d: %d %s %v", n, code, b, err)
		}
		if took := time.Since(t0); took > 5*time.Second {
			t.Errorf("block %d took %v", n, took)
		}
	}
	before, _ := redisValueBytes(t, rs)
	for n := 1; n <= 30; n++ {
		block(keyAlice, n)
	}
	settled(t, gw)
	sets := gw.metric(t, "gateway_sharedcache_sets_total")
	over := gw.metric(t, "gateway_sharedcache_over_budget_total")
	after, _ := redisValueBytes(t, rs)
	t.Logf("alice: 30 blocks of ~1 KB, %v written, %v over budget, Redis grew %d bytes", sets, over, after-before)
	// The 30 requests take well under a minute: at most two budget windows.
	if sets > 2*budget/1000 || over < 30-2*budget/1000 {
		t.Fatalf("alice wrote %v answers (%v over budget) with a budget of %d bytes a minute", sets, over, budget)
	}
	for n := 100; n < 103; n++ {
		block(keyBob, n)
	}
	waitFor(t, "bob's answers written", func() bool { return gw.metric(t, "gateway_sharedcache_sets_total") >= sets+3 })
}

// TestCacheTroubleLeavesLimitsExact: the shared tier's connection to Redis is choked
// (each connection to Redis limited to 50 KB/s, while clients ask for fresh 60 KB
// blocks on two replicas: every write misses its deadline and the cache's circuit
// breaker opens). Limits must not notice: they go on being leased from Redis, and the
// cluster admits alice's burst of 20 and not more.
func TestCacheTroubleLeavesLimitsExact(t *testing.T) {
	rs := redistest.Start(t)
	tp := toxiproxy.Start(t)
	px := tp.NewProxy(t, "redis", rs.Addr)
	up := startFakeUpstream(t, fakeRespond(func(r fakeRequest) fakeAnswer { return paddedBlock(r, 60<<10) }))
	up.head.Store(1 << 20)
	const burst = 20
	gws := startReplicas(t, 2, up, px.Addr, accessConfig(fmt.Sprintf("{requests_per_second: 0.001, burst: %d}", burst)))
	var admitted atomic.Int64
	alice := func(gw *testGateway) {
		t.Helper()
		code, b, err := tryPost(gw.URL+"/v3/"+keyAlice, blockNumberCall)
		switch {
		case err == nil && code == 200:
			admitted.Add(1)
		case err == nil && code == 429:
		default:
			t.Fatalf("alice: %d %s %v", code, b, err)
		}
	}
	// One call each first, so each replica has leased (and Redis has the script)
	// before the connection is choked.
	for _, gw := range gws {
		alice(gw)
	}
	px.Bandwidth(50)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var next atomic.Int64
	// A paced load (4 x 10 calls/s): enough to keep the cache's connection choked, light
	// enough that a loaded machine still answers the limiter's leases in time.
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			url := gws[w%2].URL + "/v3/" + keyBob
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				n := 1000 + next.Add(1) // fresh deep blocks: every answer is written to Redis
				call := fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"eth_getBlockByNumber","params":["0x%x",false]}`, n)
				if code, b, err := tryPost(url, call); err != nil || code != 200 {
					t.Errorf("bob, block %d: %d %.200s %v", n, code, b, err)
					return
				}
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	opened := func(gw *testGateway) float64 {
		var sum float64
		for _, l := range strings.Split(grepLines(scrape(t, gw), "gateway_redis_breaker_opened_total{"), "\n") {
			if f := strings.Fields(l); len(f) == 2 {
				v, _ := strconv.ParseFloat(f[1], 64)
				sum += v
			}
		}
		return sum
	}
	for _, gw := range gws {
		waitFor(t, "a circuit breaker opened under the cache's load", func() bool { return opened(gw) >= 1 })
	}
	// alice, spread over both replicas and a few seconds of cache trouble.
	for i := range 80 {
		alice(gws[i%2])
		time.Sleep(25 * time.Millisecond) // pacing the offered load, not synchronisation
	}
	var m bytes.Buffer
	for _, gw := range gws {
		m.WriteString(grepLines(scrape(t, gw), "gateway_redis_") + "\n" + grepLines(scrape(t, gw), "gateway_limit_fallback_total") + "\n")
	}
	t.Logf("alice: %d of 82 admitted; burst %d\n%s", admitted.Load(), burst, m.String())
	// The limiter's bound: burst + replicas x one lease of credit.
	if got := admitted.Load(); got > burst+2 || got < burst-2 {
		t.Fatalf("the cluster admitted %d of alice's calls while the cache was in trouble, want %d ± 2", got, burst)
	}
	// The limiter's own breaker never opened. (A lease that misses its deadline on a
	// loaded machine may still send a check or two to the per-process fallback: logged
	// above in gateway_limit_fallback_total, bounded by the count.)
	for _, gw := range gws {
		if n := gw.metric(t, `gateway_redis_breaker_opened_total{client="redis"}`); n != 0 {
			t.Errorf("the limiter's circuit breaker opened %v times because of the cache's trouble", n)
		}
	}
}

// TestSharedCacheOwnRedis: with -shared-cache-redis-addr the shared tier writes to its
// own Redis (a cache-only instance, run with allkeys-lru) and the limits stay on
// -redis-addr (an instance that never evicts them).
func TestSharedCacheOwnRedis(t *testing.T) {
	limits, cache := redistest.Start(t), redistest.Start(t)
	up := startFakeUpstream(t)
	up.head.Store(5000)
	gw := startReplicas(t, 1, up, limits.Addr, accessConfig("{requests_per_second: 10, burst: 10}"),
		"-shared-cache-redis-addr", cache.Addr, "-shared-cache-budget", "2s")[0] // sharedOpen says why
	waitFor(t, "the cache's connection", func() bool { return gw.metric(t, `gateway_redis_up{client="cache"}`) == 1 })
	waitFor(t, "the head", func() bool { return gw.srv.defaultNetwork().Heads.Number() >= 5000 })
	for n := 1; n <= 5; n++ {
		call := fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"eth_getBlockByNumber","params":["0x%x",false]}`, n)
		if code, b, err := tryPost(gw.URL+"/v3/"+keyBob, call); err != nil || code != 200 {
			t.Fatalf("block %d: %d %s %v", n, code, b, err)
		}
	}
	if code, b, err := tryPost(gw.URL+"/v3/"+keyAlice, blockNumberCall); err != nil || code != 200 {
		t.Fatalf("alice: %d %s %v", code, b, err)
	}
	waitFor(t, "the blocks stored", func() bool { return gw.metric(t, "gateway_sharedcache_sets_total") >= 5 })
	waitFor(t, "alice's limits leased", func() bool {
		_, keys := redisValueBytes(t, limits)
		return len(keys) > 0
	})
	_, lk := redisValueBytes(t, limits)
	_, ck := redisValueBytes(t, cache)
	for _, k := range lk {
		if strings.HasPrefix(k, "igw:cache:") {
			t.Errorf("a cache key in the limits' Redis: %s", k)
		}
	}
	values := 0
	for _, k := range ck {
		if !strings.HasPrefix(k, "igw:cache:") {
			t.Errorf("a key other than the cache's in the cache's Redis: %s", k)
		}
		if strings.Contains(k, ":v:") {
			values++
		}
	}
	if values < 5 {
		t.Fatalf("%d values in the cache's Redis, want 5 (keys %v)", values, ck)
	}
}
