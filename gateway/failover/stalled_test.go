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
