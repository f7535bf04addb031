package gateway

import (
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/fasthttp/websocket"

	"github.com/infura-gateway/infura-gateway/gateway/internal/redistest"
)

// TestReloadAtMaxConnectionsAcrossReplicas: alice at max_connections and
// max_subscriptions, every socket (each with a subscription) on replica 0; a reload
// changes her plan's rate. Every socket stays open with its subscription (the move of
// each slot to the new plan's handle needs no free slot), and Redis counts replica 0's
// slots throughout: replica 1 is refused before, during and after the reload.
func TestReloadAtMaxConnectionsAcrossReplicas(t *testing.T) {
	rs := redistest.Start(t)
	up := startFakeUpstream(t)
	const max = 3
	plan := func(rps int) string {
		return accessConfig("{requests_per_second: " + strconv.Itoa(rps) + ", burst: 1000, max_connections: 3, max_subscriptions: 3}")
	}
	path := writeFile(t, t.TempDir(), "gateway.yaml", plan(1000))
	var gws []*testGateway
	for range 2 {
		gw := startGateway(t, up.args("-config", path, "-redis-addr", rs.Addr, "-cache=false")...)
		gw.waitUpstreams(t)
		waitFor(t, "Redis usable", func() bool { return gw.metric(t, `gateway_redis_up{client="redis"}`) == 1 })
		gws = append(gws, gw)
	}
	wsURL := func(gw *testGateway) string {
		return strings.Replace(gw.URL, "http://", "ws://", 1) + "/ws/v3/" + keyAlice
	}
	var socks []*wsTestClient
	for i := range max {
		c := dialWS(t, wsURL(gws[0]), nil)
		if a := decodeAnswer(t, c.call(`{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]}`)); a.Error != nil {
			t.Fatalf("socket %d's subscription: %+v", i, a.Error)
		}
		socks = append(socks, c)
	}
	waitFor(t, "alice at her max on replica 0", func() bool {
		return gws[0].metric(t, "gateway_ws_client_connections") == max && gws[0].metric(t, "gateway_ws_subscriptions") == max
	})
	refusedOn1 := func(when string) {
		t.Helper()
		c, resp, err := websocket.DefaultDialer.Dial(wsURL(gws[1]), nil)
		if err == nil {
			_ = c.Close()
			t.Fatalf("%s: a connection past max_connections on replica 1", when)
		}
		if resp == nil {
			t.Fatalf("%s: %v", when, err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != 429 || !strings.Contains(string(body), "concurrent connections") {
			t.Fatalf("%s: replica 1 answered %d %s; want 429 naming the connection limit", when, resp.StatusCode, body)
		}
	}
	refusedOn1("before the reload")

	// Redis's count of alice's connection slots, every replica's reservation summed,
	// sampled while the reload runs: it must never drop below the sockets held.
	reserved := func() int {
		v, err := rs.Do("EVAL", `local n = 0
for _, k in ipairs(redis.call('KEYS', '*s:key:alice:conns')) do
  for _, v in ipairs(redis.call('HVALS', k)) do n = n + tonumber(v) end
end
return n`, "0")
		if err != nil {
			t.Error(err)
			return -1
		}
		n, _ := strconv.Atoi(v)
		return n
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	low := max
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			low = min(low, reserved())
		}
	}()
	reload(t, gws[0], path, plan(2000))
	reload(t, gws[1], path, plan(2000))
	refusedOn1("just after the reload")
	close(stop)
	wg.Wait()
	if low < max {
		t.Errorf("Redis counted %d of alice's %d connections while the reload ran", low, max)
	}
	for i, c := range socks {
		select {
		case <-c.done:
			t.Fatalf("socket %d closed by the reload: %v", i, c.closeErr())
		default:
		}
		if a := decodeAnswer(t, c.call(blockNumberCall)); a.Error != nil {
			t.Fatalf("socket %d after the reload: %+v", i, a.Error)
		}
	}
	if got := gws[0].metric(t, "gateway_ws_subscriptions"); got != max {
		t.Fatalf("subscriptions after the reload: %v, want %d", got, max)
	}
	// The old plan's handles are closed; once replica 0 has settled that (its count in
	// Redis back to the sockets it holds), replica 1 is still refused.
	waitFor(t, "replica 0's reservation settled", func() bool { return reserved() == max })
	refusedOn1("once the old handles' close settled")
}
