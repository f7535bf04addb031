package config

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/infura-gateway/infura-gateway/upstream"
)

// writeFile writes content to dir/name through a temporary name and a rename, as a
// ConfigMap update does: readers never see half a file.
func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p+".tmp", []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(p+".tmp", p); err != nil {
		t.Fatal(err)
	}
	return p
}

// The README's three-upstream example: Infura primary, another provider, a fallback node.
const threeUpstreams = `
env_allow: [ALCHEMY_KEY]
upstreams:
  - name: infura
    http: https://mainnet.infura.io/v3/${INFURA_PROJECT_ID}
    ws: wss://mainnet.infura.io/ws/v3/${INFURA_PROJECT_ID}
    password: ${INFURA_PROJECT_SECRET}
    tier: primary
    archive: true
  - name: alchemy
    http: https://eth-mainnet.g.alchemy.com/v2/${ALCHEMY_KEY}
    ws: wss://eth-mainnet.g.alchemy.com/v2/${ALCHEMY_KEY}
    tier: primary
    weight: 2
    max_in_flight: 256
    methods:
      deny: [trace_, eth_sendRawTransaction]
  - name: own-node
    http: http://10.0.12.7:8545
    tier: fallback
routing:
  retries: 2
  hedge_quantile: 0.9
health:
  max_lag: 3
  ban_min: 10s
`

func TestConfigFileThreeUpstreams(t *testing.T) {
	env := map[string]string{"INFURA_PROJECT_ID": "proj", "INFURA_PROJECT_SECRET": "sec", "ALCHEMY_KEY": "alk"}
	path := writeFile(t, t.TempDir(), "gateway.yaml", threeUpstreams)
	c, err := Load([]string{"-config", path, "-retries", "5"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	specs := c.UpstreamSpecs()
	if len(specs) != 3 {
		t.Fatalf("%d upstreams", len(specs))
	}
	want := []upstream.Spec{
		{Name: "infura", HTTPURL: "https://mainnet.infura.io/v3/proj", WSURL: "wss://mainnet.infura.io/ws/v3/proj",
			Password: "sec", Tier: upstream.TierPrimary, Archive: true},
		{Name: "alchemy", HTTPURL: "https://eth-mainnet.g.alchemy.com/v2/alk", WSURL: "wss://eth-mainnet.g.alchemy.com/v2/alk",
			Tier: upstream.TierPrimary, Weight: 2, MaxInFlight: 256, Deny: []string{"trace_", "eth_sendRawTransaction"}},
		{Name: "own-node", HTTPURL: "http://10.0.12.7:8545", Tier: upstream.TierFallback},
	}
	for i, w := range want {
		g := specs[i]
		if g.Name != w.Name || g.HTTPURL != w.HTTPURL || g.WSURL != w.WSURL || g.Password != w.Password ||
			g.Tier != w.Tier || g.Weight != w.Weight || g.MaxInFlight != w.MaxInFlight || g.Archive != w.Archive ||
			strings.Join(g.Deny, ",") != strings.Join(w.Deny, ",") {
			t.Errorf("upstream %d: %+v, want %+v", i, g, w)
		}
	}
	// The file's settings win over the flags; what it leaves out keeps the flag value.
	if c.Retries != 2 || c.HedgeQuantile != 0.9 || c.MaxLag != 3 || c.BanMin.String() != "10s" || c.BanMax != Defaults().BanMax {
		t.Errorf("settings: retries %d hedge %v lag %d ban %v/%v", c.Retries, c.HedgeQuantile, c.MaxLag, c.BanMin, c.BanMax)
	}
}

// A bad file is refused with one line that says where, and never a value from it.
func TestConfigFileRefusals(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"GATEWAY_KEY": "s3cretKEY"}
	cases := []struct{ name, file, want string }{
		{"unknown key", "upstreams:\n  - name: a\n    htpp: http://x\n", "line 3"},
		{"unknown top-level key", "upstream:\n  - name: a\n", "line 1"},
		{"duplicate key", "upstreams:\n  - name: a\n    http: http://x\n    http: http://y\n", "duplicate"},
		{"missing variable", "upstreams:\n  - name: a\n    http: http://x/${GATEWAY_NOT_SET}\n", "GATEWAY_NOT_SET is not set"},
		{"variable not allowed", "upstreams:\n  - name: a\n    http: http://x/${KEY}\n", "${KEY} is not allowed"},
		{"no upstreams", "upstreams: []\n", "no upstreams"},
		{"bad name", "upstreams:\n  - name: A B\n    http: http://x\n", "name must be"},
		{"twice", "upstreams:\n  - name: a\n    http: http://x\n  - name: a\n    http: http://y\n", "used twice"},
		{"bad tier", "upstreams:\n  - name: a\n    http: http://x\n    tier: backup\n", "tier must be"},
		{"only fallbacks", "upstreams:\n  - name: a\n    http: http://x\n    tier: fallback\n", "at least one primary"},
		{"bad scheme", "upstreams:\n  - name: a\n    http: ftp://x/${GATEWAY_KEY}\n", "scheme must be http or https"},
		{"bad ws", "upstreams:\n  - name: a\n    http: http://x\n    ws: http://x/${GATEWAY_KEY}\n", "scheme must be ws or wss"},
		{"bad method", "upstreams:\n  - name: a\n    http: http://x\n    methods: {deny: [\"a-b\"]}\n", "method \"a-b\""},
		{"bad duration", "upstreams:\n  - name: a\n    http: http://x\nhealth:\n  window: soon\n", "not a duration"},
		{"bad setting", "upstreams:\n  - name: a\n    http: http://x\nrouting:\n  retries: 99\n", "-retries"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeFile(t, dir, strings.ReplaceAll(c.name, " ", "_")+".yaml", c.file)
			_, err := Load([]string{"-config", path}, func(k string) string { return env[k] }, io.Discard)
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") ||
				strings.Contains(err.Error(), "s3cretKEY") {
				t.Fatalf("got %v, want one line mentioning %q", err, c.want)
			}
		})
	}
	if _, err := Load([]string{"-config", filepath.Join(dir, "missing.yaml")}, func(string) string { return "" }, io.Discard); err == nil ||
		!strings.Contains(err.Error(), "no such file") {
		t.Fatalf("missing file: %v", err)
	}
}

// TestDocumentedConfigFilesLoad: the YAML examples of the READMEs and the file of
// ./task dev:replicas are valid configuration files.
func TestDocumentedConfigFilesLoad(t *testing.T) {
	env := map[string]string{"INFURA_PROJECT_ID": "proj", "INFURA_PROJECT_SECRET": "sec", "ALCHEMY_KEY": "alk"}
	var files []string
	for _, readme := range []string{"../../README.md", "../README.md"} {
		b, err := os.ReadFile(readme)
		if err != nil {
			t.Fatal(err)
		}
		for _, block := range strings.Split(string(b), "```yaml\n")[1:] {
			files = append(files, block[:strings.Index(block, "```")])
		}
	}
	if len(files) < 2 {
		t.Fatalf("found %d YAML examples in the READMEs, want at least 2", len(files))
	}
	b, err := os.ReadFile("../testdata/replicas.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, string(b))
	for i, f := range files {
		path := writeFile(t, t.TempDir(), "gateway.yaml", f)
		if _, err := Load([]string{"-config", path}, func(k string) string { return env[k] }, io.Discard); err != nil {
			t.Errorf("example %d: %v\n%s", i+1, err, f)
		}
	}
}

// FuzzConfigFile: any file content is read without a panic, and an error never quotes
// a value from the file (it may hold keys): the marker below, placed as a value in the
// seeds, must not appear in any error.
func FuzzConfigFile(f *testing.F) {
	const marker = "S3CRET-MARKER-VALUE"
	f.Add([]byte(threeUpstreams))
	f.Add([]byte("upstreams:\n  - name: a\n    http: http://x/" + marker + "\n    bogus: " + marker + "\n"))
	f.Add([]byte("keys:\n  entries:\n    - {name: k, sha256: " + marker + ", plan: p}\nplans:\n  p: {}\n"))
	f.Add([]byte("plans:\n  p: {requests_per_second: " + marker + "}\nanonymous: {plan: p}\n"))
	f.Add([]byte("upstreams: [" + marker))
	f.Add([]byte("methods:\n  eth_getLogs: {timeout: 5s, retries: 0, hedge: false}\n  " + marker + ": {retries: 1}\n" +
		"upstreams:\n  - name: a\n    http: http://x\n    methods:\n      deny: [trace_]\n      eth_call: {timeout: " + marker + "}\n"))
	f.Add([]byte("networks:\n  - name: n\n    chain_id: 1\n    methods: {class:logs: {hedge: " + marker + "}}\n    upstreams: [{name: a, http: http://x}]\n"))
	dir := f.TempDir()
	env := func(string) string { return "v" }
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<16 {
			return
		}
		path := filepath.Join(dir, "fuzz.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		_, _, err := readConfigFile(path, env)
		if err != nil && strings.Contains(string(data), marker) && strings.Contains(err.Error(), marker) {
			t.Fatalf("the error quotes a value of the file: %v", err)
		}
	})
}
