package filters

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/infura-gateway/infura-gateway/gateway/internal/redistest"
	"github.com/infura-gateway/infura-gateway/gateway/redisconn"
)

// withRedis puts a test's filters in a real redis-server of its own.
func withRedis(t *testing.T, c Config) Config {
	t.Helper()
	srv := redistest.Start(t)
	conn, err := redisconn.New(redisconn.Config{Addr: srv.Addr, CallTimeout: time.Second}, metrics.NewSet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	deadline := time.Now().Add(30 * time.Second)
	for !conn.Up() {
		if time.Now().After(deadline) {
			t.Fatal("Redis not up")
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.Redis = conn
	return c
}

// TestRedisFilterExpires: in Redis a filter left unpolled for the timeout (here a
// short one) is gone, and its key with it.
func TestRedisFilterExpires(t *testing.T) {
	chain := newFakeChain()
	cfg := testConfig(nil)
	cfg.Now, cfg.Timeout = time.Now, 300*time.Millisecond
	cfg = withRedis(t, cfg)
	s := New(cfg)
	id := newFilter(t, s, chain, "")
	deadline := time.Now().Add(30 * time.Second)
	for {
		a := call(t, s, chain, "", "eth_getFilterLogs", id) // reads, does not restart the timeout
		if a.Error != nil && a.Error.Message == "filter not found" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the filter did not expire")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// After the timeout the network's count is back to zero: a filter can be made
	// even with a bound of one.
	s.cfg.MaxTotal, s.cfg.MaxPerTenant = 1, 1
	s.store.(*redisStore).cfg = s.cfg
	s.store.(*redisStore).cfg.Timeout = time.Minute
	newFilter(t, s, chain, "")
}

// TestRedisConcurrentPolls: polls of one filter racing on two replicas deliver every
// log exactly once between them.
func TestRedisConcurrentPolls(t *testing.T) {
	chain := newFakeChain()
	cfg := withRedis(t, testConfig(nil))
	cfg.Now = time.Now
	a, b := New(cfg), New(cfg)
	id := newFilter(t, a, chain, "")
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for r, s := range []*Service{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				if r == 0 {
					chain.add(fmt.Sprintf("0x%x", i+1))
				}
				ans, err := tryCall(s, chain, "", "eth_getFilterChanges", id)
				if err != nil {
					// A poll that met another poll's compare-and-set is refused whole
					// (the client retries); it delivered nothing.
					if strings.Contains(err.Error(), "concurrently") {
						continue
					}
					t.Errorf("poll: %v", err)
					return
				}
				if ans.Error != nil {
					if ans.Error.Code == -32000 && strings.Contains(ans.Error.Message, "concurrently") {
						continue
					}
					t.Errorf("poll: %+v", ans.Error)
					return
				}
				var logs []polledLog
				_ = json.Unmarshal(ans.Result, &logs)
				mu.Lock()
				for _, l := range logs {
					seen[l.Data+"@"+l.BlockNumber]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	rest := pollLogs(t, a, chain, "", id)
	for _, l := range rest {
		seen[l.Data+"@"+l.BlockNumber]++
	}
	if len(seen) != 10 {
		t.Fatalf("%d distinct logs delivered, want 10: %v", len(seen), seen)
	}
	for k, n := range seen {
		if n != 1 {
			t.Fatalf("log %s delivered %d times", k, n)
		}
	}
}
