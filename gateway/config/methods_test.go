package config

import (
	"io"
	"strings"
	"testing"
)

// A per-method policy can be written at the top level, per network and per upstream;
// an upstream's methods: keeps its allow and deny lists beside the policies.
func TestMethodPoliciesFromFile(t *testing.T) {
	const top = `
methods:
  eth_getLogs: {timeout: 8s, retries: 0, hedge: false}
  class:cheap: {retries: 1}
upstreams:
  - name: a
    http: http://127.0.0.1:1
    methods:
      deny: [trace_]
      allow: [eth_, net_]
      eth_call: {timeout: 200ms}
      eth_getLogs: {retries: 1}
  - name: b
    http: http://127.0.0.1:2
    methods: {deny: [debug_]}
`
	const nets = `
methods:
  eth_getLogs: {timeout: 8s, hedge: false}
networks:
  - name: one
    chain_id: 1
    methods:
      eth_getLogs: {retries: 1}
      eth_call: {timeout: 2s}
    upstreams:
      - name: a
        http: http://127.0.0.1:1
        methods:
          eth_call: {hedge: false}
  - name: two
    chain_id: 2
    upstreams:
      - name: a
        http: http://127.0.0.1:1
`
	for _, tc := range []struct {
		name, file string
		network    map[string]string // network name -> its resolved network-level entries
		upstreams  map[string]string // network/upstream -> its own entries
		lists      map[string]string // network/upstream -> allow|deny
	}{
		{"top level", top,
			map[string]string{"default": "eth_getLogs{timeout=8s,retries=0,hedge=false}class:cheap{retries=1,}"},
			map[string]string{"default/a": "eth_call{timeout=200ms,}eth_getLogs{retries=1,}", "default/b": ""},
			map[string]string{"default/a": "eth_,net_|trace_", "default/b": "|debug_"}},
		{"networks over the top level", nets,
			map[string]string{"one": "eth_getLogs{timeout=8s,retries=1,hedge=false}eth_call{timeout=2s,}", "two": "eth_getLogs{timeout=8s,hedge=false}"},
			map[string]string{"one/a": "eth_call{hedge=false}", "two/a": ""},
			map[string]string{"one/a": "|", "two/a": "|"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, t.TempDir(), "gateway.yaml", tc.file)
			c, err := Load([]string{"-config", path}, func(string) string { return "" }, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range c.NetworkList() {
				nc := c.ForNetwork(n)
				got := ""
				for _, p := range nc.Methods {
					got += p.String()
				}
				if got != tc.network[n.Name] {
					t.Errorf("network %s: %s, want %s", n.Name, got, tc.network[n.Name])
				}
				for _, u := range nc.Upstreams {
					got := ""
					for _, p := range u.Methods {
						got += p.String()
					}
					if got != tc.upstreams[n.Name+"/"+u.Name] {
						t.Errorf("upstream %s/%s: %s, want %s", n.Name, u.Name, got, tc.upstreams[n.Name+"/"+u.Name])
					}
					if lists := strings.Join(u.Allow, ",") + "|" + strings.Join(u.Deny, ","); lists != tc.lists[n.Name+"/"+u.Name] {
						t.Errorf("upstream %s/%s: allow|deny %s, want %s", n.Name, u.Name, lists, tc.lists[n.Name+"/"+u.Name])
					}
				}
			}
		})
	}
}

// What cannot be honoured is refused at start, in one line that says where and why:
// a send asking to be retried or hedged at any level, an unknown field of a policy (by
// its line), a timeout past every call's deadline. A value never appears in the error.
func TestMethodPoliciesRefused(t *testing.T) {
	const up = "upstreams:\n  - name: a\n    http: http://127.0.0.1:1\n"
	for _, tc := range []struct{ name, file, want string }{
		{"send retried, top level", "methods:\n  eth_sendRawTransaction: {retries: 2}\n" + up, "never retried or hedged"},
		{"send hedged, upstream", up + "    methods:\n      eth_sendTransaction: {hedge: true}\n", "never retried or hedged"},
		{"send class retried", "methods:\n  class:send: {retries: 1}\n" + up, "class:send: a send is never retried"},
		{"send retried, network", "networks:\n  - name: one\n    chain_id: 1\n    methods:\n      eth_sendRawTransaction: {retries: 2}\n" +
			"    upstreams:\n      - name: a\n        http: http://127.0.0.1:1\n", "never retried or hedged"},
		{"unknown method retried", "methods:\n  eth_sendBundle: {retries: 1}\n" + up, "not a read"},
		{"unknown field, top level", "methods:\n  eth_call:\n    timeot: 1s\n" + up, "line 3"},
		{"unknown field, upstream", up + "    methods:\n      deny: [trace_]\n      eth_call: {timeout: 1s, retry: 1}\n", "line 6"},
		{"bad duration", "methods:\n  eth_call: {timeout: soon}\n" + up, "line 2: methods: \"eth_call\": not a duration"},
		{"zero timeout", "methods:\n  eth_call: {timeout: 0s}\n" + up, "timeout must be > 0"},
		{"timeout past the deadline", "methods:\n  eth_getLogs: {timeout: 30s}\n" + up, "-upstream-timeout"},
		{"upstream timeout past the deadline", up + "    methods:\n      eth_getLogs: {timeout: 1m}\n", `upstream "a": methods: eth_getLogs: timeout 1m0s is longer than -upstream-timeout`},
		{"too many retries", "methods:\n  eth_call: {retries: 9}\n" + up, "between 0 and 7"},
		{"a list for a policy", "methods:\n  eth_call: [1]\n" + up, "line 2: methods: \"eth_call\": want a policy"},
		{"allow not a list", up + "    methods:\n      allow: {eth_call: 1}\n", "line 5"},
		{"bad class", "methods:\n  class:writes: {retries: 0}\n" + up, "want class:cheap"},
		{"a secret for a method", "methods:\n  sk-live-123/abc: {retries: 1}\n" + up, "not a method name"},
		{"not a map", "methods: [eth_call]\n" + up, "want a map of method names"},
		{"policy in a key's methods", "keys:\n  entries:\n    - {name: k, sha256: " + strings.Repeat("a", 64) + ", plan: p, methods: {eth_call: {retries: 1}}}\nplans:\n  p: {}\n" + up, "unknown field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, t.TempDir(), "gateway.yaml", tc.file)
			_, err := Load([]string{"-config", path}, func(string) string { return "" }, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") ||
				strings.Contains(err.Error(), "sk-live") {
				t.Fatalf("got %v, want one line mentioning %q", err, tc.want)
			}
		})
	}
}
