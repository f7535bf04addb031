package failover_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/internal/subrec"
	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
	"github.com/infura-gateway/infura-gateway/gateway/internal/toxiproxy"
)

// An upstream socket that goes silent with its connection open (a load balancer that
// forgot it, a blackholed route) is found by the next call that times out on it: the
// gateway pings it, hears nothing back within -ws-probe-timeout, drops it and dials
// again, instead of holding it, and every subscription on it, until the keepalive
// gives up (ping interval + pong timeout: a minute by default, ten here so that only
// the probe can pass). One upstream, so the subscriber has nowhere else to go: once
// the route is back it keeps its id and gets every head once, in order.
func TestStalledSocketDroppedAfterATimeout(t *testing.T) {
	node := testnode.Start(t)
	tox := toxiproxy.Start(t)
	c := newChain(t, tox, "a", "primary", node)
	g := startGateway(t, []*chain{c}, "", "-ws-upstream-conns", "1", "-ws-probe-timeout", "1s",
		"-ws-ping-interval", "5m", "-ws-pong-timeout", "5m", "-ws-dial-timeout", "2s", "-cache=false")
	rec := subrec.Dial(t, g.WSURL)
	heads := rec.NewHeads(t)
	heads.WaitHead(t, node.BlockNumber(t)+1, time.Minute)

	c.Tox.WS.Timeout(0) // the websocket route blackholed, its connection held open
	stalled := func() float64 { return g.metrics(t)[`gateway_upstream_ws_stalled_total{upstream="a"}`] }
	if n := stalled(); n != 0 {
		t.Fatalf("%v sockets found stalled before the route was blackholed", n)
	}
	// A call carried by the socket times out (-upstream-timeout), and so starts the probe.
	resp, err := http.Get(g.URL + "/ws/blocknumber")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode < 500 {
		t.Fatalf("GET /ws/blocknumber through a blackholed socket: %s, want a 5xx", resp.Status)
	}
	took := waitFor(t, "the stalled socket dropped", 2*time.Minute, func() bool { return stalled() >= 1 })
	t.Logf("socket dropped %v after the call's answer", took.Round(time.Millisecond))

	c.Tox.WS.Clear()
	heads.WaitHead(t, node.BlockNumber(t)+2, time.Minute)
	if err := heads.CheckHeadsOnChain(node.HTTPURL); err != nil {
		t.Fatal(err)
	}
	if logs := g.log.Filter("stalled"); !strings.Contains(logs, `"upstream":"a"`) {
		t.Fatalf("no warning naming the upstream whose socket stalled:\n%s", logs)
	}
}

// A websocket route dead the node's way only (the gateway's writes arrive, nothing comes
// back; the upstream's HTTP route answers) looks like subscriptions gone silent: the
// chain moves on over HTTP without a push. The renewal probes the sockets too, finds
// them stalled within -ws-probe-timeout, and the subscription moves to the other
// primary: every head once, in order, the same id. Before, the renewal's calls had to
// time out first (-upstream-timeout, 5 minutes here with the keepalive longer still), or
// the upstream's head fall -max-lag behind; the outside audit measured 11-12 s without
// heads at the defaults.
func TestRouteDeadTheNodesWayMovesSubscriptions(t *testing.T) {
	node := testnode.Start(t)
	tox := toxiproxy.Start(t)
	chains := []*chain{newChain(t, tox, "a", "primary", node), newChain(t, tox, "b", "primary", node)}
	g := startGateway(t, chains, "", "-ws-probe-timeout", "1s", "-ws-ping-interval", "10m", "-ws-pong-timeout", "10m",
		"-upstream-timeout", "5m", "-cache=false", "-max-lag", "1000") // nor may its head fall behind
	rec := subrec.Dial(t, g.WSURL)
	heads := rec.NewHeads(t)
	heads.WaitHead(t, node.BlockNumber(t)+1, time.Minute)
	var carrier *chain
	for _, c := range chains {
		if g.upstream(t, c.Name).Subscriptions > 0 {
			carrier = c
		}
	}
	if carrier == nil {
		t.Fatal("no upstream carries the subscription")
	}
	carrier.Tox.WS.SetToxic(toxiproxy.Toxic{Type: "timeout", Stream: toxiproxy.StreamDownstream,
		Attributes: map[string]int64{"timeout": 0}}) // the node's way only: its connections held open
	t.Cleanup(carrier.Tox.WS.Clear)
	cut, past := time.Now(), node.BlockNumber(t)
	heads.WaitHead(t, past+3, 90*time.Second)
	t.Logf("head %d delivered %v after the route died at head %d", past+3, time.Since(cut).Round(time.Millisecond), past)
	if err := heads.CheckHeadsOnChain(node.HTTPURL); err != nil {
		t.Fatal(err)
	}
	if n := g.metrics(t)[`gateway_upstream_ws_stalled_total{upstream="`+carrier.Name+`"}`]; n < 1 {
		t.Fatal("the dead route's sockets were not found stalled")
	}
	if n := g.metrics(t)[`gateway_upstream_ws_silent_subscriptions_total{upstream="`+carrier.Name+`"}`]; n < 1 {
		t.Fatal("the silence check did not find the route: no silent subscriptions counted")
	}
}
