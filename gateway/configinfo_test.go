package gateway

import (
	"bytes"
	"crypto/sha256"
	"strings"
	"testing"
)

// gateway_config_info carries the fingerprint of the running configuration, one series
// only: the file's at start, the new file's after a reload, and still the running one's
// after a refused reload, whose failure is counted.
func TestConfigInfoFollowsReloads(t *testing.T) {
	a := startFakeUpstream(t)
	b := startFakeUpstream(t)
	dir := t.TempDir()
	one := func(f *fakeUpstream, name string) string {
		return "upstreams:\n  - name: " + name + "\n    http: " + f.HTTPURL + "\n    ws: " + f.WSURL + "\n"
	}
	first := one(a, "a")
	path := writeFile(t, dir, "gateway.yaml", first)
	// The file is reloaded by hand (SIGHUP's path): the watcher would race the test.
	gw := startGateway(t, "-config", path, "-config-poll", "1h", "-cache=false")
	infos := func() []string {
		var buf bytes.Buffer
		gw.srv.reg.WritePrometheus(&buf)
		var out []string
		for _, line := range strings.Split(buf.String(), "\n") {
			if strings.HasPrefix(line, "gateway_config_info{") {
				out = append(out, line)
			}
		}
		return out
	}
	want := func(when, content string) string {
		t.Helper()
		hash := gw.srv.cfg.Fingerprint(sha256.Sum256([]byte(content)))
		if len(hash) != 12 {
			t.Fatalf("%s: fingerprint %q, want 12 hex digits", when, hash)
		}
		if got := infos(); len(got) != 1 || got[0] != `gateway_config_info{hash="`+hash+`"} 1` {
			t.Fatalf("%s: %q, want the one series with hash %s", when, got, hash)
		}
		return hash
	}
	started := want("at start", first)

	second := one(b, "b")
	writeFile(t, dir, "gateway.yaml", second)
	if err := gw.srv.ReloadConfig(); err != nil {
		t.Fatal(err)
	}
	if reloaded := want("after a reload", second); reloaded == started {
		t.Fatal("the fingerprint did not change with the file")
	}

	writeFile(t, dir, "gateway.yaml", "upstreams:\n  - name: c\n    htpp: nowhere\n")
	if err := gw.srv.ReloadConfig(); err == nil {
		t.Fatal("the bad file was accepted")
	}
	want("after a refused reload", second)
	if n := gw.metric(t, `gateway_config_reloads_total{result="refused"}`); n != 1 {
		t.Fatalf("refused reloads counted %v, want 1", n)
	}
}
