package failover_test

import (
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/internal/subrec"
	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
	"github.com/infura-gateway/infura-gateway/gateway/internal/toxiproxy"
)

// Only the websocket route of the upstream carrying a logs subscription is blackholed;
// its HTTP route keeps answering, so the head the gateway knows of it keeps moving
// while its subscription pushes nothing. The socket is found stalled and the
// subscription moves to the other upstream: the logs of the blocks between the last
// one the old subscription pushed and the old upstream's HTTP head at the move must
// still reach the client, each once, in order. Before: the move's backfill started two
// blocks below the old upstream's HTTP head, and the blocks before were never
// delivered (two blocks of logs lost per move, with a log every block).
func TestLogsMoveOffAStalledSocketWithoutGap(t *testing.T) {
	node := testnode.Start(t)
	emitter := node.DeployEmitter(t)
	tox := toxiproxy.Start(t)
	chains := []*chain{newChain(t, tox, "a", "primary", node), newChain(t, tox, "b", "primary", node)}
	g := startGateway(t, chains, "", "-upstream-timeout", "1s", "-ws-ping-interval", "5m", "-ws-pong-timeout", "5m")

	rec := subrec.Dial(t, g.WSURL)
	logs := rec.Logs(t, subrec.Filter{Address: emitter, Topics: [][]string{{testnode.EmitterTopic}}})
	from := node.BlockNumber(t) + 1
	em := node.StartEmitter(t, emitter, 200*time.Millisecond, 1)
	logs.WaitLogBlock(t, from+2, time.Minute)

	var carrier *chain
	waitFor(t, "an upstream carrying the subscription", 10*time.Second, func() bool {
		for _, c := range chains {
			if g.upstream(t, c.Name).Subscriptions > 0 {
				carrier = c
				return true
			}
		}
		return false
	})
	moved := func() float64 { return g.metrics(t)["gateway_subscriptions_moved_total"] }
	before := moved()
	carrier.Tox.WS.Timeout(0) // the websocket route blackholed; HTTP still answers
	took := waitFor(t, "the subscription moved off the stalled socket", time.Minute, func() bool {
		return g.upstream(t, carrier.Name).Subscriptions == 0 && moved() > before
	})
	t.Logf("%s's websocket blackholed: the subscription moved after %v", carrier.Name, took.Round(time.Millisecond))
	logs.WaitLogBlock(t, node.BlockNumber(t)+2, time.Minute)

	res := em.Stop()
	if len(res.Errors) > 0 || res.Sent == 0 {
		t.Fatalf("emitter: %d sent, errors %v", res.Sent, res.Errors)
	}
	logs.WaitLogBlock(t, res.LastBlock, time.Minute)
	carrier.Tox.WS.Clear()
	if err := logs.WaitLogs(node.HTTPURL, from, res.LastBlock, time.Minute); err != nil {
		t.Error(err)
	}
	m := g.metrics(t)
	t.Logf("%d logs (%d emitted) in blocks %d..%d; %v moves, %v backfilled, %v stalled sockets", len(logs.Logs()), res.Sent,
		from, res.LastBlock, m["gateway_subscriptions_moved_total"], m["gateway_subscriptions_backfilled_total"],
		m[`gateway_upstream_ws_stalled_total{upstream="`+carrier.Name+`"}`])
}
