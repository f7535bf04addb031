package config

import (
	"io"
	"log/slog"
	"strings"
	"testing"
)

// twoNetworks is the README's example of several networks.
const twoNetworks = `
networks:
  - name: mainnet
    chain_id: 1
    aliases: [eth]
    hosts: [mainnet.gw.example.com]
    upstreams:
      - name: infura-mainnet
        http: https://mainnet.infura.io/v3/${INFURA_PROJECT_ID}
        ws: wss://mainnet.infura.io/ws/v3/${INFURA_PROJECT_ID}
    routing: {retries: 3}
  - name: sepolia
    chain_id: 11155111
    hosts: ["*.sepolia.gw.example.com"]
    default: true
    deny_methods: [debug_]
    cache: {enabled: false, max_age: 3s}
    upstreams:
      - name: infura-sepolia
        http: https://sepolia.infura.io/v3/${INFURA_PROJECT_ID}
plans:
  free: {requests_per_second: 10, networks: [sepolia]}
`

func TestNetworksFromFile(t *testing.T) {
	path := writeFile(t, t.TempDir(), "gateway.yaml", twoNetworks)
	c, err := Load([]string{"-config", path}, func(k string) string { return map[string]string{"INFURA_PROJECT_ID": "p"}[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ns := c.NetworkList()
	if len(ns) != 2 || ns[0].Name != "mainnet" || ns[0].ChainID != 1 || ns[0].Default || !ns[1].Default ||
		ns[0].Aliases[0] != "eth" || ns[1].Hosts[0] != "*.sepolia.gw.example.com" {
		t.Fatalf("networks %+v", ns)
	}
	m, s := c.ForNetwork(ns[0]), c.ForNetwork(ns[1])
	if m.Retries != 3 || s.Retries != Defaults().Retries {
		t.Errorf("routing override: mainnet %d, sepolia %d", m.Retries, s.Retries)
	}
	if s.CacheEnabled || s.CacheMaxAge.Seconds() != 3 || !m.CacheEnabled || m.CacheMaxAge != Defaults().CacheMaxAge {
		t.Errorf("cache override: mainnet %v %v, sepolia %v %v", m.CacheEnabled, m.CacheMaxAge, s.CacheEnabled, s.CacheMaxAge)
	}
	if len(s.DenyMethods) != 1 || s.DenyMethods[0] != "debug_" || len(m.DenyMethods) != len(Defaults().DenyMethods) {
		t.Errorf("deny_methods: mainnet %v, sepolia %v", m.DenyMethods, s.DenyMethods)
	}
	if len(m.UpstreamSpecs()) != 1 || m.UpstreamSpecs()[0].Name != "infura-mainnet" || s.UpstreamSpecs()[0].Name != "infura-sepolia" {
		t.Errorf("upstreams: %v / %v", m.UpstreamSpecs(), s.UpstreamSpecs())
	}
	if got := c.Keys.Plans["free"].Networks; len(got) != 1 || got[0] != "sepolia" {
		t.Errorf("plan networks %v", got)
	}
}

// TestSingleNetworkUnchanged: without networks:, one network named default of the
// flags' (or the file's top-level) upstreams, as before.
func TestSingleNetworkUnchanged(t *testing.T) {
	c, err := Load([]string{"-upstream-http", "http://127.0.0.1:1"}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ns := c.NetworkList()
	if len(ns) != 1 || ns[0].Name != DefaultNetwork || !ns[0].Default || ns[0].ChainID != 0 || ns[0].Upstreams[0].HTTPURL != "http://127.0.0.1:1" {
		t.Fatalf("%+v", ns)
	}
}

// TestInfuraNetworks: the Infura shorthand names several networks, each with Infura's
// URLs and its chain id; the secret goes along, never in a URL.
func TestInfuraNetworks(t *testing.T) {
	env := map[string]string{"INFURA_PROJECT_ID": "proj", "INFURA_PROJECT_SECRET": "sec", "INFURA_NETWORKS": "mainnet, sepolia,base-mainnet"}
	c, err := Load(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ns := c.NetworkList()
	if len(ns) != 3 || ns[1].Name != "sepolia" || ns[1].ChainID != 11155111 || ns[2].ChainID != 8453 || !ns[0].Default {
		t.Fatalf("%+v", ns)
	}
	u := ns[1].Upstreams[0]
	if u.HTTPURL != "https://sepolia.infura.io/v3/proj" || u.WSURL != "wss://sepolia.infura.io/ws/v3/proj" || u.Password != "sec" {
		t.Fatalf("upstream %+v", u)
	}
	var log strings.Builder
	fmtLog(&log, c)
	if strings.Contains(log.String(), "proj") || strings.Contains(log.String(), "sec") {
		t.Fatalf("the log line shows a secret: %s", log.String())
	}
	if !strings.Contains(log.String(), "sepolia: infura-sepolia") {
		t.Fatalf("the log line does not name the networks: %s", log.String())
	}
}

func TestNetworksRefused(t *testing.T) {
	up := "    upstreams: [{name: a, http: http://x}]\n"
	for _, tc := range []struct{ name, file, want string }{
		{"no chain id", "networks:\n  - name: a\n" + up, "chain_id is required"},
		{"bad name", "networks:\n  - name: Main_Net\n    chain_id: 1\n" + up, "a name or alias is"},
		{"reserved", "networks:\n  - name: ws\n    chain_id: 1\n" + up, "gateway's own routes"},
		{"alias twice", "networks:\n  - name: a\n    chain_id: 1\n" + up + "  - name: b\n    chain_id: 2\n    aliases: [a]\n" + up, "already the name or an alias"},
		{"host twice", "networks:\n  - name: a\n    chain_id: 1\n    hosts: [x.io]\n" + up + "  - name: b\n    chain_id: 2\n    hosts: [X.io]\n" + up, "already a host"},
		{"bad host", "networks:\n  - name: a\n    chain_id: 1\n    hosts: [\"https://x.io\"]\n" + up, "want a host name"},
		{"host too long", "networks:\n  - name: a\n    chain_id: 1\n    hosts: [\"" + strings.Repeat("a.", 126) + "io\"]\n" + up, "longer than a DNS name"},
		{"two defaults", "networks:\n  - name: a\n    chain_id: 1\n    default: true\n" + up + "  - name: b\n    chain_id: 2\n    default: true\n" + up, "more than one network"},
		{"no upstreams", "networks:\n  - name: a\n    chain_id: 1\n", "no upstreams"},
		{"bad cache", "networks:\n  - name: a\n    chain_id: 1\n    cache: {size: 0}\n" + up, "cache: size"},
		{"both lists", "upstreams: [{name: a, http: http://x}]\nnetworks:\n  - name: a\n    chain_id: 1\n" + up, "put the upstreams under their network"},
		{"bad upstream", "networks:\n  - name: a\n    chain_id: 1\n    upstreams: [{name: a, http: ftp://x}]\n", `network 1 ("a"): upstream 1`},
		{"plan of unknown network", "networks:\n  - name: a\n    chain_id: 1\n" + up + "plans:\n  p: {networks: [b]}\n", `"b" is not a configured network`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, t.TempDir(), "g.yaml", tc.file)
			_, err := Load([]string{"-config", path}, func(string) string { return "" }, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v, want an error with %q", err, tc.want)
			}
		})
	}
	if _, err := Load([]string{"-infura-project-id", "p", "-infura-networks", "mainnet,nowhere"}, func(string) string { return "" }, io.Discard); err == nil ||
		!strings.Contains(err.Error(), `"nowhere" is not an Infura network`) {
		t.Fatalf("unknown Infura network: %v", err)
	}
}

// fmtLog writes the configuration's start-up log line.
func fmtLog(w io.Writer, c Config) {
	slog.New(slog.NewJSONHandler(w, nil)).Info("serving", "config", c)
}
