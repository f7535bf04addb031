package gateway

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/infura-gateway/infura-gateway/gateway/config"
	"github.com/infura-gateway/infura-gateway/gateway/internal/heap"
	"github.com/infura-gateway/infura-gateway/gateway/internal/redistest"
)

// slash64 is the i-th /64 of the /44 2001:db8:a0::/44, spread over its sixteen /48s
// (i%16 picks the /48), one address in it.
func slash64(i int) net.IP {
	a := netip.MustParseAddr("2001:db8:a0::").As16()
	v := uint32(i%16)<<16 | uint32(i/16)&0xffff // the 20 bits after the /44
	a[5] |= byte(v >> 16)
	a[6], a[7] = byte(v>>8), byte(v)
	a[15] = 7
	return net.IP(a[:])
}

// anonServer is a gateway on the fake upstream with the given anonymous section.
func anonServer(t testing.TB, anonymous, plan string) (*Server, *directCall) {
	t.Helper()
	path := writeFile(t, t.TempDir(), "anon.yaml", "anonymous: "+anonymous+"\nplans:\n  anon: "+plan+"\n")
	s := newDirectServer(t, "-cache=false", "-config", path)
	return s, newDirectCall(s, "POST", "/", `{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}`)
}

// from sends c's call from ip and returns the status code.
func (c *directCall) from(ip net.IP) int {
	c.ctx.SetRemoteAddr(&net.TCPAddr{IP: ip, Port: 1})
	c.ctx.Response.Reset()
	c.h(&c.ctx)
	return c.ctx.Response.StatusCode()
}

// TestIPv6Spread: one client holding a /44 sends from 100,000 distinct /64s on an
// anonymous plan of 2/s, burst 4. Each /64 alone is within its allowance; the default
// aggregate per /48 (16 times the plan) must refuse most of them, and memory must stay
// bounded.
func TestIPv6Spread(t *testing.T) {
	s, c := anonServer(t, "{plan: anon}", "{requests_per_second: 2, burst: 4}")
	gw := &testGateway{srv: s}
	before := heap.AfterGC()
	const n = 100000
	start := time.Now()
	answered, refused, maxEntries := 0, 0, 0
	var refusal string
	for i := range n {
		// Anything but 429 passed the limits (the fake may time out under the load).
		if c.from(slash64(i)) == 429 {
			refused++
			refusal = string(c.ctx.Response.Body())
		} else {
			answered++
		}
		if i%1000 == 0 {
			maxEntries = max(maxEntries, int(gw.metric(t, "gateway_anonymous_table_entries")))
		}
	}
	el := time.Since(start)
	grown := int64(heap.AfterGC()) - int64(before)
	t.Logf("%d answered, %d refused in %v; heap grew %d KiB; table at most %d entries", answered, refused, el, grown>>10, maxEntries)
	// Sixteen /48s, each 32/s with a burst of 64 (and one request per new /64 it admits).
	if bound := 16 * (64 + 32*(el.Seconds()+1)); float64(answered) > bound {
		t.Fatalf("%d of %d requests from one /44 answered, want at most %.0f: the /48 aggregate did not refuse", answered, n, bound)
	}
	if !strings.Contains(refusal, "anon per /48 exceeded") {
		t.Fatalf("refusal %s, want the /48 aggregate named", refusal)
	}
	// Refused /64s take no entry: the table holds what was admitted, and the heap is bounded.
	if maxEntries > answered+32 || grown > 16<<20 {
		t.Fatalf("table %d entries, heap +%d KiB for %d admitted", maxEntries, grown>>10, answered)
	}
	if got := gw.metric(t, "gateway_anonymous_aggregate_refused_total"); got == 0 {
		t.Fatal("gateway_anonymous_aggregate_refused_total is 0")
	}
}

// TestAnonymousTableBounded: without aggregates, 100,000 distinct /64s fill a table of
// 5,000 and no more; later clients share the overflow allowance until entries are at
// rest, which are then evicted to make room. The heap grows by the table's bound at most.
func TestAnonymousTableBounded(t *testing.T) {
	const capacity = 5000
	s, c := anonServer(t, "{plan: anon, max_clients: 5000, per_48: {}}", "{requests_per_second: 50, burst: 4}")
	gw := &testGateway{srv: s}
	before := heap.AfterGC()
	maxEntries := 0
	for i := range 100000 {
		if code := c.from(slash64(i)); code != 200 && code != 429 && code != 504 {
			t.Fatalf("request %d: %d %s", i, code, c.ctx.Response.Body())
		}
		if i%500 == 0 {
			maxEntries = max(maxEntries, int(gw.metric(t, "gateway_anonymous_table_entries")))
		}
	}
	grown := int64(heap.AfterGC()) - int64(before)
	// The table's own estimate of its bytes, full: what max_bytes is compared with.
	bound := int64(gw.metric(t, "gateway_anonymous_table_bytes")) + 8<<20
	t.Logf("table at most %d entries; heap grew %d KiB (bound %d KiB); overflow %v, evicted %v", maxEntries, grown>>10, bound>>10,
		gw.metric(t, "gateway_anonymous_overflow_total"), gw.metric(t, `gateway_anonymous_evictions_total{reason="room"}`))
	if maxEntries > capacity || gw.metric(t, "gateway_anonymous_table_entries") > capacity {
		t.Fatalf("table of %d entries, cap %d", maxEntries, capacity)
	}
	if grown > bound {
		t.Fatalf("heap grew %d KiB, bound %d KiB", grown>>10, bound>>10)
	}
	if gw.metric(t, "gateway_anonymous_overflow_total") == 0 {
		t.Fatal("a full table sent nobody to the overflow")
	}
	// Entries at rest (their bucket full again: 4 at 50/s, plus the margin) make room.
	i := 100000
	waitFor(t, "an entry at rest evicted to make room", func() bool {
		c.from(slash64(i))
		i++
		return gw.metric(t, `gateway_anonymous_evictions_total{reason="room"}`) > 0
	})
	if got := gw.metric(t, "gateway_anonymous_table_entries"); got > capacity {
		t.Fatalf("gateway_anonymous_table_entries %v", got)
	}
}

// TestAnonymousEvictionKeepsHeavyHitter: a client over its limit keeps calling while a
// flood of new addresses presses on a small table: its entry is never the one evicted,
// so it never gets a fresh burst.
func TestAnonymousEvictionKeepsHeavyHitter(t *testing.T) {
	s, c := anonServer(t, "{plan: anon, max_clients: 50}", "{requests_per_second: 2, burst: 4}")
	gw := &testGateway{srv: s}
	heavy := net.ParseIP("198.51.100.1")
	start := time.Now()
	admitted, round := 0, 0
	// Rounds until the flood's entries come to rest and 100 of them were evicted for
	// room: the heavy hitter calls in every round, and is never one of them.
	waitFor(t, "100 evictions for room", func() bool {
		for range 10 {
			if c.from(heavy) != 429 {
				admitted++
			}
		}
		for j := range 100 {
			c.from(net.IPv4(203, byte(round>>8), byte(round), byte(j)))
		}
		round++
		if n := gw.metric(t, "gateway_anonymous_table_entries"); n > 50 {
			t.Fatalf("table of %v entries, cap 50", n)
		}
		return gw.metric(t, `gateway_anonymous_evictions_total{reason="room"}`) >= 100
	})
	// Burst 4, then 2/s while the rounds run.
	if bound := 4 + 2*(time.Since(start).Seconds()+1); float64(admitted) > bound {
		t.Fatalf("the heavy hitter got %d calls through, want at most %.0f: its allowance was reset", admitted, bound)
	}
}

func TestAnonymousConfigErrors(t *testing.T) {
	for _, tc := range []struct{ anon, want string }{
		{"{plan: anon, max_clients: -1}", "max_clients"},
		{"{plan: anon, max_bytes: -5}", "max_bytes"},
		{"{plan: anon, per_48: {requests_per_second: -1}}", "per_48"},
		{"{plan: anon, per_32: {burst: -1}}", "per_32"},
		{"{plan: anon, per_64: {}}", "unknown field"},
	} {
		path := writeFile(t, t.TempDir(), "anon.yaml", "anonymous: "+tc.anon+"\nplans:\n  anon: {}\n")
		_, err := config.Load([]string{"-upstream-http", "http://127.0.0.1:1", "-config", path}, func(string) string { return "" }, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %s", tc.anon, err, tc.want)
		}
	}
}

// TestAnonymousRedisKeysExpire: with Redis, every key an anonymous client leaves there
// has a TTL (a bucket's: the time to refill plus a minute; a daily quota's: two days),
// and only admitted clients leave any: refused fresh /64s create no key.
func TestAnonymousRedisKeysExpire(t *testing.T) {
	rs := redistest.Start(t)
	path := writeFile(t, t.TempDir(), "anon.yaml", "anonymous: {plan: anon}\nplans:\n  anon: {requests_per_second: 2, burst: 4, daily_units: 10000000}\n")
	s := newDirectServer(t, "-cache=false", "-config", path, "-redis-addr", rs.Addr)
	c := newDirectCall(s, "POST", "/", `{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}`)
	admitted := 0
	for i := range 2000 {
		if c.from(slash64(i)) != 429 {
			admitted++
		}
		if c.from(net.IPv4(203, 0, byte(i>>8), byte(i))) != 429 {
			admitted++
		}
	}
	do := func(args ...string) rueidis.RedisResult {
		return s.redis.Do(context.Background(), s.redis.B().Arbitrary(args...).Build())
	}
	var keys []string
	waitFor(t, "the leases of the admitted clients in Redis", func() bool {
		keys, _ = do("KEYS", "igw:limit:*").AsStrSlice()
		return len(keys) >= admitted
	})
	maxTTL := map[string]int64{"b": 0, "q": 0}
	for _, k := range keys {
		ttl, err := do("PTTL", k).AsInt64()
		if err != nil || ttl < 0 {
			t.Fatalf("%s: PTTL %d %v: a key without a TTL", k, ttl, err)
		}
		kind := strings.TrimPrefix(k, "igw:limit:")[:1]
		maxTTL[kind] = max(maxTTL[kind], ttl)
	}
	t.Logf("%d calls admitted of 4000 from 2000 IPv4 addresses and 2000 /64s of a /44; %d keys in Redis; longest TTL: bucket %v, quota %v",
		admitted, len(keys), time.Duration(maxTTL["b"])*time.Millisecond, time.Duration(maxTTL["q"])*time.Millisecond)
	// Per admitted client at most a bucket and a quota; the /48 aggregates add theirs.
	if len(keys) > 2*admitted+2*16 {
		t.Fatalf("%d keys for %d admitted clients", len(keys), admitted)
	}
	if maxTTL["b"] > (2*time.Second+time.Minute+5*time.Second).Milliseconds() || maxTTL["q"] > (48*time.Hour).Milliseconds() {
		t.Fatalf("TTLs longer than a bucket's refill plus a minute, or two days: %v", maxTTL)
	}
}

// TestAnonymousWebsocketHoldsItsEntry: a websocket client pins its anonymous entry for
// as long as it is open (it keeps spending from it; a new entry would be a second
// allowance).
func TestAnonymousWebsocketHoldsItsEntry(t *testing.T) {
	_, gw, _ := startKeyed(t, "plans:\n  anon: {requests_per_second: 100, burst: 100}\nanonymous: {plan: anon}\n")
	c := dialWS(t, gw.WSURL, nil)
	if a := decodeAnswer(t, c.call(blockNumberCall)); a.Error != nil {
		t.Fatalf("a call on the socket: %+v", a.Error)
	}
	addr := netip.MustParseAddr("127.0.0.1")
	waitFor(t, "the socket to hold its entry", func() bool { return gw.srv.acc.AnonymousHolders(addr) == 1 })
	c.conn.Close()
	waitFor(t, "the closed socket to let go of its entry", func() bool { return gw.srv.acc.AnonymousHolders(addr) == 0 })
}
