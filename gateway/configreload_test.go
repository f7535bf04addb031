package gateway

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	// Written to a temporary name and renamed, as a ConfigMap update is: readers never
	// see half a file.
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// A reload changes the upstream list while clients stay connected; an invalid file is
// refused and the running configuration stays.
func TestConfigReload(t *testing.T) {
	a := startFakeUpstream(t)
	b := startFakeUpstream(t)
	dir := t.TempDir()
	one := func(f *fakeUpstream, name string) string {
		return "upstreams:\n  - name: " + name + "\n    http: " + f.HTTPURL + "\n    ws: " + f.WSURL + "\n"
	}
	path := writeFile(t, dir, "gateway.yaml", one(a, "a"))
	gw := startGateway(t, "-config", path, "-config-poll", "100ms", "-cache=false")
	gw.waitUpstreams(t)
	ws := dialWS(t, gw.WSURL, nil)
	call := `{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}`
	if r := decodeAnswer(t, ws.call(call)); r.Error != nil {
		t.Fatal(r.Error)
	}
	do(t, "POST", gw.URL+"/", call)
	if a.count("eth_chainId") != 2 || b.count("eth_chainId") != 0 {
		t.Fatalf("before the reload: a %d b %d", a.count("eth_chainId"), b.count("eth_chainId"))
	}

	writeFile(t, dir, "gateway.yaml", one(b, "b"))
	waitFor(t, "the reload", func() bool { return gw.metric(t, `gateway_config_reloads_total{result="ok"}`) == 1 })
	waitFor(t, "b's socket", func() bool {
		for _, u := range gw.srv.defaultNetwork().Router.Upstreams() {
			if u.Name() == "b" && u.Mux().Up() {
				return true
			}
		}
		return false
	})
	if r := decodeAnswer(t, ws.call(call)); r.Error != nil { // the same client connection
		t.Fatal(r.Error)
	}
	do(t, "POST", gw.URL+"/", call)
	if a.count("eth_chainId") != 2 || b.count("eth_chainId") != 2 {
		t.Fatalf("after the reload: a %d b %d", a.count("eth_chainId"), b.count("eth_chainId"))
	}

	writeFile(t, dir, "gateway.yaml", "upstreams:\n  - name: c\n    htpp: nowhere\n")
	waitFor(t, "the refusal", func() bool { return gw.metric(t, `gateway_config_reloads_total{result="refused"}`) == 1 })
	if !strings.Contains(gw.log.String(), "configuration not reloaded") || !strings.Contains(gw.log.String(), "line 3") {
		t.Fatalf("log: %s", gw.log.String())
	}
	do(t, "POST", gw.URL+"/", call)
	if b.count("eth_chainId") != 3 {
		t.Fatalf("after a refused reload, b got %d", b.count("eth_chainId"))
	}
	if err := gw.srv.ReloadConfig(); err == nil {
		t.Fatal("SIGHUP's reload accepted the bad file")
	}
}
