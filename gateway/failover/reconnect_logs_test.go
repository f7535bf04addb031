package failover_test

import (
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/internal/subrec"
	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
	"github.com/infura-gateway/infura-gateway/gateway/internal/toxiproxy"
)

// One upstream, whose websocket route goes down for a while (refused, its sockets
// closed) while a contract emits a log every 200 ms: the logs subscription has nowhere
// to move, and is sent again on the socket that comes back, keeping its id. The logs of
// the blocks made while it was away must still reach the client, each once, in order,
// as they do after a move. Before: heads were backfilled, logs were not (about 25 logs
// a block lost for every block of the outage).
func TestLogsThroughAReconnectWithoutGap(t *testing.T) {
	node := testnode.Start(t)
	emitter := node.DeployEmitter(t)
	tox := toxiproxy.Start(t)
	c := newChain(t, tox, "a", "primary", node)
	g := startGateway(t, []*chain{c}, "")

	rec := subrec.Dial(t, g.WSURL)
	logs := rec.Logs(t, subrec.Filter{Address: emitter, Topics: [][]string{{testnode.EmitterTopic}}})
	from := node.BlockNumber(t) + 1
	em := node.StartEmitter(t, emitter, 200*time.Millisecond, 1)
	logs.WaitLogBlock(t, from+2, time.Minute)

	resubscribed := func() float64 { return g.metrics(t)[`gateway_upstream_ws_resubscribes_total{upstream="a"}`] }
	before := resubscribed()
	c.Tox.WS.Down()
	downAt := node.BlockNumber(t)
	// Blocks, and their logs, the subscription is away for.
	waitFor(t, "three blocks made with the websocket down", time.Minute, func() bool { return node.BlockNumber(t) >= downAt+3 })
	c.Tox.WS.Up()
	waitFor(t, "the subscription sent again", time.Minute, func() bool { return resubscribed() > before })
	logs.WaitLogBlock(t, node.BlockNumber(t)+1, time.Minute)

	res := em.Stop()
	if len(res.Errors) > 0 || res.Sent == 0 {
		t.Fatalf("emitter: %d sent, errors %v", res.Sent, res.Errors)
	}
	logs.WaitLogBlock(t, res.LastBlock, time.Minute)
	if err := logs.WaitLogs(node.HTTPURL, from, res.LastBlock, time.Minute); err != nil {
		t.Error(err)
	}
	m := g.metrics(t)
	t.Logf("%d logs (%d emitted) in blocks %d..%d, websocket down from block %d; %v backfilled, %v gap blocks", len(logs.Logs()),
		res.Sent, from, res.LastBlock, downAt, m["gateway_subscriptions_backfilled_total"], m["gateway_subscriptions_gap_blocks_total"])
}
