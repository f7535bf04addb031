package failover_test

import (
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/internal/subrec"
	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
	"github.com/infura-gateway/infura-gateway/gateway/internal/toxiproxy"
)

// A newHeads and a logs subscriber on /socket2socket, while a contract emits logs in
// most blocks, through two forced moves: the upstreams carrying the subscriptions go
// down, then the one they moved to is blackholed. The subscribers keep their
// subscription ids and their socket; every block number arrives exactly once and in
// order, each the node's own block; the logs are exactly the node's eth_getLogs over
// the whole range, without gaps or duplicates.
func TestSubscriptionsMoveWithoutGap(t *testing.T) {
	node := testnode.Start(t)
	emitter := node.DeployEmitter(t)
	tox := toxiproxy.Start(t)
	chains := []*chain{newChain(t, tox, "a", "primary", node), newChain(t, tox, "b", "primary", node),
		newChain(t, tox, "c", "primary", node)}
	// max_lag 2: a carrier whose heads stop (blackholed) is lagging two blocks later.
	g := startGateway(t, chains, "", "-max-lag", "2")

	rec := subrec.Dial(t, g.WSURL)
	heads := rec.NewHeads(t)
	logs := rec.Logs(t, subrec.Filter{Address: emitter, Topics: [][]string{{testnode.EmitterTopic}}})
	from := node.BlockNumber(t) + 1 // the first block produced after both were confirmed
	em := node.StartEmitter(t, emitter, 300*time.Millisecond, 1)
	heads.WaitHead(t, from+2, time.Minute)

	// carriers returns the upstreams carrying the subscriptions, by /status.
	carriers := func() []*chain {
		var out []*chain
		for _, u := range g.status(t).Upstreams {
			if u.Subscriptions > 0 {
				for _, c := range chains {
					if c.Name == u.Name {
						out = append(out, c)
					}
				}
			}
		}
		return out
	}
	carrying := func(c *chain) int { return g.upstream(t, c.Name).Subscriptions }
	moved := func() float64 { return g.metrics(t)["gateway_subscriptions_moved_total"] }

	// Move 1: every carrier goes down (the two groups may sit on two upstreams).
	first := carriers()
	if len(first) == 0 || len(first) > 2 {
		t.Fatalf("%d upstreams carry the subscriptions", len(first))
	}
	downAt := time.Now()
	for _, c := range first {
		c.Tox.Down()
	}
	var rest *chain
	waitFor(t, "the subscriptions moved off the upstreams gone down", 30*time.Second, func() bool {
		for _, c := range chains {
			if carrying(c) == 2 && !contains(first, c) {
				rest = c
				return true
			}
		}
		return false
	})
	t.Logf("move 1: %v down, both subscriptions on %s after %v", names(first), rest.Name, time.Since(downAt).Round(time.Millisecond))
	heads.WaitHead(t, node.BlockNumber(t)+2, time.Minute)
	for _, c := range first {
		c.Tox.Up()
	}
	waitFor(t, "the upstreams back", 3*banMax+5*time.Second, func() bool {
		for _, c := range first {
			if u := g.upstream(t, c.Name); u.State != "healthy" || u.WS == nil || !*u.WS {
				return false
			}
		}
		return true
	})

	// Move 2: the carrier is blackholed: its socket stays open, nothing comes through.
	movesBefore := moved()
	holeAt := time.Now()
	rest.Tox.Timeout(0)
	waitFor(t, "the subscriptions moved off the blackholed upstream", 30*time.Second, func() bool {
		return carrying(rest) == 0 && moved() >= movesBefore+2
	})
	t.Logf("move 2: %s blackholed, subscriptions moved after %v (it is %s)", rest.Name,
		time.Since(holeAt).Round(time.Millisecond), g.upstream(t, rest.Name).State)
	heads.WaitHead(t, node.BlockNumber(t)+2, time.Minute)

	res := em.Stop()
	if len(res.Errors) > 0 || res.Sent == 0 {
		t.Fatalf("emitter: %d sent, errors %v", res.Sent, res.Errors)
	}
	heads.WaitHead(t, res.LastBlock+1, time.Minute)
	logs.WaitLogBlock(t, res.LastBlock, time.Minute)
	rest.Tox.Clear()

	if err := heads.CheckHeadsOnChain(node.HTTPURL); err != nil {
		t.Error(err)
	}
	if err := logs.WaitLogs(node.HTTPURL, from, res.LastBlock, time.Minute); err != nil {
		t.Error(err)
	}
	if len(logs.Logs()) < res.Sent {
		t.Errorf("%d logs received, %d emitted", len(logs.Logs()), res.Sent)
	}
	m := g.metrics(t)
	hs := heads.Heads()
	t.Logf("%d heads %d..%d and %d logs (%d emitted) in blocks %d..%d on subscriptions %s and %s; %v moves, %v backfilled, %v gap blocks",
		len(hs), hs[0].Number, hs[len(hs)-1].Number, len(logs.Logs()), res.Sent, from, res.LastBlock, heads.ID, logs.ID,
		m["gateway_subscriptions_moved_total"], m["gateway_subscriptions_backfilled_total"], m["gateway_subscriptions_gap_blocks_total"])
	if m["gateway_subscriptions_gap_blocks_total"] > 0 {
		t.Errorf("%v blocks the gateway could not backfill", m["gateway_subscriptions_gap_blocks_total"])
	}
}

func contains(list []*chain, c *chain) bool {
	for _, x := range list {
		if x == c {
			return true
		}
	}
	return false
}

func names(list []*chain) []string {
	var out []string
	for _, c := range list {
		out = append(out, c.Name)
	}
	return out
}
