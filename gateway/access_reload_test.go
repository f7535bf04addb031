package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/infura-gateway/infura-gateway/gateway/config"
	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
)

// startKeyedNode starts geth --dev and a gateway in front of it with the given keys file.
func startKeyedNode(t *testing.T, file string) (*testGateway, string) {
	t.Helper()
	node := testnode.Start(t)
	path := writeFile(t, t.TempDir(), "gateway.yaml", file)
	gw := startGateway(t, "-upstream-http", node.HTTPURL, "-upstream-ws", node.WSURL, "-cache=false", "-config", path)
	gw.waitUpstreams(t)
	return gw, path
}

// reload writes the file and reloads it.
func reload(t *testing.T, gw *testGateway, path, file string) {
	t.Helper()
	writeFile(t, filepath.Dir(path), filepath.Base(path), file)
	if err := gw.srv.ReloadConfig(); err != nil {
		t.Fatal(err)
	}
}

// A reload that removes a key closes its open websockets, on both key routes, with a
// JSON-RPC error frame and then close 1008; other keys' sockets stay.
func TestReloadRevokesKeyWebsockets(t *testing.T) {
	gw, path := startKeyedNode(t, accessConfig("{}"))
	wsBase := strings.Replace(gw.URL, "http://", "ws://", 1)
	var alice []*wsTestClient
	for i := range 10 {
		var c *wsTestClient
		if i%2 == 0 {
			c = dialWS(t, wsBase+"/ws/v3/"+keyAlice, nil)
		} else {
			c = dialWS(t, wsBase+"/socket2socket", map[string][]string{"X-API-Key": {keyAlice}})
		}
		if a := decodeAnswer(t, c.call(blockNumberCall)); a.Error != nil {
			t.Fatalf("socket %d before the reload: %+v", i, a.Error)
		}
		if i < 3 {
			if a := decodeAnswer(t, c.call(`{"jsonrpc":"2.0","id":2,"method":"eth_subscribe","params":["newHeads"]}`)); a.Error != nil {
				t.Fatalf("subscription %d: %+v", i, a.Error)
			}
		}
		alice = append(alice, c)
	}
	bob := dialWS(t, wsBase+"/ws/v3/"+keyBob, nil)

	// alice's entry goes; bob's stays.
	withoutAlice := strings.Replace(accessConfig("{}"), fmt.Sprintf("    - name: alice\n      sha256: %s\n      plan: small\n", sha(keyAlice)), "", 1)
	if withoutAlice == accessConfig("{}") {
		t.Fatal("test bug: alice's entry not removed")
	}
	start := time.Now()
	reload(t, gw, path, withoutAlice)
	for i, c := range alice {
		select {
		case <-c.done:
		case <-time.After(wsWait):
			t.Fatalf("socket %d still open %v after its key was removed", i, time.Since(start))
		}
	}
	elapsed := time.Since(start)
	t.Logf("10 sockets of a removed key closed %v after the reload", elapsed)
	if elapsed > 5*time.Second { // 1 s expected; loose for a loaded machine
		t.Errorf("closing took %v", elapsed)
	}
	for i, c := range alice {
		var ce *websocket.CloseError
		if err := c.closeErr(); !asCloseError(err, &ce) || ce.Code != websocket.ClosePolicyViolation {
			t.Errorf("socket %d: closed with %v, want 1008", i, err)
		}
		found := false
		for len(c.msgs) > 0 {
			m := string(<-c.msgs)
			found = found || strings.Contains(m, `"id":null,"error":{"code":-32000,"message":"API key revoked`)
		}
		if !found {
			t.Errorf("socket %d: no JSON-RPC error frame before the close", i)
		}
	}
	if a := decodeAnswer(t, bob.call(blockNumberCall)); a.Error != nil {
		t.Fatalf("bob's socket after alice's removal: %+v", a.Error)
	}
	if code, _, _ := post(t, gw.URL+"/v3/"+keyAlice, blockNumberCall, nil); code != 401 {
		t.Fatalf("alice over HTTP after the reload: %d, want 401", code)
	}
	waitFor(t, "alice's subscriptions ended", func() bool { return gw.metric(t, "gateway_ws_subscriptions") == 0 })
}

// A reload that changes a key's plan applies to its open websockets: the next call past
// the new limit is refused, and subscriptions the new plan denies end with an error
// notification, under each id the client holds them by (newHeads twice here).
func TestReloadPlanChangeAppliesToWebsockets(t *testing.T) {
	gw, path := startKeyedNode(t, accessConfig("{}"))
	ws := dialWS(t, strings.Replace(gw.URL, "http://", "ws://", 1)+"/ws/v3/"+keyAlice, nil)
	heads := decodeAnswer(t, ws.call(`{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]}`))
	heads2 := decodeAnswer(t, ws.call(`{"jsonrpc":"2.0","id":3,"method":"eth_subscribe","params":["newHeads"]}`))
	pending := decodeAnswer(t, ws.call(`{"jsonrpc":"2.0","id":2,"method":"eth_subscribe","params":["newPendingTransactions"]}`))
	if heads.Error != nil || heads2.Error != nil || pending.Error != nil {
		t.Fatalf("subscriptions: %+v %+v %+v", heads.Error, heads2.Error, pending.Error)
	}
	for i := range 20 { // no limit on the old plan
		if a := decodeAnswer(t, ws.call(blockNumberCall)); a.Error != nil {
			t.Fatalf("call %d on the old plan: %+v", i, a.Error)
		}
	}
	// Downgraded: two requests at once, then one per 1000 s; newHeads denied.
	reload(t, gw, path, accessConfig("{requests_per_second: 0.001, burst: 2, methods: {deny: [newHeads]}}"))
	var headsID, heads2ID string
	if err := errors.Join(json.Unmarshal(heads.Result, &headsID), json.Unmarshal(heads2.Result, &heads2ID)); err != nil || headsID == heads2ID {
		t.Fatalf("newHeads ids %q and %q: %v", headsID, heads2ID, err)
	}
	// The error notifications: the subscriptions the new plan denies have ended, one
	// under each id.
	deadline := time.Now().Add(wsWait)
	for ended := map[string]bool{}; len(ended) < 2; {
		if time.Now().After(deadline) {
			t.Fatalf("error notifications for %v of the denied subscriptions within %v", ended, wsWait)
		}
		b := ws.next()
		a := decodeAnswer(t, b)
		if a.Method != "eth_subscription" || !strings.Contains(string(b), `"error"`) {
			continue // a notification of a subscription before the reload took effect
		}
		if id := a.Params.Subscription; id != headsID && id != heads2ID || ended[id] || !strings.Contains(string(b), `"code":-32601`) {
			t.Fatalf("error notification %s, want subscriptions %s and %s ended once each with -32601", b, headsID, heads2ID)
		}
		ended[a.Params.Subscription] = true
	}
	ws.mustSend(blockNumberCall) // id 7
	ws.mustSend(`{"jsonrpc":"2.0","id":8,"method":"eth_blockNumber","params":[]}`)
	ws.mustSend(`{"jsonrpc":"2.0","id":"over","method":"eth_blockNumber","params":[]}`)
	// Answers by id: the refusal is answered at once, the others after the upstream.
	answers := map[string][]byte{}
	for len(answers) < 3 {
		b := ws.next()
		a := decodeAnswer(t, b)
		if a.Method == "eth_subscription" {
			if a.Params.Subscription == headsID || a.Params.Subscription == heads2ID {
				t.Fatalf("a newHeads notification after the subscription ended: %s", b)
			}
			continue
		}
		answers[string(a.ID)] = b
	}
	if !strings.Contains(string(answers["7"]), `"result"`) || !strings.Contains(string(answers["8"]), `"result"`) {
		t.Fatalf("calls within the new burst: %s %s", answers["7"], answers["8"])
	}
	if a := decodeAnswer(t, answers[`"over"`]); a.Error == nil || a.Error.Code != -32005 {
		t.Fatalf("the call past the new plan's limit: %s, want -32005", answers[`"over"`])
	}
	if got := gw.metric(t, "gateway_ws_subscriptions"); got != 1 {
		t.Errorf("subscriptions held after the reload: %v, want 1 (newPendingTransactions)", got)
	}
}

// A plan change moves a socket's slots to the new plan: subscriptions past its limit end
// with an error notification, and the sockets past its connection limit are closed.
func TestReloadPlanLimitsFollowSockets(t *testing.T) {
	_, gw, path := startKeyed(t, accessConfig("{max_subscriptions: 4, max_connections: 3}"))
	url := strings.Replace(gw.URL, "http://", "ws://", 1) + "/ws/v3/" + keyAlice
	a := dialWS(t, url, nil)
	for i, kind := range []string{"newHeads", "newPendingTransactions"} {
		if r := decodeAnswer(t, a.call(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"eth_subscribe","params":[%q]}`, i, kind))); r.Error != nil {
			t.Fatalf("subscribe %s: %+v", kind, r.Error)
		}
	}
	b := dialWS(t, url, nil)
	decodeAnswer(t, b.call(blockNumberCall))
	waitFor(t, "two clients", func() bool { return gw.metric(t, "gateway_ws_client_connections") == 2 })

	// Fewer subscriptions: one of a's two ends (-32005 naming the limit); b is not touched.
	reload(t, gw, path, accessConfig("{max_subscriptions: 1, max_connections: 3}"))
	m := string(a.next())
	if !strings.Contains(m, `"method":"eth_subscription"`) || !strings.Contains(m, `"error":{"code":-32005`) ||
		!strings.Contains(m, "subscriptions limit of plan small") {
		t.Fatalf("after the reload a got %s, want a subscription ended by the subscription limit", m)
	}
	if got := gw.metric(t, "gateway_ws_subscriptions"); got != 1 {
		t.Errorf("subscriptions after the reload: %v, want 1", got)
	}
	if r := decodeAnswer(t, b.call(blockNumberCall)); r.Error != nil {
		t.Fatalf("b after the reload: %+v", r.Error)
	}
	// Fewer connections: whichever socket the review reaches second is closed.
	reload(t, gw, path, accessConfig("{max_subscriptions: 1, max_connections: 1}"))
	var closed, open *wsTestClient
	select {
	case <-a.done:
		closed, open = a, b
	case <-b.done:
		closed, open = b, a
	case <-time.After(wsWait):
		t.Fatal("no socket closed past the new connection limit")
	}
	var ce *websocket.CloseError
	if err := closed.closeErr(); !asCloseError(err, &ce) || ce.Code != websocket.ClosePolicyViolation ||
		!strings.Contains(ce.Text, "concurrent connections") {
		t.Fatalf("socket past the new limit: %v, want 1008 naming the connection limit", err)
	}
	if r := decodeAnswer(t, open.call(blockNumberCall)); r.Error != nil {
		t.Fatalf("the socket within the new limit: %+v", r.Error)
	}
	// The slots given back are the new plan's: once it leaves, one socket fits again.
	_ = open.conn.Close()
	<-open.done
	waitFor(t, "no clients", func() bool { return gw.metric(t, "gateway_ws_client_connections") == 0 })
	c := dialWS(t, url, nil)
	if r := decodeAnswer(t, c.call(blockNumberCall)); r.Error != nil {
		t.Fatalf("a new socket within the new limit: %+v", r.Error)
	}
	if got := gw.metric(t, "gateway_ws_subscriptions"); got != 0 {
		t.Errorf("subscriptions after both left: %v, want 0", got)
	}
}

// A socket without a key is closed when a reload makes keys required: by the review
// (an error frame with id null), or, when it calls after the keys were swapped and
// before the review reached it, by its own call's review (the frame carries the call's id).
func TestReloadRequiringKeysClosesUnkeyedSockets(t *testing.T) {
	for _, tc := range []struct {
		name   string
		review bool
	}{{"review", true}, {"call before the review", false}} {
		t.Run(tc.name, func(t *testing.T) {
			optional := strings.Replace(accessConfig("{}"), "keys:\n", "keys:\n  required: false\n", 1) + "anonymous: {plan: small}\n"
			_, gw, path := startKeyed(t, optional)
			c := dialWS(t, strings.Replace(gw.URL, "http://", "ws://", 1)+"/socket2socket", nil)
			if r := decodeAnswer(t, c.call(blockNumberCall)); r.Error != nil {
				t.Fatalf("anonymous call: %+v", r.Error)
			}
			var m, wantID string
			if tc.review {
				reload(t, gw, path, accessConfig("{}"))
				m, wantID = string(c.next()), "null"
			} else {
				swapKeysOnly(t, gw, path, accessConfig("{}"))
				m, wantID = string(c.call(`{"jsonrpc":"2.0","id":5,"method":"eth_blockNumber"}`)), "5"
			}
			if !strings.Contains(m, `"id":`+wantID+`,"error"`) || !strings.Contains(m, "API key is now required") {
				t.Fatalf("got %s, want an error frame with id %s saying a key is required", m, wantID)
			}
			var ce *websocket.CloseError
			if err := c.expectClose(); !asCloseError(err, &ce) || ce.Code != websocket.ClosePolicyViolation {
				t.Fatalf("unkeyed socket after keys became required: %v, want 1008", err)
			}
		})
	}
}

// swapKeysOnly writes file and loads its keys as ReloadConfig's first step does, without
// the review of open sockets that follows it there.
func swapKeysOnly(t *testing.T, gw *testGateway, path, file string) {
	t.Helper()
	writeFile(t, filepath.Dir(path), filepath.Base(path), file)
	next, _, err := config.LoadFile(gw.srv.cfg, gw.srv.getenv)
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.srv.acc.Load(next.Keys); err != nil {
		t.Fatal(err)
	}
}

// A reload that gives a key a plan leaving a network out closes the key's websockets on
// that network, however they named it (path, alias, Host; key in the path or a header),
// with a JSON-RPC error frame and then close 1008, counted as a network refusal; its
// socket on the network the plan keeps stays and is answered.
func TestReloadPlanLeavingNetworkOutClosesItsWebsockets(t *testing.T) {
	gw, path, file := startTwoNetworks(t)
	wsBase := strings.Replace(gw.URL, "http://", "ws://", 1)
	onA := dialWS(t, wsBase+"/a/ws/v3/"+keyAlice, nil)
	var onB []*wsTestClient
	for _, tc := range []struct {
		path   string
		header map[string][]string
	}{
		{"/b/ws/v3/" + keyAlice, nil},
		{"/bee/socket2socket", map[string][]string{"X-API-Key": {keyAlice}}},
		{"/ws/v3/" + keyAlice, map[string][]string{"Host": {"b.test"}}},
	} {
		c := dialWS(t, wsBase+tc.path, tc.header)
		if a := decodeAnswer(t, c.call(`{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]}`)); a.Error != nil {
			t.Fatalf("%s: subscribe before the reload: %+v", tc.path, a.Error)
		}
		onB = append(onB, c)
	}
	reload(t, gw, path, file("[a]"))
	for i, c := range onB {
		select {
		case <-c.done:
		case <-time.After(wsWait):
			t.Fatalf("socket %d on b still open %v after the reload left b out of its plan", i, wsWait)
		}
		var ce *websocket.CloseError
		if err := c.closeErr(); !asCloseError(err, &ce) || ce.Code != websocket.ClosePolicyViolation {
			t.Fatalf("socket %d on b: closed with %v, want 1008", i, err)
		}
		found := false
		for len(c.msgs) > 0 {
			found = found || strings.Contains(string(<-c.msgs), `"id":null,"error":{"code":-32000,"message":"this network is not available`)
		}
		if !found {
			t.Fatalf("socket %d on b: no JSON-RPC error frame before the close", i)
		}
	}
	if a := decodeAnswer(t, onA.call(blockNumberCall)); a.Error != nil {
		t.Fatalf("the socket on a after the reload: %+v", a.Error)
	}
	if got := gw.metric(t, `gateway_key_refused_total{key="alice",limit="network"}`); got != float64(len(onB)) {
		t.Fatalf("%v network refusals counted, want %d", got, len(onB))
	}
}

// A reload swaps the key table before its review reaches the open sockets. A call in
// between (the table swapped, the review not yet run: here never run) meets the new plan
// itself: a call, a batch and an eth_subscribe on a network the plan now leaves out are
// refused, and the socket closes with 1008, as the review would have closed it.
func TestCallBeforeTheReviewMeetsTheNewPlan(t *testing.T) {
	gw, path, file := startTwoNetworks(t)
	wsBase := strings.Replace(gw.URL, "http://", "ws://", 1)
	calls := []struct{ name, msg, id string }{
		{"call", `{"jsonrpc":"2.0","id":7,"method":"eth_blockNumber"}`, "7"},
		{"batch", `[{"jsonrpc":"2.0","id":8,"method":"eth_blockNumber"}]`, "null"},
		{"subscribe", `{"jsonrpc":"2.0","id":9,"method":"eth_subscribe","params":["newHeads"]}`, "9"},
	}
	var onB []*wsTestClient
	for _, tc := range calls {
		c := dialWS(t, wsBase+"/b/ws/v3/"+keyAlice, nil)
		if a := decodeAnswer(t, c.call(blockNumberCall)); a.Error != nil { // served before the swap
			t.Fatalf("%s: before the swap: %+v", tc.name, a.Error)
		}
		onB = append(onB, c)
	}
	onA := dialWS(t, wsBase+"/a/ws/v3/"+keyAlice, nil)

	swapKeysOnly(t, gw, path, file("[a]"))

	for i, tc := range calls {
		c := onB[i]
		a := decodeAnswer(t, c.call(tc.msg))
		if a.Error == nil || !strings.Contains(a.Error.Message, "this network is not available") || string(a.ID) != tc.id {
			t.Fatalf("%s on b after the swap: %s %s, want id %s and the network refusal", tc.name, a.ID, a.Result, tc.id)
		}
		var ce *websocket.CloseError
		if err := c.expectClose(); !asCloseError(err, &ce) || ce.Code != websocket.ClosePolicyViolation {
			t.Fatalf("%s on b: closed with %v, want 1008", tc.name, err)
		}
	}
	if a := decodeAnswer(t, onA.call(blockNumberCall)); a.Error != nil {
		t.Fatalf("the socket on a after the swap: %+v", a.Error)
	}
}

// startTwoNetworks starts a gateway on twoNetworksFile with alice's plan on a and b; file
// gives the configuration for other plans.
func startTwoNetworks(t *testing.T) (gw *testGateway, path string, file func(networks string) string) {
	node := testnode.Start(t)
	file = func(networks string) string { return twoNetworksFile(node, networks) }
	path = writeFile(t, t.TempDir(), "gateway.yaml", file("[a, b]"))
	gw = startGateway(t, "-config", path, "-cache=false")
	gw.waitUpstreams(t)
	return gw, path, file
}

// twoNetworksFile is a configuration of networks a and b (b also as bee and b.test) on
// one node, and alice's key on a plan with the given networks.
func twoNetworksFile(node *testnode.Node, networks string) string {
	return networksAB(1337, node.HTTPURL, node.WSURL, node.HTTPURL, node.WSURL,
		fmt.Sprintf("keys:\n  entries: [{name: alice, sha256: %s, plan: p}]\nplans:\n  p: {networks: %s}\n", sha(keyAlice), networks))
}

// networksAB is a configuration of networks a and b on one chain (b also as bee and
// b.test), each on its own upstream's URLs, then tail (keys, plans).
func networksAB(chain int, httpA, wsA, httpB, wsB, tail string) string {
	return fmt.Sprintf(`networks:
  - name: a
    chain_id: %d
    upstreams: [{name: up-a, http: %q, ws: %q}]
  - name: b
    chain_id: %d
    aliases: [bee]
    hosts: [b.test]
    upstreams: [{name: up-b, http: %q, ws: %q}]
`, chain, httpA, wsA, chain, httpB, wsB) + tail
}
