package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/infura-gateway/infura-gateway/gateway/socket"
)

// Keys used by the tests; the configuration holds only their SHA-256.
const (
	keyAlice = "alice-0123456789abcdef"
	keyBob   = "bob-fedcba9876543210"
)

func sha(key string) string {
	s := sha256.Sum256([]byte(key))
	return hex.EncodeToString(s[:])
}

// accessConfig is a file with two keys: alice on a small plan, bob on one without
// limits but with a method list.
func accessConfig(plan string) string {
	return fmt.Sprintf(`
keys:
  entries:
    - name: alice
      sha256: %s
      plan: small
    - name: bob
      sha256: %s
      plan: open
      origins: ["https://app.example.com"]
plans:
  small: %s
  open: {methods: {deny: [eth_getLogs]}}
`, sha(keyAlice), sha(keyBob), plan)
}

// startKeyed starts a gateway on the fake with the given configuration file content.
func startKeyed(t *testing.T, file string, extra ...string) (*fakeUpstream, *testGateway, string) {
	t.Helper()
	up := startFakeUpstream(t)
	path := writeFile(t, t.TempDir(), "gateway.yaml", file)
	gw := startGateway(t, up.args(append([]string{"-config", path, "-cache=false"}, extra...)...)...)
	gw.waitUpstreams(t)
	return up, gw, path
}

// post sends a JSON-RPC body with headers and returns status, headers and body.
func post(t testing.TB, url, body string, header map[string]string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest("POST", url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

const blockNumberCall = `{"jsonrpc":"2.0","id":7,"method":"eth_blockNumber","params":[]}`

func TestKeysRequired(t *testing.T) {
	up, gw, _ := startKeyed(t, accessConfig("{}"))
	cases := []struct {
		name   string
		path   string
		header map[string]string
		status int
		want   string
	}{
		{"no key", "/", nil, 401, "missing API key"},
		{"no key, REST route", "/blocknumber", nil, 401, "missing API key"},
		{"unknown key in path", "/v3/not-a-key", nil, 401, "invalid API key"},
		{"unknown bearer", "/", map[string]string{"Authorization": "Bearer nope"}, 401, "invalid API key"},
		{"key in path", "/v3/" + keyAlice, nil, 200, `"result"`},
		{"bearer", "/", map[string]string{"Authorization": "Bearer " + keyAlice}, 200, `"result"`},
		{"bearer, lower case scheme", "/", map[string]string{"Authorization": "bearer " + keyAlice}, 200, `"result"`},
		{"X-API-Key", "/", map[string]string{"X-API-Key": keyAlice}, 200, `"result"`},
		{"X-API-Key on a REST route", "/blocknumber", map[string]string{"X-API-Key": keyAlice}, 200, `"result"`},
		{"origin allowed", "/v3/" + keyBob, map[string]string{"Origin": "https://app.example.com"}, 200, `"result"`},
		{"origin refused", "/v3/" + keyBob, map[string]string{"Origin": "https://evil.example"}, 403, "origin"},
		{"method off the plan", "/v3/" + keyBob, nil, 200, "not available on this API key's plan"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := blockNumberCall
			if tc.path == "/blocknumber" {
				code, b := doHeader(t, "GET", gw.URL+tc.path, tc.header)
				checkAnswer(t, code, b, tc.status, tc.want)
				return
			}
			if strings.HasPrefix(tc.want, "not available") {
				body = `{"jsonrpc":"2.0","id":7,"method":"eth_getLogs","params":[{}]}`
			}
			code, _, b := post(t, gw.URL+tc.path, body, tc.header)
			checkAnswer(t, code, b, tc.status, tc.want)
		})
	}
	if n := up.count("eth_getLogs"); n != 0 {
		t.Errorf("a method off the plan reached the upstream %d times", n)
	}
	// The key is in no log line and no metric; its name is.
	metrics := scrape(t, gw)
	for _, secret := range []string{keyAlice, keyBob, sha(keyAlice)} {
		if strings.Contains(gw.log.String(), secret) || strings.Contains(metrics, secret) {
			t.Fatalf("a key (or its hash) appears in logs or metrics")
		}
	}
	if !strings.Contains(metrics, `gateway_key_requests_total{key="alice"}`) {
		t.Errorf("no per-key series for alice:\n%s", grepLines(metrics, "gateway_key_"))
	}
	if got := gw.metric(t, `gateway_key_refused_total{key="bob",limit="method"}`); got != 1 {
		t.Errorf("bob's method refusals = %v, want 1", got)
	}
}

func doHeader(t testing.TB, method, url string, header map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func checkAnswer(t testing.TB, code int, body string, status int, want string) {
	t.Helper()
	if code != status || !strings.Contains(body, want) {
		t.Fatalf("got %d %s, want %d with %q", code, body, status, want)
	}
	if status != 200 && !strings.Contains(body, `"error":{"code":`) {
		t.Fatalf("refusal is not a JSON-RPC error: %s", body)
	}
}

func scrape(t testing.TB, gw *testGateway) string {
	t.Helper()
	code, b := do(t, "GET", gw.AdminURL+"/metrics", "")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	lines := strings.Split(string(b), "\n")
	for i, l := range lines {
		lines[i] = defaultSeries(l)
	}
	return strings.Join(lines, "\n")
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestWebsocketKeyRequired(t *testing.T) {
	_, gw, _ := startKeyed(t, accessConfig("{}"))
	wsBase := strings.Replace(gw.URL, "http://", "ws://", 1)
	for _, u := range []string{wsBase + "/socket2socket", wsBase + "/ws/v3/not-a-key"} {
		_, resp, err := websocket.DefaultDialer.Dial(u, nil)
		if err == nil || resp == nil || resp.StatusCode != 401 {
			t.Fatalf("%s: upgrade without a valid key: err %v, response %v; want 401", u, err, resp)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if !strings.Contains(string(b), `"error"`) {
			t.Errorf("401 body is not a JSON-RPC error: %s", b)
		}
	}
	c := dialWS(t, wsBase+"/ws/v3/"+keyAlice, nil)
	if a := decodeAnswer(t, c.call(blockNumberCall)); a.Error != nil {
		t.Fatalf("call with a key in the path: %+v", a.Error)
	}
	c2 := dialWS(t, wsBase+"/socket2socket", map[string][]string{"X-API-Key": {keyAlice}})
	if a := decodeAnswer(t, c2.call(blockNumberCall)); a.Error != nil {
		t.Fatalf("call with X-API-Key: %+v", a.Error)
	}
}

func TestRateLimitHTTP(t *testing.T) {
	// 1 request per second with a burst of 5: five pass at once, the sixth is refused.
	_, gw, _ := startKeyed(t, accessConfig("{requests_per_second: 1, burst: 5}"))
	url := gw.URL + "/v3/" + keyAlice
	for i := range 5 {
		if code, _, b := post(t, url, blockNumberCall, nil); code != 200 {
			t.Fatalf("request %d within the burst: %d %s", i+1, code, b)
		}
	}
	code, h, b := post(t, url, blockNumberCall, nil)
	if code != 429 || !strings.Contains(b, `"code":-32005`) || !strings.Contains(b, "small") || !strings.Contains(b, "requests per second") {
		t.Fatalf("over the limit: %d %s; want 429, -32005 naming the limit and the plan", code, b)
	}
	if ra, err := strconv.Atoi(h.Get("Retry-After")); err != nil || ra < 1 || ra > 2 {
		t.Errorf("Retry-After %q, want 1 or 2 seconds", h.Get("Retry-After"))
	}
	// Another key is not affected.
	if code, _, b := post(t, gw.URL+"/v3/"+keyBob, blockNumberCall, nil); code != 200 {
		t.Fatalf("bob after alice was limited: %d %s", code, b)
	}
	if got := gw.metric(t, `gateway_key_refused_total{key="alice",limit="rate"}`); got != 1 {
		t.Errorf("refusals counted %v, want 1", got)
	}
}

func TestBatchCostsTheSumOfItsElements(t *testing.T) {
	// 100 units at once: eth_blockNumber costs 10 (the default table), so a batch of 11
	// (110 units) is refused as a whole and a batch of 10 passes.
	_, gw, _ := startKeyed(t, accessConfig("{units_per_second: 1, units_burst: 100}"))
	url := gw.URL + "/v3/" + keyAlice
	batch := func(n int) string {
		var els []string
		for i := range n {
			els = append(els, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"eth_blockNumber","params":[]}`, i))
		}
		return "[" + strings.Join(els, ",") + "]"
	}
	code, _, b := post(t, url, batch(11), nil)
	if code != 429 || !strings.Contains(b, "-32005") {
		t.Fatalf("a batch over the units burst: %d %s, want 429 -32005", code, b)
	}
	code, _, b = post(t, url, batch(10), nil)
	if code != 200 || strings.Count(b, `"result"`) != 10 {
		t.Fatalf("a batch within the burst: %d %s", code, b)
	}
	if got := gw.metric(t, `gateway_key_units_total{key="alice"}`); got != 100 {
		t.Errorf("units counted %v, want 100", got)
	}
	// A custom cost table: eth_blockNumber now costs 50.
	_, gw2, _ := startKeyed(t, accessConfig("{units_per_second: 1, units_burst: 100}")+"costs: {eth_blockNumber: 50}\n")
	for i, want := range []int{200, 200, 429} {
		if code, _, b := post(t, gw2.URL+"/v3/"+keyAlice, blockNumberCall, nil); code != want {
			t.Fatalf("call %d at cost 50: %d %s, want %d", i+1, code, b, want)
		}
	}
}

func TestDailyQuota(t *testing.T) {
	_, gw, _ := startKeyed(t, accessConfig("{daily_units: 30}"))
	url := gw.URL + "/v3/" + keyAlice
	for i, want := range []int{200, 200, 200, 429, 429} {
		code, _, b := post(t, url, blockNumberCall, nil)
		if code != want {
			t.Fatalf("call %d against a daily quota of 3 calls: %d %s", i+1, code, b)
		}
		if code == 429 && !strings.Contains(b, "daily units quota") {
			t.Fatalf("refusal does not name the quota: %s", b)
		}
	}
}

func TestWebsocketLimits(t *testing.T) {
	_, gw, _ := startKeyed(t, accessConfig("{requests_per_second: 0.001, burst: 3, max_connections: 2, max_subscriptions: 1}"))
	ws := strings.Replace(gw.URL, "http://", "ws://", 1) + "/ws/v3/" + keyAlice

	t.Run("connections", func(t *testing.T) {
		a := dialWS(t, ws, nil)
		b := dialWS(t, ws, nil)
		// Slots go to clients as their handlers run, not in dial order: the third dial
		// is the one refused only once the first two hold theirs.
		waitFor(t, "two clients holding slots", func() bool { return gw.metric(t, "gateway_ws_client_connections") == 2 })
		// The third is refused before the upgrade, as any limit: 429, Retry-After, JSON.
		_, resp, err := websocket.DefaultDialer.Dial(ws, nil)
		if err == nil || resp == nil {
			t.Fatalf("third connection: %v, want the handshake refused", err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "concurrent connections") ||
			!strings.Contains(string(body), "-32005") {
			t.Fatalf("third connection: %d, Retry-After %q, %s; want 429 naming the connection limit", resp.StatusCode,
				resp.Header.Get("Retry-After"), body)
		}
		_ = a.conn.Close()
		<-a.done
		// The slot comes back when a client leaves.
		waitFor(t, "a free connection slot", func() bool {
			d, resp, err := websocket.DefaultDialer.Dial(ws, nil)
			if resp != nil && resp.Body != nil {
				_ = resp.Body.Close()
			}
			if err != nil {
				return false
			}
			defer d.Close()
			_ = d.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			_, _, err = d.ReadMessage()
			var ce *websocket.CloseError
			return !asCloseError(err, &ce) // not closed by the gateway: served
		})
		_ = b.conn.Close()
	})

	t.Run("requests and subscriptions", func(t *testing.T) {
		// The clients above are gone (their slots are released as their handlers end).
		waitFor(t, "no websocket clients", func() bool { return gw.metric(t, "gateway_ws_client_connections") == 0 })
		c := dialWS(t, ws, nil)
		sub := decodeAnswer(t, c.call(`{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]}`))
		if sub.Error != nil {
			t.Fatalf("first subscription: %+v", sub.Error)
		}
		a := decodeAnswer(t, c.call(`{"jsonrpc":"2.0","id":2,"method":"eth_subscribe","params":["newPendingTransactions"]}`))
		if a.Error == nil || a.Error.Code != -32005 || string(a.ID) != "2" {
			t.Fatalf("second subscription over max_subscriptions 1: %+v", a)
		}
		// burst 3 is spent (two subscribe calls and this one); then refusals carry the id.
		_ = c.call(blockNumberCall)
		a = decodeAnswer(t, c.call(`{"jsonrpc":"2.0","id":"x","method":"eth_blockNumber","params":[]}`))
		if a.Error == nil || a.Error.Code != -32005 || string(a.ID) != `"x"` {
			t.Fatalf("over the rate: %+v, want -32005 with the request's id", a)
		}
		// A client that keeps pushing is closed with 1008.
		for i := 0; i < 2*socket.MaxRefusals; i++ {
			if err := c.send(blockNumberCall); err != nil {
				break
			}
		}
		err := c.expectClose()
		var ce *websocket.CloseError
		if !asCloseError(err, &ce) || ce.Code != websocket.ClosePolicyViolation {
			t.Fatalf("client pushing past its limit: %v, want close 1008", err)
		}
	})
}

func TestAnonymousLimitsByClientAddress(t *testing.T) {
	file := "plans:\n  anon: {requests_per_second: 0.001, burst: 2}\nanonymous: {plan: anon}\n"
	t.Run("X-Forwarded-For ignored by default", func(t *testing.T) {
		_, gw, _ := startKeyed(t, file)
		for i, want := range []int{200, 200, 429} {
			// Each request claims another client: not believed, all are 127.0.0.1.
			code, _, b := post(t, gw.URL, blockNumberCall, map[string]string{"X-Forwarded-For": fmt.Sprintf("203.0.113.%d", i)})
			if code != want {
				t.Fatalf("request %d: %d %s, want %d", i+1, code, b, want)
			}
		}
	})
	t.Run("X-Forwarded-For from a trusted proxy", func(t *testing.T) {
		_, gw, _ := startKeyed(t, file, "-trusted-proxies", "127.0.0.1")
		for _, client := range []string{"203.0.113.1", "203.0.113.2"} {
			for i, want := range []int{200, 200, 429} {
				code, _, b := post(t, gw.URL, blockNumberCall, map[string]string{"X-Forwarded-For": client})
				if code != want {
					t.Fatalf("client %s request %d: %d %s, want %d", client, i+1, code, b, want)
				}
			}
		}
		// Keys are optional here: a key still works, on its own limits (none: no plan).
	})
	t.Run("IPv6 clients by /64", func(t *testing.T) {
		_, gw, _ := startKeyed(t, file, "-trusted-proxies", "127.0.0.1")
		// Three addresses of one /64 share its allowance; another /64 has its own.
		for i, c := range []struct {
			client string
			want   int
		}{{"2001:db8:1:2::1", 200}, {"2001:db8:1:2::ffff", 200}, {"2001:db8:1:2:abcd::9", 429}, {"2001:db8:1:3::1", 200}} {
			code, _, b := post(t, gw.URL, blockNumberCall, map[string]string{"X-Forwarded-For": c.client})
			if code != c.want {
				t.Fatalf("request %d from %s: %d %s, want %d", i+1, c.client, code, b, c.want)
			}
		}
	})
}

func TestKeysReload(t *testing.T) {
	_, gw, path := startKeyed(t, accessConfig("{}"))
	wsURL := strings.Replace(gw.URL, "http://", "ws://", 1) + "/ws/v3/" + keyAlice
	c := dialWS(t, wsURL, nil)
	const carol = "carol-key-000000000000"
	if code, _, _ := post(t, gw.URL+"/v3/"+carol, blockNumberCall, nil); code != 401 {
		t.Fatalf("carol before the reload: %d", code)
	}
	next := strings.Replace(accessConfig("{}"), "plans:", fmt.Sprintf("    - name: carol\n      sha256: %s\n      plan: open\nplans:", sha(carol)), 1)
	writeFile(t, filepath.Dir(path), "gateway.yaml", next)
	if err := gw.srv.ReloadConfig(); err != nil {
		t.Fatal(err)
	}
	if code, _, b := post(t, gw.URL+"/v3/"+carol, blockNumberCall, nil); code != 200 {
		t.Fatalf("carol after the reload: %d %s", code, b)
	}
	if a := decodeAnswer(t, c.call(blockNumberCall)); a.Error != nil {
		t.Fatalf("a websocket client of alice across the reload: %+v", a.Error)
	}
	// A file naming a missing plan is refused; the keys stay.
	writeFile(t, filepath.Dir(path), "gateway.yaml", strings.Replace(next, "plan: open", "plan: gold", 1))
	if err := gw.srv.ReloadConfig(); err == nil || !strings.Contains(err.Error(), "no plan") {
		t.Fatalf("reload with a missing plan: %v", err)
	}
	if code, _, _ := post(t, gw.URL+"/v3/"+keyAlice, blockNumberCall, nil); code != 200 {
		t.Fatalf("alice after a refused reload: %d", code)
	}
}

// TestKeyedConcurrency runs keys, limits, batches and websockets at once under -race.
func TestKeyedConcurrency(t *testing.T) {
	_, gw, _ := startKeyed(t, accessConfig("{requests_per_second: 200, burst: 50, max_connections: 4, max_subscriptions: 4}"))
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				code, b, err := tryPost(gw.URL+"/v3/"+keyAlice, blockNumberCall)
				if err != nil || (code != 200 && code != 429) {
					errs <- fmt.Errorf("worker %d call %d: %d %s %v", w, i, code, b, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func tryPost(url, body string) (int, string, error) {
	code, b, err := tryDo("POST", url, body)
	return code, string(b), err
}

func TestKeysOptionalAndOff(t *testing.T) {
	t.Run("keys off: a key in the path is not looked at", func(t *testing.T) {
		_, gw, _ := startKeyed(t, "plans:\n  anon: {}\nanonymous: {plan: anon}\n")
		for _, path := range []string{"/v3/anything", "/"} {
			if code, _, b := post(t, gw.URL+path, blockNumberCall, map[string]string{"X-API-Key": "whatever"}); code != 200 {
				t.Fatalf("%s with keys off: %d %s", path, code, b)
			}
		}
	})
	t.Run("keys optional: no key is anonymous, a wrong key is refused", func(t *testing.T) {
		file := strings.Replace(accessConfig("{}"), "keys:\n", "keys:\n  required: false\n", 1) +
			"  anon: {requests_per_second: 0.001, burst: 1}\nanonymous: {plan: anon}\n"
		_, gw, _ := startKeyed(t, file)
		for i, want := range []int{200, 429} {
			if code, _, b := post(t, gw.URL, blockNumberCall, nil); code != want {
				t.Fatalf("anonymous call %d: %d %s, want %d", i+1, code, b, want)
			}
		}
		if code, _, b := post(t, gw.URL+"/v3/"+keyAlice, blockNumberCall, nil); code != 200 {
			t.Fatalf("alice: %d %s", code, b)
		}
		if code, _, b := post(t, gw.URL+"/v3/wrong", blockNumberCall, nil); code != 401 {
			t.Fatalf("a wrong key: %d %s, want 401", code, b)
		}
	})
}
