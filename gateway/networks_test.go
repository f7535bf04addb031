package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
)

// Two real geth --dev nodes, one per network, of distinct chains: A is 1337, B 31337
// (testnode.ChainID). Beyond eth_chainId, they are told apart by what was sent to them:
// node A's dev account sent one transaction, node B's two, so eth_getTransactionCount
// of that account answers 0x1 on A, 0x2 on B: an answer shows which node gave it.

// twoNetworkFile configures networks a (node A, by path /a/ and Host a.test) and b
// (node B, alias bee, Host *.b.test, the default).
func twoNetworkFile(a, b *testnode.Node, extra string) string {
	return fmt.Sprintf(`networks:
  - name: a
    chain_id: 1337
    hosts: [a.test]
    upstreams: [{name: node-a, http: %q, ws: %q}]
  - name: b
    chain_id: 31337
    aliases: [bee]
    hosts: ["*.b.test"]
    default: true
    upstreams: [{name: node-b, http: %q, ws: %q}]
`, a.HTTPURL, a.WSURL, b.HTTPURL, b.WSURL) + extra
}

// twoNodes starts nodes A and B and makes them differ: one transaction on A, two on B.
// It returns the call that tells them apart and what each answers to it, and the block
// of B's second transaction (where their chains' states differ).
func twoNodes(t testing.TB) (a, b *testnode.Node, call string, want map[string]string, differAt string) {
	t.Helper()
	a, b = testnode.Start(t, testnode.Period(1)), testnode.Start(t, testnode.Period(1), testnode.ChainID(31337))
	a.SendTx(t)
	b.SendTx(t)
	_, differAt = b.SendTx(t)
	var accounts []string
	if err := json.Unmarshal(a.Call(t, "eth_accounts"), &accounts); err != nil || len(accounts) == 0 {
		t.Fatalf("no dev account: %v", err)
	}
	call = `{"jsonrpc":"2.0","id":7,"method":"eth_getTransactionCount","params":["` + accounts[0] + `","latest"]}`
	want = map[string]string{"a": `"0x1"`, "b": `"0x2"`}
	for name, n := range map[string]*testnode.Node{"a": a, "b": b} {
		if got := string(n.Call(t, "eth_getTransactionCount", accounts[0], "latest")); got != want[name] {
			t.Fatalf("node %s: transaction count %s, want %s", name, got, want[name])
		}
	}
	return a, b, call, want, differAt
}

// result is the raw result of a JSON-RPC answer.
func result(t testing.TB, body string) string {
	t.Helper()
	var a struct {
		Result json.RawMessage
		Error  any
	}
	if err := json.Unmarshal([]byte(body), &a); err != nil || a.Result == nil {
		t.Fatalf("not an answer with a result: %s", body)
	}
	return string(a.Result)
}

// nodeBlockHash is the hash of block n as node answers it.
func nodeBlockHash(t testing.TB, node *testnode.Node, n string) string {
	t.Helper()
	var blk struct{ Hash string }
	if err := json.Unmarshal(node.Call(t, "eth_getBlockByNumber", n, false), &blk); err != nil || blk.Hash == "" {
		t.Fatalf("block %s: %v", n, err)
	}
	return blk.Hash
}

// hostPost sends body to url with a Host header and returns status and body.
func hostPost(t testing.TB, url, host, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("POST", url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// blockHash is the hash of a JSON-RPC answer's block (or a REST answer's).
func blockHash(t testing.TB, body string) string {
	t.Helper()
	var a struct {
		Result struct{ Hash string }
		Error  any
	}
	if err := json.Unmarshal([]byte(body), &a); err != nil || a.Result.Hash == "" {
		t.Fatalf("not a block: %s", body)
	}
	return a.Result.Hash
}

// TestNetworksServeTheirOwnNodes: each network's answers come from its own node, by
// path prefix (name and alias) and by Host, on POST /, a REST route, the /ws/ routes
// and /socket2socket with a subscription; the same block number asked of both networks
// (the cache on) is each one's own block.
func TestNetworksServeTheirOwnNodes(t *testing.T) {
	a, b, call, want, differAt := twoNodes(t)
	blocks := map[string]string{"a": nodeBlockHash(t, a, differAt), "b": nodeBlockHash(t, b, differAt)}
	if blocks["a"] == blocks["b"] {
		t.Fatalf("nodes A and B have the same block %s: the test cannot tell them apart", differAt)
	}
	path := writeFile(t, t.TempDir(), "networks.yaml", twoNetworkFile(a, b, ""))
	gw := startGateway(t, "-config", path)
	gw.waitUpstreams(t)
	rest := `{"block":"` + differAt + `"}`
	for _, tc := range []struct {
		name, path, host, body, network string
	}{
		{"POST / by name", "/a/", "", call, "a"},
		{"POST / by name, no slash", "/a", "", call, "a"},
		{"POST / by alias", "/bee/", "", call, "b"},
		{"POST / by host", "/", "a.test", call, "a"},
		{"POST / by wildcard host", "/", "rpc.b.test:8080", call, "b"},
		{"POST / default", "/", "", call, "b"},
		{"key route by name", "/a/v3/anykey", "", call, "a"},
		{"key route by host", "/v3/anykey", "a.test", call, "a"},
		{"REST", "/a/blockbynumber", "", rest, "a"},
		{"REST, other", "/b/blockbynumber", "", rest, "b"},
		{"REST by host", "/blockbynumber", "A.TEST", rest, "a"},
		{"REST over ws", "/a/ws/blockbynumber", "", rest, "a"},
		{"REST over ws, other", "/b/ws/blockbynumber", "", rest, "b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 2 { // the second from the cache: each network's own
				code, body := hostPost(t, gw.URL+tc.path, tc.host, tc.body)
				if code != 200 {
					t.Fatalf("%d %s", code, body)
				}
				if tc.body == call {
					if got := result(t, body); got != want[tc.network] {
						t.Fatalf("%s, want network %s's %s", got, tc.network, want[tc.network])
					}
				} else if got := blockHash(t, body); got != blocks[tc.network] {
					t.Fatalf("block %s %s, want network %s's %s", differAt, got, tc.network, blocks[tc.network])
				}
			}
		})
	}
	// /socket2socket per network: a call and a newHeads subscription, each from its node.
	for name, node := range map[string]*testnode.Node{"a": a, "b": b} {
		c := dialWS(t, strings.Replace(gw.WSURL, "/socket2socket", "/"+name+"/socket2socket", 1), nil)
		if got := result(t, string(c.call(call))); got != want[name] {
			t.Fatalf("%s over /socket2socket: %s, want %s", name, got, want[name])
		}
		c.mustSend(`{"jsonrpc":"2.0","id":2,"method":"eth_subscribe","params":["newHeads"]}`)
		if a := decodeAnswer(t, c.nextAnswer()); a.Error != nil {
			t.Fatalf("%s subscribe: %+v", name, a.Error)
		}
		var head struct{ Number, Hash string }
		for head.Hash == "" {
			n := decodeAnswer(t, c.next())
			_ = json.Unmarshal(n.Params.Result, &head)
		}
		if h := nodeBlockHash(t, node, head.Number); h != head.Hash {
			t.Fatalf("%s: head %s %s is not node %s's block (%s)", name, head.Number, head.Hash, name, h)
		}
	}
	// The route metrics carry the network.
	if gw.metric(t, `gateway_requests_total{network="a",route="rpc",code="200"}`) == 0 {
		t.Fatal("no rpc requests counted for network a")
	}
}

// TestNetworkUnknownAndExcluded: a path naming no network is 404 naming the configured
// ones (a route a named network lacks is 404 too, not an unknown network); a network the key's plan excludes is 403 on every transport; neither reaches a
// node (the fake counts every call).
func TestNetworkUnknownAndExcluded(t *testing.T) {
	up := startFakeUpstream(t) // it answers eth_chainId 0x1: both networks are on chain 1
	file := networksAB(1, up.HTTPURL, up.WSURL, up.HTTPURL, up.WSURL, fmt.Sprintf(`keys:
  entries: [{name: alice, sha256: %s, plan: only-a}]
plans:
  only-a: {networks: [a]}
`, sha(keyAlice)))
	path := writeFile(t, t.TempDir(), "gateway.yaml", file)
	gw := startGateway(t, "-config", path, "-cache=false")
	gw.waitUpstreams(t)
	const balance = `{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["0x0000000000000000000000000000000000000001","latest"]}`
	reached := func() int { return up.count("eth_getBalance") + up.count("eth_gasPrice") }
	code, _, body := post(t, gw.URL+"/nowhere/v3/"+keyAlice, balance, nil)
	if code != 404 || !strings.Contains(body, "networks: a, b") {
		t.Fatalf("unknown network: %d %s", code, body)
	}
	// Every transport: REST, REST over ws, the websocket endpoints.
	for _, p := range []string{"/nowhere/gasprice", "/nowhere/ws/gasprice"} {
		if code, body := do(t, "GET", gw.URL+p, ""); code != 404 || !strings.Contains(string(body), "networks: a, b") {
			t.Fatalf("GET %s: %d %s", p, code, body)
		}
	}
	for _, p := range []string{"/nowhere/socket2socket", "/nowhere/ws/v3/" + keyAlice} {
		_, resp, err := websocket.DefaultDialer.Dial(strings.Replace(gw.WSURL, "/socket2socket", p, 1), nil)
		if err == nil || resp == nil || resp.StatusCode != 404 {
			t.Fatalf("websocket %s: %v %v, want 404", p, err, resp)
		}
	}
	// Paths that cannot name a network (scanners' noise) are 404s, not unknown networks.
	for _, p := range []string{"/favicon.ico", "/.env", "/wp-admin.php", "/Nowhere/gasprice"} {
		if code, _ := do(t, "GET", gw.URL+p, ""); code != 404 {
			t.Fatalf("GET %s: %d, want 404", p, code)
		}
	}
	if got := gw.metric(t, "gateway_network_unknown_total"); got != 5 {
		t.Fatalf("%v unknown-network requests counted, want 5", got)
	}
	// A route a named network does not have is a 404, not an unknown network.
	for _, p := range []string{"/a/ws/v3/" + keyAlice + "/", "/a/socket2socket/", "/a/ws/v3/", "/b/gasprice/"} {
		if code, _ := do(t, "GET", gw.URL+p, ""); code != 404 {
			t.Fatalf("GET %s: %d, want 404", p, code)
		}
	}
	if got := gw.metric(t, "gateway_network_unknown_total"); got != 5 {
		t.Fatalf("%v unknown-network requests counted after routes of known networks, want 5", got)
	}
	for _, tc := range []struct{ name, method, path string }{
		{"POST", "POST", "/b/v3/" + keyAlice},
		{"REST", "GET", "/b/gasprice"},
		{"REST over ws", "GET", "/b/ws/gasprice"},
	} {
		req, _ := http.NewRequest(tc.method, gw.URL+tc.path, strings.NewReader(balance))
		req.Header.Set("X-API-Key", keyAlice)
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 403 || !strings.Contains(string(b), "network is not available") {
			t.Fatalf("%s on an excluded network: %d %s", tc.name, resp.StatusCode, b)
		}
	}
	_, resp, err := websocket.DefaultDialer.Dial(strings.Replace(gw.WSURL, "/socket2socket", "/b/ws/v3/"+keyAlice, 1), nil)
	if err == nil || resp == nil || resp.StatusCode != 403 {
		t.Fatalf("websocket on an excluded network: %v %v", err, resp)
	}
	// Each refusal counted under its own status, not as "other" (with the 101s).
	for _, route := range []string{"gasprice", "socket2socket"} {
		if got := gw.metric(t, `gateway_requests_total{network="b",route="`+route+`",code="403"}`); got != 1 {
			t.Errorf("route %s on network b: %v requests counted as 403, want 1", route, got)
		}
	}
	if got := reached(); got != 0 {
		t.Fatalf("%d calls reached the upstream", got)
	}
	if code, _, body := post(t, gw.URL+"/a/v3/"+keyAlice, balance, nil); code != 200 {
		t.Fatalf("the plan's network: %d %s", code, body)
	}
	if gw.metric(t, `gateway_key_network_requests_total{key="alice",network="a"}`) != 1 {
		t.Fatal("the key's call on network a was not counted by network")
	}
	if gw.metric(t, `gateway_key_refused_total{key="alice",limit="network"}`) != 4 {
		t.Fatal("the refusals were not counted by key")
	}
}

// TestNetworkIsolationWhenANodeDies: network a's node killed, network b's clients see
// no error over the same period; a answers 502/503/504 quickly, never b's chain, and
// once its node is gone 502 -32000 upstream unavailable, as the README says (it said
// 503).
func TestNetworkIsolationWhenANodeDies(t *testing.T) {
	a, b, call, want, _ := twoNodes(t)
	path := writeFile(t, t.TempDir(), "networks.yaml", twoNetworkFile(a, b, ""))
	gw := startGateway(t, "-config", path, "-cache=false")
	gw.waitUpstreams(t)
	var bErrors, aOK, calls atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				calls.Add(1)
				code, body, err := tryPost(gw.URL+"/b/", call)
				if err != nil || code != 200 || !strings.Contains(body, `"result":`+want["b"]) {
					bErrors.Add(1)
				}
				if code, body, err := tryPost(gw.URL+"/a/", call); err == nil && code == 200 && strings.Contains(body, `"result":`+want["b"]) {
					t.Errorf("network a answered with b's chain: %s", body)
				} else if err == nil && code == 200 {
					aOK.Add(1)
				}
			}
		}()
	}
	waitFor(t, "calls before the kill", func() bool { return calls.Load() > 100 })
	a.Kill()
	killed := calls.Load()
	waitFor(t, "calls after the kill", func() bool { return calls.Load() > killed+400 })
	close(stop)
	wg.Wait()
	if n := bErrors.Load(); n != 0 {
		t.Fatalf("%d errors on network b while a's node was down", n)
	}
	code, body := hostPost(t, gw.URL+"/a/", "", call)
	if code != 502 || !strings.Contains(body, `"code":-32000,"message":"upstream unavailable"`) {
		t.Fatalf("network a with its node down: %d %s", code, body)
	}
}

// TestNetworksReload: a reload adds a network, removes one (its websocket clients get a
// JSON-RPC error, then close 1001) and changes another's upstreams; the clients of the
// network that stays keep their connection and answers.
func TestNetworksReload(t *testing.T) {
	a, b, call, want, _ := twoNodes(t)
	dir := t.TempDir()
	path := writeFile(t, dir, "networks.yaml", twoNetworkFile(a, b, ""))
	gw := startGateway(t, "-config", path, "-cache=false")
	gw.waitUpstreams(t)
	onA := dialWS(t, strings.Replace(gw.WSURL, "/socket2socket", "/a/socket2socket", 1), nil)
	onB := dialWS(t, strings.Replace(gw.WSURL, "/socket2socket", "/b/socket2socket", 1), nil)
	if got := result(t, string(onB.call(call))); got != want["b"] {
		t.Fatalf("b: %s", got)
	}
	// b goes; c (node B) comes; a gets a second upstream, a node of its chain.
	a2 := testnode.Start(t, testnode.Period(1))
	writeFile(t, dir, "networks.yaml", fmt.Sprintf(`networks:
  - name: a
    chain_id: 1337
    upstreams: [{name: node-a, http: %q, ws: %q}, {name: node-a2, http: %q, ws: %q}]
  - name: c
    chain_id: 31337
    upstreams: [{name: node-b, http: %q, ws: %q}]
`, a.HTTPURL, a.WSURL, a2.HTTPURL, a2.WSURL, b.HTTPURL, b.WSURL))
	if err := gw.srv.ReloadConfig(); err != nil {
		t.Fatal(err)
	}
	a0 := decodeAnswer(t, onB.next())
	if a0.Error == nil || !strings.Contains(a0.Error.Message, "network b was removed") {
		t.Fatalf("removed network's client got %+v, want a JSON-RPC error first", a0)
	}
	var ce *websocket.CloseError
	if err := onB.expectClose(); !asCloseError(err, &ce) || ce.Code != websocket.CloseGoingAway {
		t.Fatalf("removed network's client closed with %v, want 1001", err)
	}
	// a's socket stayed open and is answered (by node A, or by A2, whose account sent
	// nothing); its new upstream is there.
	if got := result(t, string(onA.call(call))); got != want["a"] && got != `"0x0"` {
		t.Fatalf("a after the reload: %s", got)
	}
	waitFor(t, "network a's second upstream", func() bool {
		for _, n := range gw.srv.nets.List() {
			if n.Name == "a" {
				return len(n.Router.Upstreams()) == 2
			}
		}
		return false
	})
	waitFor(t, "the new network c", func() bool {
		code, body := hostPost(t, gw.URL+"/c/", "", call)
		return code == 200 && strings.Contains(body, `"result":`+want["b"])
	})
	if code, body := hostPost(t, gw.URL+"/b/", "", call); code != 404 {
		t.Fatalf("the removed network b: %d %s", code, body)
	}
	// The removed network's series are gone from /metrics (its parts close once the
	// new set is in place: polled until they are).
	page := scrape(t, gw)
	for end := time.Now().Add(10 * time.Second); strings.Contains(page, `network="b"`) && time.Now().Before(end); {
		time.Sleep(20 * time.Millisecond)
		page = scrape(t, gw)
	}
	if strings.Contains(page, `network="b"`) {
		var left []string
		for _, l := range strings.Split(page, "\n") {
			if strings.Contains(l, `network="b"`) {
				left = append(left, l)
			}
		}
		t.Fatalf("series of the removed network b are still on /metrics:\n%s", strings.Join(left, "\n"))
	}
}

// TestNetworkLimitsPerKeyOrPerNetwork: a key's limits count across every network,
// unless its plan says per_network: then each network has the plan's allowance.
func TestNetworkLimitsPerKeyOrPerNetwork(t *testing.T) {
	up := startFakeUpstream(t)
	for _, tc := range []struct {
		perNetwork bool
		wantOnB    int // status of the first call on b after a's burst is spent
	}{{false, 429}, {true, 200}} {
		t.Run(fmt.Sprint("per_network=", tc.perNetwork), func(t *testing.T) {
			file := fmt.Sprintf(`networks:
  - name: a
    chain_id: 1
    upstreams: [{name: up-a, http: %q}]
  - name: b
    chain_id: 1
    upstreams: [{name: up-b, http: %q}]
keys:
  entries: [{name: alice, sha256: %s, plan: slow}]
plans:
  slow: {requests_per_second: 0.01, burst: 2, per_network: %v}
`, up.HTTPURL, up.HTTPURL, sha(keyAlice), tc.perNetwork)
			gw := startGateway(t, "-config", writeFile(t, t.TempDir(), "gateway.yaml", file), "-cache=false", "-upstream-ws", "off")
			for i := range 2 {
				if code, _, body := post(t, gw.URL+"/a/v3/"+keyAlice, blockNumberCall, nil); code != 200 {
					t.Fatalf("call %d on a: %d %s", i+1, code, body)
				}
			}
			if code, _, body := post(t, gw.URL+"/a/v3/"+keyAlice, blockNumberCall, nil); code != 429 {
				t.Fatalf("third call on a: %d %s, want 429", code, body)
			}
			if code, _, body := post(t, gw.URL+"/b/v3/"+keyAlice, blockNumberCall, nil); code != tc.wantOnB {
				t.Fatalf("first call on b: %d %s, want %d", code, body, tc.wantOnB)
			}
		})
	}
}

// TestNetworkWrongChainUpstream: an upstream of another chain listed under a network
// serves none of its calls and /status says why; a network with no upstream of its
// chain answers 503 naming the chain, and never borrows another network's upstreams.
func TestNetworkWrongChainUpstream(t *testing.T) {
	right, wrong := testnode.Start(t, testnode.Period(1)), testnode.Start(t, testnode.Period(1), testnode.ChainID(31337))
	file := fmt.Sprintf(`networks:
  - name: a
    chain_id: 1337
    upstreams:
      - {name: right, http: %q, ws: %q}
      - {name: wrong, http: %q, ws: %q, weight: 5}
  - name: c
    chain_id: 5
    upstreams: [{name: wrong-too, http: %q}]
`, right.HTTPURL, right.WSURL, wrong.HTTPURL, wrong.WSURL, wrong.HTTPURL)
	gw := startGateway(t, "-config", writeFile(t, t.TempDir(), "networks.yaml", file), "-cache=false")
	// The gateway is up once HTTP proved the chain; each socket proves it as it connects,
	// and is ready only after: the calls over the websocket wait for right's.
	for _, n := range gw.srv.nets.List() {
		for _, u := range n.Router.Upstreams() {
			if u.Name() == "right" {
				if err := u.Mux().WaitReady(30 * time.Second); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	const chainID = `{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}`
	ws := dialWS(t, strings.Replace(gw.WSURL, "/socket2socket", "/a/socket2socket", 1), nil)
	for i := range 100 { // half over HTTP, half over the websocket upstreams
		var ans string
		if i%2 == 0 {
			code, body := hostPost(t, gw.URL+"/a/", "", chainID)
			if code != 200 {
				t.Fatalf("call %d: %d %s", i, code, body)
			}
			ans = body
		} else {
			ans = string(ws.call(chainID))
		}
		if got := result(t, ans); got != `"0x539"` {
			t.Fatalf("call %d: %s, want chain 1337's answer", i, ans)
		}
	}
	_, b := do(t, "GET", gw.AdminURL+"/status", "")
	var page struct {
		Networks []struct {
			Name      string
			Upstreams []struct {
				Name    string
				State   string
				ChainID uint64 `json:"chain_id"`
			}
		}
	}
	if err := json.Unmarshal(b, &page); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, n := range page.Networks {
		for _, u := range n.Upstreams {
			if n.Name == "a" && u.Name == "wrong" {
				found = true
				if u.State != "wrong_chain" || u.ChainID != 31337 {
					t.Fatalf("/status says %+v, want wrong_chain 31337", u)
				}
			}
		}
	}
	if !found {
		t.Fatalf("/status does not list the wrong upstream by network: %s", b)
	}
	code, ans := hostPost(t, gw.URL+"/c/", "", chainID)
	if code != 503 || !strings.Contains(ans, "no upstream of chain 5") {
		t.Fatalf("a network with no upstream of its chain: %d %s", code, ans)
	}
}
