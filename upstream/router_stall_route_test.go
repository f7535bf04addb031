package upstream

import (
	"strings"
	"testing"
	"time"
)

// A websocket route dead the node's way (the gateway's writes arrive, nothing comes
// back, the upstream's HTTP side answers) looks like silent subscriptions to the
// silence check: the chain moves on without a push. The renewal then probes the
// sockets too, which answer nothing, so they are found stalled within a probe window
// and the subscription moves on at once: the client gets every head once, in order.
// Before, the renewal's calls had to time out first (the Mux's request timeout; here
// 10 minutes, with the keepalive as long) before the sockets were probed: the audit
// measured 11-12 s without heads; this test got none within 20 s.
func TestSilentRouteDeadTheNodesWayMovesAtOnce(t *testing.T) {
	cA, cB := newSilentChain(t, 10), newSilentChain(t, 10)
	frA, frB := startFreezer(t, cA.ws.url[len("ws://"):]), startFreezer(t, cB.ws.url[len("ws://"):])
	r := testRouterWith(t, func(cfg *RouterConfig) {
		cfg.HeadPoll = 50 * time.Millisecond
		cfg.Mux = testMuxConfig(cA.ws.url)
		// Nothing but the silence check can find the route dead within the test.
		cfg.Mux.PingInterval, cfg.Mux.PongTimeout, cfg.Mux.RequestTimeout = 10*time.Minute, 10*time.Minute, 10*time.Minute
		cfg.Mux.ProbeTimeout = 200 * time.Millisecond
	}, Spec{Name: "a", HTTPURL: cA.httpURL, WSURL: "ws://" + frA.addr},
		Spec{Name: "b", HTTPURL: cB.httpURL, WSURL: "ws://" + frB.addr})
	r.Start()
	t.Cleanup(r.Close)
	a, b := byName(r, "a"), byName(r, "b")
	waitFor(t, "both head subscriptions live", func() bool {
		return a.mux.live(newHeadsParams) && len(cA.live(newHeadsParams)) == 1 &&
			b.mux.live(newHeadsParams) && len(cB.live(newHeadsParams)) == 1
	})
	mine := func(k uint64) { cA.mine(k, true); cB.mine(k, true) }

	sink := newChanSink(64)
	r.subs.Join(newHeadsParams, []byte("1"), sink, time.Now().Add(10*time.Second))
	if got := string(sink.next(t)); !strings.Contains(got, `"result":"0x`) {
		t.Fatalf("eth_subscribe answered %s", got)
	}
	mine(3) // 11, 12, 13
	if got := headNumbers(t, sink, 3); !slicesEqual(got, []uint64{11, 12, 13}) {
		t.Fatalf("heads %v before the fault, want 11..13", got)
	}
	r.subs.mu.Lock()
	g := r.subs.groups[string(newHeadsParams)]
	r.subs.mu.Unlock()
	dead, fr := a, frA
	if g.carrier.Load() == b {
		dead, fr = b, frB
	}
	fr.freezeDown()
	mine(5) // 14..18: the dead route's pushes are lost, its HTTP side has them
	waitFor(t, "the dead route's sockets found stalled", func() bool { return dead.metrics.stalled.Get() > 0 })
	waitFor(t, "the subscription carried again", func() bool {
		c := g.carrier.Load()
		return c != nil && c.mux.live(newHeadsParams)
	})
	mine(1) // 19: pushed where it is carried now; 14..18 are fetched before it
	want := []uint64{14, 15, 16, 17, 18, 19}
	if got := headNumbers(t, sink, len(want)); !slicesEqual(got, want) {
		t.Fatalf("the client got heads %v after the fault, want %v", got, want)
	}
	if n := dead.metrics.silentSubs.Get(); n == 0 {
		t.Fatal("the silence was not what found the route: gateway_upstream_ws_silent_subscriptions_total 0")
	}
}
