package failover_test

import (
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/internal/loadgen"
	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
	"github.com/infura-gateway/infura-gateway/gateway/internal/toxiproxy"
)

// A truly lagging node (the same chain, stopped at an older head) beside one that
// keeps mining. Under mixed reads, the lagging node serves only blocks it has: a call
// for a block above its head never reaches it (a client would get null: loadgen
// counts null-block answers), and the latest block and eth_blockNumber never go
// backwards. When the leader goes away, eth_blockNumber stays at the served head
// although the only node left is behind it, and follows the leader again once it is
// back.
func TestLaggingUpstream(t *testing.T) {
	leaderNode, laggingNode := testnode.StartLagging(t)
	tox := toxiproxy.Start(t)
	leader := newChain(t, tox, "leader", "primary", leaderNode)
	lagger := newChain(t, tox, "lagger", "primary", laggingNode)
	// max_lag 2: the lagging node counts as lagging two blocks after the clone.
	g := startGateway(t, []*chain{leader, lagger}, "", "-cache=false", "-max-lag", "2")
	laggerHead := laggingNode.BlockNumber(t)
	// Calls at latest may go to either node while both are at the same head, and to
	// whichever reported its head first while the gateway starts: the load begins once
	// the gateway serves a head the lagging node does not have.
	waitFor(t, "a served head above the lagging node's", 60*time.Second, func() bool { return g.status(t).ServedHead > laggerHead })

	load := loadgen.Start(t, loadgen.Config{URL: g.URL + "/", Workers: 6, Rate: 120, Timeout: 30 * time.Second, ChainID: "0x539",
		// Old blocks often: drawn from all blocks below the highest head seen, many of
		// them above the lagging node's head.
		Mix: loadgen.Mix{BlockNumber: 3, LatestBlock: 2, OldBlock: 4, Balance: 1, ChainID: 1, Call: 1}})
	waitFor(t, "the lagging node marked lagging", 60*time.Second, func() bool { return g.upstream(t, "lagger").State == "lagging" })
	// Until the leader is well above the lagging node, and reads of blocks on both
	// sides of its head have been made.
	leaderNode.WaitBlock(t, laggerHead+6)
	load.WaitRequests(t, 600, 60*time.Second)
	r := load.Stop()
	for _, u := range g.status(t).Upstreams {
		t.Logf("%s: %s head %d latency %.2fms p90 %.0fms in flight %d", u.Name, u.State, u.Head, u.LatencyMS, u.LatencyP90, u.InFlight)
	}
	t.Logf("lagging node at %d, leader at %d\n%s", laggerHead, leaderNode.BlockNumber(t), r)
	if err := r.Check(); err != nil {
		t.Errorf("clients saw: %v", err)
	}
	if n := r.ErrorsByKind()[loadgen.KindNullBlock]; n > 0 {
		t.Errorf("%d reads of existing blocks were answered null: sent to the lagging node", n)
	}
	if g := r.Regressions(loadgen.SourceAny); len(g) > 0 {
		t.Errorf("the head went backwards %d times, first: %s", len(g), g[0])
	}
	_, hi := r.HeadRange(loadgen.SourceAny)
	if hi <= laggerHead+3 {
		t.Fatalf("the clients saw heads up to %d only, the lagging node is at %d: no read above its head", hi, laggerHead)
	}
	// The lagging node served reads (the old blocks it has) and nothing that needs the
	// head: calls with no block (eth_chainId) or at latest (eth_getBalance, eth_call)
	// went to the leader. (eth_getBlockByNumber includes the router's one read of its
	// head at start, eth_blockNumber its probes.)
	byMethod := map[string]int{}
	for _, c := range lagger.Spy.Calls() {
		byMethod[c.Transport+" "+c.Method]++
	}
	if byMethod["http eth_getBlockByNumber"] < 10 || byMethod["http eth_chainId"]+byMethod["http eth_getBalance"]+byMethod["http eth_call"] > 0 {
		t.Errorf("the lagging node's calls: %v; want reads of old blocks only", byMethod)
	}
	t.Logf("lagging node's calls: %v", byMethod)

	// The leader goes away: the lagging node is all there is. eth_blockNumber stays at
	// the head already served rather than going back to the lagging node's.
	served := g.status(t).ServedHead
	heads := loadgen.Start(t, loadgen.Config{URL: g.URL + "/", Workers: 4, Rate: 80, Timeout: 30 * time.Second, ChainID: "0x539",
		Mix: loadgen.Mix{BlockNumber: 4, ChainID: 1, Balance: 1}, Seed: 3})
	heads.WaitRequests(t, 50, 30*time.Second)
	leader.Tox.Down()
	waitFor(t, "the leader banned", 10*time.Second, func() bool { return g.upstream(t, "leader").State == "banned" })
	downAt := time.Now()
	heads.WaitRequests(t, 200, 60*time.Second)
	laggerOnly := time.Now()
	leader.Tox.Up()
	waitFor(t, "the leader readmitted", 3*banMax+5*time.Second, func() bool { return g.upstream(t, "leader").State == "healthy" })
	waitFor(t, "the served head moving on", 30*time.Second, func() bool { return g.status(t).ServedHead > served+1 })
	heads.WaitRequests(t, 100, 60*time.Second)
	hr := heads.Stop()
	t.Logf("leader away for %v, then back\n%s", laggerOnly.Sub(downAt).Round(time.Millisecond), hr)
	if err := hr.Check(); err != nil {
		t.Errorf("clients saw: %v", err)
	}
	var whileAway []uint64
	for _, h := range hr.Heads {
		if h.Sent.After(downAt) && h.Received.Before(laggerOnly) {
			whileAway = append(whileAway, h.Number)
			if h.Number < served {
				t.Errorf("eth_blockNumber %d while the leader was away: below the served head %d", h.Number, served)
				break
			}
		}
	}
	if len(whileAway) == 0 {
		t.Fatal("no eth_blockNumber answered while only the lagging node was left")
	}
	if lo, hi := hr.HeadRange(loadgen.SourceBlockNumber); hi <= served {
		t.Errorf("eth_blockNumber stayed in %d..%d after the leader came back (served head was %d)", lo, hi, served)
	}
	alone := 0
	for _, c := range lagger.Spy.CallsSince(downAt) {
		if c.Method == "eth_blockNumber" && c.At.Before(laggerOnly) {
			alone++
		}
	}
	if alone < len(whileAway)/2 {
		t.Errorf("the lagging node got %d eth_blockNumber calls while alone, the clients %d answers", alone, len(whileAway))
	}
}
