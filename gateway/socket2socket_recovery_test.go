package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
	"github.com/infura-gateway/infura-gateway/gateway/internal/toxiproxy"
)

// The node is killed with clients connected and calls in flight: every call is
// answered (result or error) within a bounded time, nothing hangs. The node comes back
// on the same ports: subscribers keep receiving heads on the ids they were given.
func TestSocket2SocketNodeKilledAndRestarted(t *testing.T) {
	node, gw := startNodeGateway(t, nil)
	sub := dialWS(t, gw.WSURL, nil)
	ans := decodeAnswer(t, sub.call(`{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]}`))
	var subID string
	if err := json.Unmarshal(ans.Result, &subID); err != nil {
		t.Fatalf("subscribe: %+v", ans)
	}
	if n := decodeAnswer(t, sub.next()); n.Params.Subscription != subID {
		t.Fatalf("head before the kill: %+v", n)
	}
	const clients, burst = 6, 150
	cs := make([]*wsTestClient, clients)
	for i := range cs {
		cs[i] = dialWS(t, gw.WSURL, nil)
	}
	for _, c := range cs {
		for j := 0; j < burst; j++ {
			c.mustSend(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"eth_getBlockByNumber","params":["latest",true]}`, j))
		}
	}
	killed := time.Now()
	node.Kill()
	for i, c := range cs {
		seen := make(map[string]bool)
		for j := 0; j < burst; j++ {
			a := decodeAnswer(t, c.next())
			if seen[string(a.ID)] {
				t.Fatalf("client %d: id %s answered twice", i, a.ID)
			}
			seen[string(a.ID)] = true
			if a.Error != nil && a.Error.Code != -32000 {
				t.Fatalf("client %d: error %+v", i, a.Error)
			}
		}
	}
	if d := time.Since(killed); d > 15*time.Second {
		t.Fatalf("answers after the kill took %v", d)
	}
	// While the node is down, calls fail fast with an error carrying their id.
	start := time.Now()
	a := decodeAnswer(t, cs[0].call(`{"jsonrpc":"2.0","id":"down","method":"eth_chainId"}`))
	if a.Error == nil || string(a.ID) != `"down"` || time.Since(start) > 5*time.Second {
		t.Fatalf("call while down: %+v after %v", a, time.Since(start))
	}
	// So does a subscription no client holds yet: "upstream unavailable" after a review,
	// not the no-upstream error after the whole upstream timeout (10 s).
	start = time.Now()
	a = decodeAnswer(t, cs[1].call(`{"jsonrpc":"2.0","id":"sub-down","method":"eth_subscribe","params":["newPendingTransactions"]}`))
	if a.Error == nil || a.Error.Code != -32000 || a.Error.Message != "upstream unavailable" || string(a.ID) != `"sub-down"` ||
		time.Since(start) > 5*time.Second {
		t.Fatalf("subscribe while down: %+v after %v", a, time.Since(start))
	}

	const resubscribes = `gateway_upstream_ws_resubscribes_total{upstream="default"}`
	resubs := gw.metric(t, resubscribes)
	node.Restart(t)
	restarted := time.Now()
	// Heads resume on the same gateway subscription id (a fresh dev chain restarts low).
	for {
		n := decodeAnswer(t, sub.next())
		if n.Method != "eth_subscription" || n.Params.Subscription != subID {
			t.Fatalf("after restart: %s", sub.next())
		}
		if !bytes.Contains(n.Params.Result, []byte(`"parentHash"`)) {
			t.Fatalf("head %s", n.Params.Result)
		}
		break
	}
	t.Logf("heads resumed %v after the node answered again", time.Since(restarted))
	if got := gw.metric(t, resubscribes); got <= resubs {
		t.Fatalf("resubscribes_total %v, was %v", got, resubs)
	}
	// Calls work again.
	waitFor(t, "calls answered after the restart", func() bool {
		a := decodeAnswer(t, cs[1].call(`{"jsonrpc":"2.0","id":2,"method":"eth_chainId"}`))
		return string(a.Result) == `"0x539"`
	})
}

// Many clients subscribe to newHeads: one upstream subscription, every client gets every
// head on its id; when they go away the upstream subscription ends.
func TestSocket2SocketFanOutManySubscribers(t *testing.T) {
	_, gw := startNodeGateway(t, nil)
	const n = 300
	cs := make([]*wsTestClient, n)
	ids := make([]string, n)
	for i := range cs {
		cs[i] = dialWS(t, gw.WSURL, nil)
		cs[i].mustSend(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"eth_subscribe","params":["newHeads"]}`, i))
	}
	for i, c := range cs {
		a := decodeAnswer(t, c.nextAnswer())
		if err := json.Unmarshal(a.Result, &ids[i]); err != nil || string(a.ID) != fmt.Sprint(i) {
			t.Fatalf("client %d subscribe: %+v", i, a)
		}
	}
	const upstreamSubs = `gateway_upstream_ws_subscriptions{upstream="default"}`
	if got := gw.metric(t, upstreamSubs); got != 1 {
		t.Fatalf("%v upstream subscriptions for %d identical subscribers", got, n)
	}
	// Every client gets every head from the one it was subscribed at, in order, on its
	// id, and the same head as every other client. Clients subscribed over seconds on a
	// loaded machine, so their first heads differ: each is followed up to one head all
	// of them get (the latest first head, plus one).
	type head struct {
		Number uint64
		Hash   string
	}
	next := func(i int) head {
		m := decodeAnswer(t, cs[i].next())
		if m.Params.Subscription != ids[i] {
			t.Fatalf("client %d: notification for %s", i, m.Params.Subscription)
		}
		var h struct{ Number, Hash string }
		err := json.Unmarshal(m.Params.Result, &h)
		num, perr := strconv.ParseUint(strings.TrimPrefix(h.Number, "0x"), 16, 64)
		if err != nil || perr != nil || h.Hash == "" {
			t.Fatalf("client %d: head %s: %v %v", i, m.Params.Result, err, perr)
		}
		return head{num, h.Hash}
	}
	last := make([]head, n)
	var target uint64
	for i := range cs {
		last[i] = next(i)
		target = max(target, last[i].Number+1)
	}
	var common string
	for i := range cs {
		for last[i].Number < target {
			h := next(i)
			if h.Number != last[i].Number+1 {
				t.Fatalf("client %d: head %d after %d", i, h.Number, last[i].Number)
			}
			last[i] = h
		}
		if common == "" {
			common = last[i].Hash
		} else if last[i].Hash != common {
			t.Fatalf("client %d saw head %d as %s, client 0 as %s", i, target, last[i].Hash, common)
		}
	}
	for _, c := range cs {
		_ = c.conn.Close()
	}
	// The one upstream subscription left is the gateway's own head tracker's, which the
	// clients shared.
	waitFor(t, "no client subscription and no client left", func() bool {
		return gw.metric(t, upstreamSubs) == 1 && gw.metric(t, "gateway_ws_client_connections") == 0 &&
			gw.metric(t, "gateway_ws_subscriptions") == 0
	})
}

// Heads the node made while the upstream socket was down reach the subscriber once it
// is back: every one, in order, on the id it holds, before the next head (the
// subscription fetches up to upstream.MaxBackfill missed blocks). gateway/README.md
// said they were not replayed; the chaos audit saw 23 and 72 missed heads delivered
// after a websocket outage of a single upstream, none lost or twice.
func TestSocket2SocketHeadsMissedWhileTheSocketWasDown(t *testing.T) {
	node := testnode.Start(t, testnode.Period(0)) // blocks on transactions only
	ws := toxiproxy.Start(t).NewProxy(t, "ws", strings.TrimPrefix(node.WSURL, "ws://"))
	gw := startGateway(t, "-upstream-http", node.HTTPURL, "-upstream-ws", ws.URL("ws"), "-cache=false")
	gw.waitUpstreams(t)
	sub := dialWS(t, gw.WSURL, nil)
	var id string
	if ans := decodeAnswer(t, sub.call(`{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]}`)); json.Unmarshal(ans.Result, &id) != nil {
		t.Fatalf("subscribe: %+v", ans)
	}
	// head reads the next notification: on id, and its number.
	head := func() uint64 {
		t.Helper()
		n := decodeAnswer(t, sub.next())
		var h struct{ Number string }
		_ = json.Unmarshal(n.Params.Result, &h)
		num, err := testnode.ParseQuantity(h.Number)
		if n.Params.Subscription != id || err != nil {
			t.Fatalf("want a head on %s, got %q on %s", id, h.Number, n.Params.Subscription)
		}
		return num
	}
	_, tx := node.SendTx(t)
	first, err := testnode.ParseQuantity(tx)
	if err != nil {
		t.Fatal(err)
	}
	// geth --dev at period 0 now and then seals an empty block after a transaction's
	// (node_restart_test.go): every head is due, so heads are read up to the block
	// asked for, each the one after the last.
	last := head()
	for last < first {
		if n := head(); n != last+1 {
			t.Fatalf("head %d after %d", n, last)
		} else {
			last = n
		}
	}
	const subs = `gateway_upstream_ws_subscriptions{upstream="default"}`
	held := gw.metric(t, subs)
	ws.Down()
	waitFor(t, "the upstream subscription lost with the socket", func() bool { return gw.metric(t, subs) < held })
	for range 3 {
		node.SendTx(t)
	}
	ws.Up()
	waitFor(t, "the upstream subscription re-established", func() bool { return gw.metric(t, subs) == held })
	_, tx = node.SendTx(t)
	next, err := testnode.ParseQuantity(tx)
	if err != nil {
		t.Fatal(err)
	}
	if next < first+4 {
		t.Fatalf("four transactions mined in blocks %d..%d", first+1, next)
	}
	for last < next {
		if n := head(); n != last+1 {
			t.Fatalf("head %d after %d: every head once, in order, is due", n, last)
		} else {
			last = n
		}
	}
}
