package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
)

// A provider's throttle reaches the client as the gateway's own refusal: 429 with
// Retry-After the back-off the provider stated (Infura's data.backoff_seconds), a
// -32005 of the gateway's words, never the provider's; the upstream is then asked
// nothing until its back-off ends, and /status and the metrics show it throttled.
func TestProviderThrottleAnsweredWithTheGatewaysRefusal(t *testing.T) {
	var balances atomic.Int64
	fake := startFakeUpstream(t, fakeRespond(func(r fakeRequest) fakeAnswer {
		if r.Method != "eth_getBalance" {
			return fakeAnswer{}
		}
		balances.Add(1)
		return fakeAnswer{Status: 429, Body: `{"jsonrpc":"2.0","id":` + string(r.ID) +
			`,"error":{"code":-32005,"message":"project ID request rate exceeded","data":{"see":"https://infura.io/docs/ethereum/jsonrpc/ratelimits","current_rps":13.333,"allowed_rps":10.0,"backoff_seconds":30.0}}}`}
	}))
	gw := startGateway(t, "-upstream-http", fake.HTTPURL, "-upstream-ws", "off")
	for i := range 3 {
		resp, err := http.Post(gw.URL+"/", "application/json",
			strings.NewReader(`{"jsonrpc":"2.0","id":5,"method":"eth_getBalance","params":["0x0000000000000000000000000000000000000001","latest"]}`))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		ra := resp.Header.Get("Retry-After")
		if resp.StatusCode != 429 || (ra != "30" && ra != "29") || !strings.Contains(string(body), `"code":-32005`) ||
			!strings.Contains(string(body), "throttled or out of quota") || strings.Contains(string(body), "project ID") ||
			!strings.Contains(string(body), `"id":5`) {
			t.Fatalf("call %d: %d Retry-After %q %s", i, resp.StatusCode, ra, body)
		}
	}
	if n := balances.Load(); n != 1 {
		t.Fatalf("the throttling provider was asked %d times during its back-off, want 1", n)
	}
	code, body := do(t, "GET", gw.AdminURL+"/status", "")
	var st struct {
		Upstreams []struct {
			State     string            `json:"state"`
			Throttled float64           `json:"throttled_for_s"`
			Answers   map[string]uint64 `json:"answers"`
		} `json:"upstreams"`
	}
	if err := json.Unmarshal(body, &st); code != 200 || err != nil || len(st.Upstreams) != 1 {
		t.Fatalf("/status: %d %v %s", code, err, body)
	}
	if u := st.Upstreams[0]; u.State != "healthy" || u.Throttled < 25 || u.Answers["throttled"] != 1 {
		t.Fatalf("/status: %+v; want healthy, throttled for about 30 s, one throttled answer", u)
	}
	if v := gw.metric(t, `gateway_upstream_throttled{upstream="default"}`); v != 1 {
		t.Fatalf("gateway_upstream_throttled %v", v)
	}
	if v := gw.metric(t, `gateway_upstream_answers_total{upstream="default",class="throttled"}`); v != 1 {
		t.Fatalf("gateway_upstream_answers_total{class=throttled} %v", v)
	}
}

// A client cannot make a real node's answer read as the provider refusing the gateway:
// geth echoes the method name and the params in its errors ("the method
// eth_unauthorized does not exist", "invalid argument 0: ... daily limit ..."), and a
// client naming such a method or param over and over must get geth's own answer while
// the upstream stays healthy, never banned, throttled or out of quota.
func TestClientTextCannotShutOutANode(t *testing.T) {
	node := testnode.Start(t, testnode.Period(0))
	gw := startGateway(t, "-upstream-http", node.HTTPURL, "-upstream-ws", node.WSURL, "-cache=false")
	gw.waitUpstreams(t)
	ws := dialWS(t, gw.WSURL, nil)
	calls := []struct{ req, wantMsg string }{
		{`{"jsonrpc":"2.0","id":7,"method":"eth_unauthorized","params":[]}`, "eth_unauthorized does not exist"},
		{`{"jsonrpc":"2.0","id":7,"method":"eth_ratelimit","params":[]}`, "eth_ratelimit does not exist"},
		{`{"jsonrpc":"2.0","id":7,"method":"eth_getBalance","params":["daily limit exceeded, rate limit, unauthorized","latest"]}`, "invalid argument 0"},
	}
	for round := range 8 {
		for _, c := range calls {
			code, body := do(t, "POST", gw.URL+"/", c.req)
			if code != 200 || !strings.Contains(string(body), c.wantMsg) || !strings.Contains(string(body), `"id":7`) {
				t.Fatalf("round %d, POST / %s: %d %s; want the node's own error", round, c.req, code, body)
			}
			if ans := ws.call(c.req); !strings.Contains(string(ans), c.wantMsg) {
				t.Fatalf("round %d, /socket2socket %s: %s; want the node's own error", round, c.req, ans)
			}
		}
	}
	for _, m := range []string{
		`gateway_upstream_state{upstream="default"}`, `gateway_upstream_bans{upstream="default"}`,
		`gateway_upstream_throttled{upstream="default"}`, `gateway_upstream_exhausted{upstream="default"}`,
		`gateway_upstream_answers_total{upstream="default",class="unauthorized"}`,
		`gateway_upstream_answers_total{upstream="default",class="throttled"}`,
		`gateway_upstream_answers_total{upstream="default",class="exhausted"}`,
	} {
		if v := gw.metric(t, m); v != 0 {
			t.Errorf("%s = %v after clients' calls answered by the node itself; want 0", m, v)
		}
	}
	if v := gw.metric(t, `gateway_upstream_answers_total{upstream="default",class="client_error"}`); v < 8*3*2 {
		t.Errorf("client_error answers %v; want the %d node errors counted as the calls'", v, 8*3*2)
	}
}

// A provider refusing elements of a batch (Alchemy's in-body 429, quoting its dashboard
// URL with the app's key) is a throttle of that upstream, as the same answer to a single
// call is: the batch goes to the other upstream, the client never sees the provider's
// text, and the refusing upstream is backed off from. Over HTTP and websocket.
func TestBatchElementsRefusedByAProviderFailOver(t *testing.T) {
	throttle := func(r fakeRequest) fakeAnswer {
		if r.Method != "eth_getBalance" {
			return fakeAnswer{}
		}
		return fakeAnswer{Body: `{"jsonrpc":"2.0","id":` + string(r.ID) + `,"error":{"code":429,"message":"Your app has exceeded its compute units per second capacity. Upgrade at https://dashboard.alchemy.com/SECRETAPPKEY"}}`}
	}
	a, b := startFakeUpstream(t, fakeRespond(throttle)), startFakeUpstream(t)
	gw := multiGateway(t, []upstreamDef{{name: "a", f: a, tier: "primary", ws: true}, {name: "b", f: b, tier: "primary", ws: true}})
	const batch = `[{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["0x0000000000000000000000000000000000000001","latest"]},` +
		`{"jsonrpc":"2.0","id":2,"method":"eth_chainId","params":[]}]`
	ws := dialWS(t, gw.WSURL, nil)
	for i := range 10 {
		code, body := do(t, "POST", gw.URL+"/", batch)
		wsBody := ws.call(batch)
		for _, got := range []string{string(body), string(wsBody)} {
			if code != 200 || strings.Contains(got, "SECRETAPPKEY") || strings.Contains(got, "error") {
				t.Fatalf("batch %d: %d %s; want both answers from the upstream that serves", i, code, got)
			}
		}
	}
	if v := gw.metric(t, `gateway_upstream_answers_total{upstream="a",class="throttled"}`); v < 1 {
		t.Fatalf("upstream a refused batch elements and was never counted throttled")
	}
}
