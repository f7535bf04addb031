//go:build !race

// The race detector makes sync.Pool drop items at random, so allocation counts are only
// meaningful without it; `./task test` runs this file in a separate non-race pass.

package gateway

import "testing"

// TestHotPathAllocatesNothing guards the 0 allocs/op claim: a regression fails here,
// not in a benchmark nobody reads.
func TestHotPathAllocatesNothing(t *testing.T) {
	s := newDirectServer(t, "-cache=false")
	for _, p := range hotPaths {
		c := newDirectCall(s, p.method, p.uri, p.body)
		for range 100 { // warm pools and connections
			c.run(t)
		}
		if n := testing.AllocsPerRun(1000, func() { c.run(t) }); n != 0 {
			t.Errorf("%s: %v allocations per request, want 0", p.name, n)
		}
	}
}

// TestCacheHitAllocatesNothing: a cache hit is served from stored bytes (REST: no copy;
// JSON-RPC: the caller's id spliced into the response buffer).
func TestCacheHitAllocatesNothing(t *testing.T) {
	s := newDirectServer(t, "-cache=true", "-cache-max-age", "1h")
	for _, p := range hotPaths {
		c := newDirectCall(s, p.method, p.uri, p.body)
		for range 100 {
			c.run(t)
		}
		if got := string(c.ctx.Response.Header.Peek("X-Cache")); got != "HIT" {
			t.Fatalf("%s: X-Cache %q after warm-up, want HIT", p.name, got)
		}
		if n := testing.AllocsPerRun(1000, func() { c.run(t) }); n != 0 {
			t.Errorf("%s: %v allocations per cache hit, want 0", p.name, n)
		}
	}
}
