package gateway

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/internal/rpcspy"
	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
)

// A provider drops the subscriptions of its one upstream's socket and keeps the socket
// open (a proxy in front of geth --dev, a block a second, drops their notifications).
// The gateway, with its default head polls (2 s) and the cache on, finds the silence
// from the HTTP head, subscribes again on the same socket, and a /socket2socket
// newHeads client keeps getting every head once and in order; /blocknumber keeps
// moving. Before, the served head stayed where the silence began: the client got no
// head and no error, and /blocknumber was the cached answer at that head until
// -cache-max-age (5 min here, so that only a served head moving renews it; 15 s by
// default).
func TestSilentUpstreamSubscriptionsRecovered(t *testing.T) {
	node := testnode.Start(t)
	spy := rpcspy.Start(t, node.HTTPURL, node.WSURL)
	gw := startGateway(t, "-upstream-http", spy.URL, "-upstream-ws", spy.WSURL, "-cache-max-age", "5m")
	gw.waitUpstreams(t)

	c := dialWS(t, gw.WSURL, nil)
	ans := decodeAnswer(t, c.call(`{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]}`))
	var subID string
	if err := json.Unmarshal(ans.Result, &subID); err != nil {
		t.Fatalf("subscribe: %+v", ans)
	}
	last := nextHead(t, c, subID)
	if n := spy.SilenceSubscriptions(); n != 1 {
		t.Fatalf("%d upstream subscriptions silenced, want the one the head and the client share", n)
	}
	silencedAt := blockNumber(t, gw)

	// Every head once, in order, through the silence and past the renewal.
	var longest time.Duration
	for at := time.Now(); last < silencedAt+6; {
		n := nextHead(t, c, subID)
		if n != last+1 {
			t.Fatalf("head %d after %d: want every head once, in order", n, last)
		}
		last, longest, at = n, max(longest, time.Since(at)), time.Now()
	}
	waitFor(t, "/blocknumber past the silence", func() bool { return blockNumber(t, gw) >= silencedAt+6 })

	if spy.DroppedNotifications() == 0 {
		t.Fatal("the proxy dropped no notification: nothing was silent")
	}
	const silent = `gateway_upstream_ws_silent_subscriptions_total{upstream="default"}`
	if n := gw.metric(t, silent); n < 1 {
		t.Fatalf("%s = %v, want the renewal counted", silent, n)
	}
	if made, _ := spy.Subscriptions(); made < 2 {
		t.Fatalf("%d upstream subscriptions made, want the renewal's too", made)
	}
	if n := gw.metric(t, `gateway_upstream_ws_reconnects_total{upstream="default"}`); n != 0 {
		t.Fatalf("%v reconnects: the socket should have stayed open", n)
	}
	if !strings.Contains(gw.log.String(), "went silent with the socket open") {
		t.Fatalf("no warning logged:\n%s", gw.log.String())
	}
	t.Logf("silenced at block %d; renewals %v; notifications dropped %d; longest wait for a head %v (a block a second)",
		silencedAt, gw.metric(t, silent), spy.DroppedNotifications(), longest.Round(10*time.Millisecond))
}

// nextHead reads the client's next message, a head of subscription id, and returns its
// number.
func nextHead(t *testing.T, c *wsTestClient, id string) uint64 {
	t.Helper()
	a := decodeAnswer(t, c.next())
	var h struct{ Number string }
	if a.Method != "eth_subscription" || a.Params.Subscription != id || json.Unmarshal(a.Params.Result, &h) != nil {
		t.Fatalf("want a head of %s, got %+v", id, a)
	}
	n, err := strconv.ParseUint(strings.TrimPrefix(h.Number, "0x"), 16, 64)
	if err != nil {
		t.Fatalf("head number %q: %v", h.Number, err)
	}
	return n
}

// blockNumber asks the gateway's /blocknumber.
func blockNumber(t *testing.T, gw *testGateway) uint64 {
	t.Helper()
	status, _, body := getCached(t, "GET", gw.URL+"/blocknumber", "")
	var a rpcAnswer
	var hex string
	if status != 200 || json.Unmarshal([]byte(body), &a) != nil || json.Unmarshal(a.Result, &hex) != nil {
		t.Fatalf("/blocknumber: %d %s", status, body)
	}
	n, err := strconv.ParseUint(strings.TrimPrefix(hex, "0x"), 16, 64)
	if err != nil {
		t.Fatalf("/blocknumber %q: %v", hex, err)
	}
	return n
}
