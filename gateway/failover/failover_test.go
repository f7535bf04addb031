package failover_test

import (
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/internal/loadgen"
	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
	"github.com/infura-gateway/infura-gateway/gateway/internal/toxiproxy"
)

// fault is one way of taking a primary away, and of giving it back.
type fault struct {
	name   string
	inject func(c *chain)
	heal   func(c *chain)
	// banWithin is the bound asserted on the time from the fault to the ban; the
	// measured figure is logged. Each is a few times what the settings explain.
	banWithin time.Duration
}

var faults = []fault{
	// Nothing listens: calls fail at once, three in a row ban it.
	{"down", func(c *chain) { c.Tox.Down() }, func(c *chain) { c.Tox.Up() }, 5 * time.Second},
	// Every connection is reset: the same, after a round trip.
	{"reset", func(c *chain) { c.Tox.ResetPeer(0) }, func(c *chain) { c.Tox.Clear() }, 5 * time.Second},
	// Connections accepted, nothing answered: calls fail at the upstream timeout.
	{"blackhole", func(c *chain) { c.Tox.Timeout(0) }, func(c *chain) { c.Tox.Clear() }, 3 * upstreamTimeout},
	// Every answer 2 s late: banned as slow once its p90 over the window is 2 s.
	{"slow", func(c *chain) { c.Tox.Latency(2000, 0) }, func(c *chain) { c.Tox.Clear() }, 3 * healthWindow},
}

// Under a steady load of mixed reads, a primary is taken away four ways and given back.
// Clients see no error and a head that never goes backwards; the broken primary is
// banned within a bound and readmitted once it recovers; the fallback gets no client
// request, since the other primary stays healthy throughout.
func TestPrimaryTakenAwayUnderLoad(t *testing.T) {
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) { testFault(t, f) })
	}
}

func testFault(t *testing.T, f fault) {
	node := testnode.Start(t)
	tox := toxiproxy.Start(t)
	a := newChain(t, tox, "a", "primary", node)
	b := newChain(t, tox, "b", "primary", node)
	c := newChain(t, tox, "c", "fallback", node)
	// archive_depth 4: most old-block reads are deeper than that below the head (none
	// of the upstreams is an archive node: blocks are served by any node).
	g := startGateway(t, []*chain{a, b, c}, "routing:\n  archive_depth: 4\n", "-cache=false")
	start := time.Now()

	// Clients over both transports: POST / (the router over HTTP) and /socket2socket
	// (the router over the upstreams' shared websockets).
	overHTTP := loadgen.Start(t, loadgen.Config{URL: g.URL + "/", Workers: 6, Rate: 120, Timeout: 30 * time.Second, ChainID: "0x539"})
	overWS := loadgen.Start(t, loadgen.Config{URL: g.WSURL, Workers: 3, Rate: 60, Timeout: 30 * time.Second, ChainID: "0x539", Seed: 2})
	overHTTP.WaitRequests(t, 100, 30*time.Second)
	waitFor(t, "both primaries serving clients", 30*time.Second, func() bool {
		ca, _ := clientCalls(a.Spy.Calls())
		cb, _ := clientCalls(b.Spy.Calls())
		return len(ca) > 20 && len(cb) > 20
	})

	faultAt := time.Now() // before the call: the fault may act before it returns
	f.inject(a)
	waitFor(t, "a banned", f.banWithin, func() bool { return g.upstream(t, "a").State == "banned" })
	banned := time.Since(faultAt)
	st := g.upstream(t, "a")
	overHTTP.WaitRequests(t, 200, 60*time.Second) // served by b alone
	overWS.WaitRequests(t, 100, 60*time.Second)
	if got := g.upstream(t, "a").State; got != "banned" {
		t.Errorf("a is %s while still broken", got)
	}

	f.heal(a)
	healedAt := time.Now() // after the call: the fault is gone once it returns
	waitFor(t, "a readmitted", 3*banMax+5*time.Second, func() bool { return g.upstream(t, "a").State == "healthy" })
	readmitted := time.Since(healedAt)
	waitFor(t, "a serving clients again", 30*time.Second, func() bool {
		calls, _ := clientCalls(a.Spy.CallsSince(healedAt))
		return len(calls) > 20
	})
	bans := g.metrics(t)[`gateway_upstream_bans{upstream="a"}`]
	for _, l := range []*loadgen.Load{overHTTP, overWS} {
		r := l.Stop()
		t.Logf("%s", r)
		if err := r.Check(); err != nil {
			t.Errorf("clients saw: %v", err)
		}
		if g := r.Regressions(loadgen.SourceAny); len(g) > 0 {
			t.Errorf("the head went backwards across eth_blockNumber and the latest block %d times, first: %s", len(g), g[0])
		}
	}
	t.Logf("%s: a banned %v after the fault (%s; last error %q), readmitted %v after it healed; %v bans in all",
		f.name, banned.Round(time.Millisecond), st.Reason, st.LastError, readmitted.Round(time.Millisecond), bans)

	client, upkeep := clientCalls(c.Spy.Calls())
	if len(client) > 0 {
		t.Errorf("the fallback got %d client calls while b was healthy (%s)", len(client), rpcspyMethods(client))
	}
	checkUpkeep(t, "c", upkeep, upstreamSockets, g.upstream(t, "c").Bans)
	t.Logf("fallback c: no client call; %d upkeep calls (%s) in %v", len(upkeep), rpcspyMethods(upkeep),
		time.Since(start).Round(time.Millisecond))
}
