package access

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/VictoriaMetrics/metrics"

	"github.com/infura-gateway/infura-gateway/gateway/config"
	"github.com/infura-gateway/infura-gateway/gateway/internal/heap"
	"github.com/infura-gateway/infura-gateway/gateway/limit"
	"github.com/infura-gateway/infura-gateway/upstream"
)

// newTestAccess is an Access on a per-process limiter with the given anonymous section
// and one plan, anon.
func newTestAccess(t testing.TB, anonymous, plan string) *Access {
	t.Helper()
	path := filepath.Join(t.TempDir(), "anon.yaml")
	if err := os.WriteFile(path, []byte("anonymous: "+anonymous+"\nplans:\n  anon: "+plan+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load([]string{"-upstream-http", "http://127.0.0.1:1", "-config", path}, func(string) string { return "" }, nil)
	if err != nil {
		t.Fatal(err)
	}
	lim, err := limit.New(limit.Config{}, nil, metrics.NewSet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lim.Close)
	a := New(upstream.NewRegistry(), lim)
	if err := a.Load(cfg.Keys); err != nil {
		t.Fatal(err)
	}
	return a
}

// TestAnonymousAtRest: what may be evicted and what not.
func TestAnonymousAtRest(t *testing.T) {
	a := newTestAccess(t, "{plan: anon, max_clients: 10}", "{requests_per_second: 1, burst: 2, max_connections: 2}")
	tab := &a.anon
	if _, perr := tab.get(netip.MustParseAddr("2001:db8:1:2::1")); perr != nil {
		t.Fatal(perr)
	}
	c64, _ := tab.get(netip.MustParseAddr("2001:db8:1:2::9"))
	g48 := c64.agg[0]
	if g48 == nil || c64.agg[1] != nil {
		t.Fatalf("aggregates %v, want /48 only (the default)", c64.agg)
	}
	now := tab.now()
	later := now + c64.rest
	for _, tc := range []struct {
		name string
		c    *Tenant
		at   int64
		want bool
		prep func()
		undo func()
	}{
		{"just used", c64, now, false, nil, nil},
		{"bucket full again", c64, later, true, nil, nil},
		{"held by a websocket", c64, later, false, c64.Hold, c64.Unhold},
		{"a connection open", c64, later, false, func() { c64.conns.Acquire() }, func() { c64.conns.Release() }},
		{"an aggregate with entries under it", g48, later + g48.rest, false, nil, nil},
	} {
		if tc.prep != nil {
			tc.prep()
		}
		tab.mu.Lock()
		got := tab.atRest(tc.c, tc.at)
		tab.mu.Unlock()
		if tc.undo != nil {
			tc.undo()
		}
		if got != tc.want {
			t.Errorf("%s: at rest %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestAnonymousEntryBytes: the estimate of an entry's size (which max_bytes divides)
// is at least what an entry takes on the heap, for a plan of one limit and of all five.
func TestAnonymousEntryBytes(t *testing.T) {
	for _, plan := range []string{
		"{requests_per_second: 2, burst: 4}",
		"{requests_per_second: 2, burst: 4, units_per_second: 50, daily_units: 100000, max_connections: 2, max_subscriptions: 5}",
	} {
		a := newTestAccess(t, "{plan: anon, max_clients: 100000, max_bytes: 1099511627776}", plan)
		tab := &a.anon
		const n = 20000
		before := heap.AfterGC()
		for i := range n {
			if c, _ := tab.get(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})); c == nil {
				t.Fatal("no entry")
			}
		}
		per := (int64(heap.AfterGC()) - int64(before)) / n
		t.Logf("%s: %d bytes per entry, estimated %d", plan, per, entryBytes(tab.plan))
		if per > entryBytes(tab.plan) {
			t.Errorf("%s: %d bytes per entry, more than the estimate of %d", plan, per, entryBytes(tab.plan))
		}
		if tab.len() != n {
			t.Fatalf("%d entries, want %d", tab.len(), n)
		}
	}
}

func TestAnonKey(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"203.0.113.7", "203.0.113.7"},
		{"::ffff:203.0.113.7", "203.0.113.7"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::"},
		{"2001:db8:1:2::", "2001:db8:1:2::"},
		{"::1", "::"},
	} {
		if got := anonKey(netip.MustParseAddr(tc.in)); got != netip.MustParseAddr(tc.want) {
			t.Errorf("anonKey(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
}
