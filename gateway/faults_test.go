package gateway

import (
	"context"
	"encoding/base64"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
)

func TestBadInput(t *testing.T) {
	fake := startFakeUpstream(t)
	gw := startGateway(t, "-upstream-http", fake.HTTPURL, "-upstream-ws", "off", "-max-request-body", "2048")
	cases := []struct {
		name, method, path, body string
		status, code             int
		msg                      string
	}{
		{"malformed JSON", "POST", "/blockbynumber", `{"block":`, 400, -32700, "parse error"},
		{"empty body", "POST", "/blockbynumber", ``, 400, -32700, "empty body"},
		{"missing block", "POST", "/blockbynumber", `{"txdetails":true}`, 400, -32602, `missing \"block\"`},
		{"banana", "POST", "/blockbynumber", `{"block":"banana"}`, 400, -32602, `got \"banana\"`},
		{"maybe", "POST", "/blockbynumber", `{"block":"latest","txdetails":"maybe"}`, 400, -32602, `\"txdetails\"`},
		{"missing index", "POST", "/txbyblockandindex", `{"block":"latest"}`, 400, -32602, `missing \"index\"`},
		{"bad index", "POST", "/txbyblockandindex", `{"block":"latest","index":"zz"}`, 400, -32602, `\"index\"`},
		{"ws route validates too", "POST", "/ws/blockbynumber", `{"block":"banana"}`, 400, -32602, `got \"banana\"`},
		{"wrong method", "GET", "/blockbynumber", ``, 405, -32600, "not allowed"},
		{"wrong method on GET route", "POST", "/blocknumber", `{}`, 405, -32600, "not allowed"},
		{"unknown route", "GET", "/nope", ``, 404, -32601, "no such route"},
		{"body over the limit", "POST", "/blockbynumber", `{"block":"latest","pad":"` + strings.Repeat("x", 4096) + `"}`, 413, -32005, "too large"},
		{"rpc body over the limit", "POST", "/", `{"pad":"` + strings.Repeat("x", 4096) + `"}`, 413, -32005, "too large"},
		{"ws disabled", "GET", "/ws/blocknumber", ``, 503, -32000, "websocket upstream disabled"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body := do(t, c.method, gw.URL+c.path, c.body)
			want := `"code":` + strconv.Itoa(c.code)
			if code != c.status || !strings.Contains(string(body), want) || !strings.Contains(string(body), c.msg) ||
				!strings.HasPrefix(string(body), `{"jsonrpc":"2.0"`) {
				t.Fatalf("got %d %s\nwant %d with %s and %q", code, body, c.status, want, c.msg)
			}
		})
	}
	// After all of that the gateway still serves everyone.
	if code, body := do(t, "GET", gw.URL+"/blocknumber", ""); code != 200 || string(body) != `{"jsonrpc":"2.0","id":1,"result":"0x10"}` {
		t.Fatalf("after bad input: %d %s", code, body)
	}
}

func TestUpstreamDownIs502Fast(t *testing.T) {
	port := testnode.FreePort(t) // nothing listens there
	gw := startGateway(t, "-upstream-http", "http://127.0.0.1:"+strconv.Itoa(port), "-upstream-ws", "off", "-upstream-timeout", "5s")
	for _, path := range []string{"/blocknumber", "/gasprice"} {
		start := time.Now()
		code, body := do(t, "GET", gw.URL+path, "")
		if code != 502 || !strings.Contains(string(body), "upstream unavailable") {
			t.Fatalf("%s: %d %s", path, code, body)
		}
		if d := time.Since(start); d > 4*time.Second {
			t.Fatalf("%s: took %v to report an unreachable upstream", path, d)
		}
	}
	code, body := do(t, "POST", gw.URL+"/", `{"jsonrpc":"2.0","id":"q","method":"eth_chainId"}`)
	if code != 502 || !strings.Contains(string(body), `"id":"q"`) {
		t.Fatalf("rpc: %d %s", code, body)
	}
	// The pod itself can serve: it stays ready (TestReadinessIgnoresTheUpstream); the
	// upstream shows as down where operators look.
	if code, _ := do(t, "GET", gw.URL+"/readyz", ""); code != 200 {
		t.Fatalf("readyz with the upstream down: %d", code)
	}
	if gw.metric(t, `gateway_upstream_up{upstream="default",transport="http"}`) != 0 {
		t.Fatal("gateway_upstream_up says the upstream is up")
	}
}

func TestUpstreamStallIs504(t *testing.T) {
	fake := startFakeUpstream(t, fakeRespond(func(fakeRequest) fakeAnswer { return fakeAnswer{Stall: true} }))
	gw := startGateway(t, "-upstream-http", fake.HTTPURL, "-upstream-ws", "off", "-upstream-timeout", "300ms")
	start := time.Now()
	code, body := do(t, "GET", gw.URL+"/blocknumber", "")
	if code != 504 || !strings.Contains(string(body), "timed out") {
		t.Fatalf("%d %s", code, body)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("a 300ms upstream timeout took %v", d)
	}
}

func TestResponseLargerThanMaximum(t *testing.T) {
	big := `{"jsonrpc":"2.0","id":1,"result":"0x` + strings.Repeat("ab", 4096) + `"}`
	fake := startFakeUpstream(t, fakeRespond(func(fakeRequest) fakeAnswer { return fakeAnswer{Body: big} }))
	gw := startGateway(t, "-upstream-http", fake.HTTPURL, "-upstream-ws", "off", "-max-response-body", "2048")
	code, body := do(t, "POST", gw.URL+"/blockbynumber", `{"block":"latest"}`)
	if code != 502 || !strings.Contains(string(body), "larger than the configured maximum") {
		t.Fatalf("%d %s", code, body)
	}
}

// With the upstream's websocket down (nothing listens there), the /ws/ routes answer
// as HTTP does when its upstream is unreachable: 502 "upstream unavailable", not 503 "no
// upstream available", which reads as a limit or a missing configuration.
func TestWSUpstreamDownIsUnreachable(t *testing.T) {
	fake := startFakeUpstream(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close() // a port just freed: dials are refused
	gw := startGateway(t, "-upstream-http", fake.HTTPURL, "-upstream-ws", "ws://"+dead)
	code, body := do(t, "GET", gw.URL+"/ws/blocknumber", "")
	if code != 502 || !strings.Contains(string(body), "upstream unavailable") || !strings.Contains(string(body), "-32000") {
		t.Fatalf("/ws/blocknumber with the websocket down: %d %s", code, body)
	}
	if code, body := do(t, "GET", gw.URL+"/blocknumber", ""); code != 200 {
		t.Fatalf("/blocknumber over HTTP: %d %s", code, body)
	}
}

func TestUpstreamStatusMapping(t *testing.T) {
	cases := []struct {
		upstream, want int
		msg            string
	}{
		{429, 429, "rate limit"},
		{401, 502, "credentials"},
		{500, 502, "unavailable"},
		{404, 502, "invalid response"},
	}
	for _, c := range cases {
		fake := startFakeUpstream(t, fakeRespond(func(fakeRequest) fakeAnswer {
			return fakeAnswer{Status: c.upstream, Body: "upstream says no"}
		}))
		gw := startGateway(t, "-upstream-http", fake.HTTPURL, "-upstream-ws", "off")
		code, body := do(t, "GET", gw.URL+"/gasprice", "")
		if code != c.want || !strings.Contains(string(body), c.msg) || strings.Contains(string(body), "upstream says no") {
			t.Errorf("upstream %d: got %d %s", c.upstream, code, body)
		}
	}
}

// The project secret and every key carried in an upstream URL stay out of answers,
// metrics and logs. The secret is Infura's: with the flags it goes only to Infura over
// TLS, so an upstream elsewhere (here a plain-HTTP host) never sees it and the log says
// why; an upstream the configuration file gives it to gets it as basic auth.
func TestSecretNeverLeaks(t *testing.T) {
	const secret = "s3cr3t-PROJECT-secret"
	const project = "0123456789abcdef0123456789abcdef"
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(":"+secret))
	cases := []struct {
		name     string
		file     bool   // the upstream comes from a configuration file whose password is the secret
		wantAuth string // the Authorization the upstream sees
		wantLog  string
	}{
		{"flags, not Infura", false, "", "INFURA_PROJECT_SECRET is set but not sent"},
		{"file, password given", true, basic, "/v3/redacted"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fake := startFakeUpstream(t, fakeRespond(func(fakeRequest) fakeAnswer { return fakeAnswer{Status: 401} }))
			env := map[string]string{"INFURA_PROJECT_ID": project, "INFURA_PROJECT_SECRET": secret}
			var args []string
			if c.file {
				path := filepath.Join(t.TempDir(), "gateway.yaml")
				yaml := "upstreams:\n  - name: a\n    http: " + fake.HTTPURL + "/v3/${INFURA_PROJECT_ID}\n    password: ${INFURA_PROJECT_SECRET}\n"
				if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
					t.Fatal(err)
				}
				args = []string{"-config", path}
			} else {
				env["UPSTREAM_HTTP_URL"] = fake.HTTPURL + "/v3/" + project
				env["UPSTREAM_WS_URL"] = "off"
			}
			gw := startGatewayEnv(t, env, args...)
			code, body := do(t, "GET", gw.URL+"/blocknumber", "")
			if code != 502 {
				t.Fatalf("rejected call: %d %s", code, body)
			}
			if fake.lastAuth() != c.wantAuth {
				t.Fatalf("Authorization = %q, want %q", fake.lastAuth(), c.wantAuth)
			}
			_, metricsText := do(t, "GET", gw.AdminURL+"/metrics", "")
			for name, text := range map[string]string{"response": string(body), "metrics": string(metricsText), "logs": gw.log.String()} {
				if strings.Contains(text, secret) {
					t.Errorf("the project secret appears in %s", name)
				}
				if strings.Contains(text, project) {
					t.Errorf("the project ID appears in %s", name)
				}
			}
			if !strings.Contains(gw.log.String(), c.wantLog) {
				t.Errorf("logs do not say %q: %s", c.wantLog, gw.log.String())
			}
		})
	}
}

func TestShutdownDrains(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	fake := startFakeUpstream(t, fakeRespond(func(r fakeRequest) fakeAnswer {
		if r.Method == "eth_gasPrice" {
			arrived <- struct{}{}
			<-release
		}
		return fakeAnswer{Result: `"0x2"`}
	}))
	gw := startGateway(t, "-upstream-http", fake.HTTPURL, "-upstream-ws", "off", "-cache=false")
	waitReady(t, gw)
	inflight := make(chan int, 1)
	go func() { code, _, _ := tryDo("GET", gw.URL+"/gasprice", ""); inflight <- code }()
	<-arrived
	done := make(chan error, 1)
	go func() { done <- gw.srv.Shutdown(context.Background()) }()
	for !gw.srv.probe.Draining() {
		runtime.Gosched()
	}
	if gw.srv.Ready() {
		t.Fatal("still ready while draining")
	}
	close(release)
	if code := <-inflight; code != 200 {
		t.Fatalf("in-flight request during shutdown got %d", code)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func TestRequestLogging(t *testing.T) {
	fake := startFakeUpstream(t)
	gw := startGateway(t, "-upstream-http", fake.HTTPURL, "-upstream-ws", "off", "-log-requests")
	do(t, "GET", gw.URL+"/gasprice", "")
	do(t, "GET", gw.URL+"/nope", "")
	logs := gw.log.String()
	for _, want := range []string{`"route":"gasprice"`, `"status":200`, `"route":"other"`, `"status":404`, `"remote":"127.0.0.1"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("request log lacks %s:\n%s", want, logs)
		}
	}
	quiet := startGateway(t, "-upstream-http", fake.HTTPURL, "-upstream-ws", "off")
	do(t, "GET", quiet.URL+"/gasprice", "")
	if strings.Contains(quiet.log.String(), `"msg":"request"`) {
		t.Error("requests logged with -log-requests off")
	}
}
