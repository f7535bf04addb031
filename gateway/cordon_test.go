package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/internal/redistest"
	"github.com/infura-gateway/infura-gateway/gateway/internal/rpcspy"
	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
	"github.com/infura-gateway/infura-gateway/upstream"
)

// Cordons through the admin endpoints: two upstreams (one real geth --dev behind two
// spies that count what reaches each) and gateway replicas sharing a real redis-server.

const testAdminToken = "cordon-test-token-0123456789abcdef"

// adminPost sends POST path to a gateway's admin listener with the bearer token
// (none when token is empty) and a JSON body.
func adminPost(t testing.TB, gw *testGateway, path, token, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, gw.AdminURL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("POST %s: %d, answer not JSON: %v", path, resp.StatusCode, err)
	}
	return resp.StatusCode, out
}

// cordonOf returns the cordon gw's default network holds on upstream name.
func cordonOf(gw *testGateway, name string) (upstream.Cordon, bool) {
	u := gw.srv.defaultNetwork().Router.Upstream(name)
	if u == nil {
		return upstream.Cordon{}, false
	}
	return u.Cordoned()
}

func TestCordonFleetWideThroughRedis(t *testing.T) {
	node := testnode.Start(t, testnode.Period(1))
	spyA, spyB := rpcspy.Start(t, node.HTTPURL, node.WSURL), rpcspy.Start(t, node.HTTPURL, node.WSURL)
	rd := redistest.Start(t)
	path := writeFile(t, t.TempDir(), "gateway.yaml", fmt.Sprintf(`upstreams:
  - {name: a, http: %q, ws: %q}
  - {name: b, http: %q, ws: %q}
`, spyA.URL, spyA.WSURL, spyB.URL, spyB.WSURL))
	env := map[string]string{"ADMIN_TOKEN": testAdminToken}
	start := func() *testGateway {
		gw := startGatewayEnv(t, env, "-config", path, "-redis-addr", rd.Addr)
		gw.waitUpstreams(t)
		return gw
	}
	r1, r2 := start(), start()
	replicas := []*testGateway{r1, r2}

	// Distinct reads on both replicas all along: none may fail, whatever is cordoned.
	var seq atomic.Int64
	call := func(gw *testGateway) error {
		body := fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["0x%040x","latest"]}`, seq.Add(1))
		code, out, err := tryDo("POST", gw.URL, body)
		if err != nil || code != 200 || !strings.Contains(string(out), `"result"`) {
			return fmt.Errorf("%d %s %v", code, out, err)
		}
		return nil
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var failed atomic.Value
	for _, gw := range replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := call(gw); err != nil {
					failed.Store(err.Error())
				}
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	waitFor(t, "calls on both upstreams", func() bool { return spyA.Count("eth_getBalance") > 0 && spyB.Count("eth_getBalance") > 0 })

	// Cordon a through replica 1: every replica stops sending to it.
	code, ans := adminPost(t, r1, "/admin/cordon", testAdminToken, `{"upstream":"a","reason":"provider invoice","by":"ops-test"}`)
	asked := time.Now()
	if code != 200 || ans["scope"] != "fleet" || ans["action"] != "cordon" || ans["network"] != "default" {
		t.Fatalf("cordon: %d %v", code, ans)
	}
	var worst time.Duration
	for i, gw := range replicas {
		waitFor(t, fmt.Sprintf("replica %d applying the cordon", i+1), func() bool { _, on := cordonOf(gw, "a"); return on })
		took := time.Since(asked)
		worst = max(worst, took)
		t.Logf("replica %d applied the cordon %v after the answer", i+1, took.Round(time.Millisecond))
	}
	// Replicas poll every 250ms: within 1s when the machine is not loaded (the figure
	// is logged above); the assertion leaves room for a loaded 2-core machine.
	if worst > 5*time.Second {
		t.Errorf("a replica applied the cordon %v after it was asked", worst)
	}
	// Calls already in flight on a finish; after them, nothing more reaches it.
	for _, gw := range replicas {
		waitFor(t, "no call in flight on a", func() bool { return gw.srv.defaultNetwork().Router.Upstream("a").InFlight() == 0 })
	}
	before, beforeB := spyA.Count("eth_getBalance"), spyB.Count("eth_getBalance")
	for range 50 {
		for _, gw := range replicas {
			if err := call(gw); err != nil {
				t.Fatalf("a call while a is cordoned: %v", err)
			}
		}
	}
	if got := spyA.Count("eth_getBalance"); got != before {
		t.Fatalf("the cordoned upstream got %d calls after every replica applied the cordon", got-before)
	}
	if spyB.Count("eth_getBalance") < beforeB+100 {
		t.Fatalf("b got %d of the 100 calls", spyB.Count("eth_getBalance")-beforeB)
	}

	// Every replica shows it: /status (reason, by, replica, since) and the gauge.
	for _, gw := range replicas {
		_, body := do(t, "GET", gw.AdminURL+"/status", "")
		var page struct {
			Upstreams []upstream.UpstreamStatus `json:"upstreams"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatal(err)
		}
		if c := page.Upstreams[0].Cordoned; page.Upstreams[0].Name != "a" || c == nil || c.Reason != "provider invoice" ||
			c.By != "ops-test" || c.Replica == "" || c.Since.IsZero() {
			t.Fatalf("/status of a: %+v", page.Upstreams[0])
		}
		if gw.metric(t, `gateway_upstream_cordoned{upstream="a"}`) != 1 || gw.metric(t, `gateway_upstream_cordoned{upstream="b"}`) != 0 {
			t.Fatal("gateway_upstream_cordoned does not show a cordoned, b not")
		}
	}

	// A replica started now (as after a restart) starts cordoned: read at start,
	// before its first request.
	r3 := startGatewayEnv(t, env, "-config", path, "-redis-addr", rd.Addr)
	if c, on := cordonOf(r3, "a"); !on || c.Reason != "provider invoice" {
		t.Fatalf("a replica started after the cordon does not hold it: %v %+v", on, c)
	}
	replicas = append(replicas, r3)

	// Uncordon through replica 2: every replica sends to a again.
	code, ans = adminPost(t, r2, "/admin/uncordon", testAdminToken, `{"network":"default","upstream":"a"}`)
	asked = time.Now()
	if code != 200 || ans["scope"] != "fleet" {
		t.Fatalf("uncordon: %d %v", code, ans)
	}
	for i, gw := range replicas {
		waitFor(t, "the uncordon", func() bool { _, on := cordonOf(gw, "a"); return !on })
		t.Logf("replica %d applied the uncordon %v after the answer", i+1, time.Since(asked).Round(time.Millisecond))
	}
	before = spyA.Count("eth_getBalance")
	waitFor(t, "calls on a again", func() bool { return spyA.Count("eth_getBalance") > before })
	if v := failed.Load(); v != nil {
		t.Fatalf("a client call failed: %v", v)
	}

	// The token never reaches a log line, /status or /metrics.
	for i, gw := range replicas {
		_, status := do(t, "GET", gw.AdminURL+"/status", "")
		_, met := do(t, "GET", gw.AdminURL+"/metrics", "")
		for what, s := range map[string]string{"logs": gw.log.String(), "/status": string(status), "/metrics": string(met)} {
			if strings.Contains(s, testAdminToken) {
				t.Errorf("replica %d: the admin token is in its %s", i+1, what)
			}
		}
	}
}

// The endpoints need the token: 403 (with how to enable them) when the gateway has
// none, 401 when it is missing or wrong; bad requests get 400 and unknown names 404,
// all in JSON. Without Redis a cordon holds on the replica only, and says so.
func TestCordonAuthAndErrors(t *testing.T) {
	fake := startFakeUpstream(t)
	file := writeFile(t, t.TempDir(), "gateway.yaml", fmt.Sprintf("upstreams:\n  - {name: a, http: %q}\n  - {name: b, http: %q}\n",
		fake.HTTPURL, fake.HTTPURL))
	off := startGateway(t, "-config", file)
	on := startGatewayEnv(t, map[string]string{"ADMIN_TOKEN": testAdminToken}, "-config", file)
	const good = `{"upstream":"a","reason":"test"}`
	for _, c := range []struct {
		name, path, token, body string
		gw                      *testGateway
		code                    int
		says                    string
	}{
		{"no token configured", "/admin/cordon", testAdminToken, good, off, 403, "ADMIN_TOKEN"},
		{"no token configured, drain", "/admin/drain", "", good, off, 403, "ADMIN_TOKEN"},
		{"token missing", "/admin/cordon", "", good, on, 401, "admin token"},
		{"token wrong", "/admin/cordon", testAdminToken + "x", good, on, 401, "admin token"},
		{"token prefix", "/admin/uncordon", testAdminToken[:16], good, on, 401, "admin token"},
		{"unknown upstream", "/admin/cordon", testAdminToken, `{"upstream":"zz","reason":"x"}`, on, 404, `no upstream \"zz\"`},
		{"unknown network", "/admin/cordon", testAdminToken, `{"network":"nope","upstream":"a","reason":"x"}`, on, 404, "no network"},
		{"no reason", "/admin/cordon", testAdminToken, `{"upstream":"a"}`, on, 400, "reason is required"},
		{"no upstream", "/admin/uncordon", testAdminToken, `{}`, on, 400, "upstream is required"},
		{"not JSON", "/admin/cordon", testAdminToken, `{"upstream":`, on, 400, "JSON"},
		{"unknown field", "/admin/cordon", testAdminToken, `{"upstream":"a","reason":"x","force":true}`, on, 400, "force"},
		{"control character", "/admin/cordon", testAdminToken, `{"upstream":"a","reason":"x\u0007"}`, on, 400, "control"},
		{"long reason", "/admin/cordon", testAdminToken, `{"upstream":"a","reason":"` + strings.Repeat("x", 201) + `"}`, on, 400, "longer"},
		{"timeout on cordon", "/admin/cordon", testAdminToken, `{"upstream":"a","reason":"x","timeout":"1s"}`, on, 400, "timeout"},
		{"timeout too long", "/admin/drain", testAdminToken, `{"upstream":"a","reason":"x","timeout":"1h"}`, on, 400, "timeout"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, ans := adminPost(t, c.gw, c.path, c.token, c.body)
			msg, _ := json.Marshal(ans)
			if code != c.code || !strings.Contains(string(msg), c.says) || ans["error"] == nil {
				t.Fatalf("%d %s, want %d with %q in a JSON-RPC error", code, msg, c.code, c.says)
			}
			if _, on := cordonOf(c.gw, "a"); on {
				t.Fatal("a refused request cordoned a")
			}
		})
	}
	// Query arguments work as the body does; without Redis: this process only.
	code, ans := adminPost(t, on, "/admin/cordon?upstream=b&reason=maintenance", testAdminToken, "")
	if code != 200 || ans["scope"] != "process" || !strings.Contains(fmt.Sprint(ans["note"]), "this replica only") {
		t.Fatalf("cordon without Redis: %d %v", code, ans)
	}
	if _, on := cordonOf(on, "b"); !on {
		t.Fatal("b not cordoned")
	}
	if strings.Contains(on.log.String(), testAdminToken) {
		t.Fatal("the admin token is in the logs")
	}
}

// Drain cordons the upstream and answers once this replica's calls in flight on it
// have ended, with the count; gateway_upstream_draining is 1 meanwhile.
func TestDrainWaitsForCallsInFlight(t *testing.T) {
	node := testnode.Start(t, testnode.Period(0))
	spyA, spyB := rpcspy.Start(t, node.HTTPURL, ""), rpcspy.Start(t, node.HTTPURL, "")
	file := writeFile(t, t.TempDir(), "gateway.yaml", fmt.Sprintf("upstreams:\n  - {name: a, http: %q}\n  - {name: b, http: %q}\n",
		spyA.URL, spyB.URL))
	gw := startGatewayEnv(t, map[string]string{"ADMIN_TOKEN": testAdminToken}, "-config", file)
	gw.waitUpstreams(t)
	release := make(chan struct{})
	spyA.SetFault(func(method string) *rpcspy.Fault {
		if method == "eth_getBalance" {
			<-release // held until the test has seen the drain wait
		}
		return nil
	})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			do(t, "POST", gw.URL, fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["0x%040x","latest"]}`, i))
		}()
	}
	a := gw.srv.defaultNetwork().Router.Upstream("a")
	waitFor(t, "calls held on a", func() bool { return a.InFlight() > 0 })
	type result struct {
		code int
		ans  map[string]any
	}
	done := make(chan result, 1)
	go func() {
		code, ans := adminPost(t, gw, "/admin/drain", testAdminToken, `{"upstream":"a","reason":"move to b","timeout":"60s"}`)
		done <- result{code, ans}
	}()
	waitFor(t, "the drain's cordon", func() bool { _, on := a.Cordoned(); return on })
	if gw.metric(t, `gateway_upstream_draining{upstream="a"}`) != 1 {
		t.Fatal("gateway_upstream_draining is not 1 while calls are held")
	}
	select {
	case r := <-done:
		t.Fatalf("drain answered while calls were in flight: %d %v", r.code, r.ans)
	default:
	}
	close(release)
	r := <-done
	if r.code != 200 || r.ans["drained"] != true || r.ans["in_flight"] != float64(0) || r.ans["action"] != "drain" {
		t.Fatalf("drain: %d %v", r.code, r.ans)
	}
	wg.Wait()
	if gw.metric(t, `gateway_upstream_draining{upstream="a"}`) != 0 || gw.metric(t, `gateway_upstream_cordoned{upstream="a"}`) != 1 {
		t.Fatal("after the drain: want draining 0, cordoned 1")
	}
}

// A subscription on an upstream that gets cordoned moves to the other one, as from a
// banned upstream: same id, notifications go on.
func TestCordonMovesSubscriptions(t *testing.T) {
	node := testnode.Start(t, testnode.Period(1))
	spyA, spyB := rpcspy.Start(t, node.HTTPURL, node.WSURL), rpcspy.Start(t, node.HTTPURL, node.WSURL)
	file := writeFile(t, t.TempDir(), "gateway.yaml", fmt.Sprintf("upstreams:\n  - {name: a, http: %q, ws: %q}\n  - {name: b, http: %q, ws: %q}\n",
		spyA.URL, spyA.WSURL, spyB.URL, spyB.WSURL))
	gw := startGatewayEnv(t, map[string]string{"ADMIN_TOKEN": testAdminToken}, "-config", file)
	gw.waitUpstreams(t)
	c := dialWS(t, gw.WSURL, nil)
	ans := decodeAnswer(t, c.call(`{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]}`))
	if ans.Error != nil {
		t.Fatalf("subscribe: %+v", ans.Error)
	}
	carrier := func() string {
		for _, u := range gw.srv.defaultNetwork().Router.Status().Upstreams {
			if u.Subscriptions > 0 {
				return u.Name
			}
		}
		return ""
	}
	waitFor(t, "a carrier", func() bool { return carrier() != "" })
	from := carrier()
	other := map[string]string{"a": "b", "b": "a"}[from]
	if code, ans := adminPost(t, gw, "/admin/cordon", testAdminToken, `{"upstream":"`+from+`","reason":"test"}`); code != 200 {
		t.Fatalf("cordon: %d %v", code, ans)
	}
	waitFor(t, "the subscription on "+other, func() bool { return carrier() == other })
	// Notifications keep coming on the same subscription.
	for range 2 {
		b := c.next()
		if !strings.Contains(string(b), `"eth_subscription"`) || !strings.Contains(string(b), string(ans.Result)) {
			t.Fatalf("after the move: %s", b)
		}
	}
}
