package gateway

import (
	"encoding/json"
	"io"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/infura-gateway/infura-gateway/gateway/config"
)

// What operators see stays on the admin listener: /status (upstream names, health,
// errors) answers 404 JSON on the public port, like any unknown route.
func TestStatusOnlyOnAdmin(t *testing.T) {
	fake := startFakeUpstream(t)
	gw := startGateway(t, fake.args()...)
	gw.waitUpstreams(t)
	for _, c := range []struct {
		name, method, url string
		want              int
	}{
		{"public", "GET", gw.URL + "/status", 404},
		{"admin", "GET", gw.AdminURL + "/status", 200},
		{"admin, wrong method", "POST", gw.AdminURL + "/metrics", 405},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, body := do(t, c.method, c.url, "")
			if code != c.want {
				t.Fatalf("GET %s: %d, want %d: %s", c.url, code, c.want, body)
			}
			if !json.Valid(body) {
				t.Fatalf("GET %s: not JSON: %s", c.url, body)
			}
			if c.want == 404 && strings.Contains(string(body), "default") {
				t.Fatalf("the public 404 names an upstream: %s", body)
			}
		})
	}
}

// The admin listener binds loopback unless told otherwise: /metrics, /status and the
// profiler are for the pod's own network namespace until the operator opens them.
func TestAdminListenDefaultsToLoopback(t *testing.T) {
	c, err := config.Load(nil, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	host, _, err := net.SplitHostPort(c.AdminListen)
	if err != nil {
		t.Fatal(err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		t.Fatalf("default admin address %q: want a loopback address", c.AdminListen)
	}
	if c.Pprof {
		t.Fatal("pprof on by default")
	}
	// The variable and the flag still open it (the Helm chart sets the pod address).
	c, err = config.Load(nil, func(k string) string { return map[string]string{"ADMIN_LISTEN": ":9191"}[k] }, io.Discard)
	if err != nil || c.AdminListen != ":9191" {
		t.Fatalf("ADMIN_LISTEN: %q %v", c.AdminListen, err)
	}
}

// The profiler is off unless asked for, and never serves the command line (flags,
// perhaps a secret among them); what it does not serve answers 404 JSON.
func TestPprofRoutes(t *testing.T) {
	fake := startFakeUpstream(t)
	off := startGateway(t, fake.args()...)
	on := startGateway(t, fake.args("-pprof")...)
	cases := []struct {
		name string
		gw   *testGateway
		path string
		want int
	}{
		{"off index", off, "/debug/pprof/", 404},
		{"off heap", off, "/debug/pprof/heap", 404},
		{"off cmdline", off, "/debug/pprof/cmdline", 404},
		{"off symbol", off, "/debug/pprof/symbol", 404},
		{"on index", on, "/debug/pprof/", 200},
		{"on heap", on, "/debug/pprof/heap", 200},
		{"on goroutine", on, "/debug/pprof/goroutine?debug=1", 200},
		{"on cmdline", on, "/debug/pprof/cmdline", 404},
		{"on cmdline query", on, "/debug/pprof/cmdline?x=1", 404},
		{"on unknown", on, "/debug/pprof/nosuchprofile", 404},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body := do(t, "GET", c.gw.AdminURL+c.path, "")
			if code != c.want {
				t.Fatalf("GET %s: %d, want %d", c.path, code, c.want)
			}
			if code == 404 && !json.Valid(body) {
				t.Fatalf("GET %s: a 404 that is not JSON: %q", c.path, body)
			}
			if strings.Contains(string(body), "-pprof") || strings.Contains(string(body), os.Args[0]) {
				t.Fatalf("GET %s shows the command line: %.200s", c.path, body)
			}
		})
	}
}
