package chart

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// networksValues are two networks in the file format of gateway/README.md ("Networks"):
// mainnet (an alias, hosts, overrides, a fallback node) and sepolia, and a plan that
// may use mainnet only.
const networksValues = `
image: {repository: registry.example.com/infura-gateway}
config:
  networks:
    - name: mainnet
      chain_id: 1
      aliases: [eth]
      hosts: [mainnet.gw.example.com, "*.mainnet.gw.example.com"]
      default: true
      upstreams:
        - {name: infura-mainnet, http: "https://mainnet.infura.io/v3/${INFURA_PROJECT_ID}", ws: "wss://mainnet.infura.io/ws/v3/${INFURA_PROJECT_ID}"}
        - {name: node, http: "http://geth.ethereum:8545", ws: "ws://geth.ethereum:8546", tier: fallback}
      routing: {retries: 1}
      health: {window: 30s}
      deny_methods: [debug_, admin_]
    - name: sepolia
      chain_id: 11155111
      hosts: [sepolia.gw.example.com]
      upstreams:
        - {name: infura-sepolia, http: "https://sepolia.infura.io/v3/${INFURA_PROJECT_ID}"}
  plans:
    free: {requests_per_second: 10, networks: [mainnet]}
`

func networksFile(t *testing.T) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "networks.yaml")
	if err := os.WriteFile(f, []byte(networksValues), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// config.networks is rendered into the configuration file as the gateway reads it
// (snake_case keys, every per-network override kept, secrets left as ${VAR}), with
// CONFIG_FILE set and no upstream flags; the NetworkPolicy admits every network's
// upstream ports.
func TestNetworksConfigFile(t *testing.T) {
	nets := networksFile(t)
	if out, err := helm("lint", "--strict", chartDir, "--kube-version", kubeVersion, "-f", nets); err != nil {
		t.Fatalf("helm lint --strict refuses valid networks: %v\n%s", err, out)
	}
	r := render(t, "gw", "-f", nets, "--set", "networkPolicy.enabled=true")
	cm := r.get(t, "ConfigMap", "gw-infura-gateway-config").(*corev1.ConfigMap)
	var file struct {
		Networks []struct {
			Name        string           `json:"name"`
			ChainID     uint64           `json:"chain_id"`
			Aliases     []string         `json:"aliases"`
			Hosts       []string         `json:"hosts"`
			Default     bool             `json:"default"`
			Upstreams   []map[string]any `json:"upstreams"`
			Routing     map[string]any   `json:"routing"`
			Health      map[string]any   `json:"health"`
			DenyMethods []string         `json:"deny_methods"`
		} `json:"networks"`
		Plans map[string]struct {
			RequestsPerSecond float64  `json:"requests_per_second"`
			Networks          []string `json:"networks"`
		} `json:"plans"`
	}
	if err := yaml.UnmarshalStrict([]byte(cm.Data["config.yaml"]), &file); err != nil {
		t.Fatalf("config.yaml: %v\n%s", err, cm.Data["config.yaml"])
	}
	if len(file.Networks) != 2 {
		t.Fatalf("networks %+v, want mainnet and sepolia\n%s", file.Networks, cm.Data["config.yaml"])
	}
	m, s := file.Networks[0], file.Networks[1]
	if m.Name != "mainnet" || m.ChainID != 1 || !m.Default || strings.Join(m.Aliases, ",") != "eth" ||
		strings.Join(m.Hosts, ",") != "mainnet.gw.example.com,*.mainnet.gw.example.com" ||
		len(m.Upstreams) != 2 || m.Upstreams[1]["tier"] != "fallback" || m.Routing["retries"] != float64(1) ||
		m.Health["window"] != "30s" || strings.Join(m.DenyMethods, ",") != "debug_,admin_" {
		t.Errorf("mainnet not rendered as given: %+v", m)
	}
	if s.Name != "sepolia" || s.ChainID != 11155111 || s.Default || len(s.Upstreams) != 1 || s.Upstreams[0]["name"] != "infura-sepolia" {
		t.Errorf("sepolia not rendered as given: %+v", s)
	}
	if m.Upstreams[0]["http"] != "https://mainnet.infura.io/v3/${INFURA_PROJECT_ID}" {
		t.Errorf("secrets must stay ${VAR} references: %v", m.Upstreams[0])
	}
	if p := file.Plans["free"]; p.RequestsPerSecond != 10 || strings.Join(p.Networks, ",") != "mainnet" {
		t.Errorf("plan networks not rendered: %+v", file.Plans)
	}
	if strings.Contains(cm.Data["config.yaml"], "e+") {
		t.Errorf("a number (chain id) rendered in exponent form:\n%s", cm.Data["config.yaml"])
	}

	_, c := gateway(t, r, "gw-infura-gateway")
	env := envOf(c)
	if env["CONFIG_FILE"].Value != "/etc/infura-gateway/config.yaml" {
		t.Errorf("CONFIG_FILE = %q", env["CONFIG_FILE"].Value)
	}
	for _, k := range []string{"UPSTREAM_HTTP_URL", "UPSTREAM_WS_URL"} {
		if _, ok := env[k]; ok {
			t.Errorf("%s set next to config.networks, which replaces it", k)
		}
	}
	// The fallback node of mainnet listens on 8545/8546: the egress rules admit them.
	np := toYAML(t, r.get(t, "NetworkPolicy", "gw-infura-gateway"))
	for _, port := range []string{"port: 8545", "port: 8546"} {
		if !strings.Contains(np, port) {
			t.Errorf("NetworkPolicy does not admit a network's upstream (%s):\n%s", port, np)
		}
	}
}

// Networks the schema or the templates refuse, each with an error naming the problem:
// names and hosts are checked by the schema (helm lint --strict too), what spans
// entries (duplicates, defaults, plans) by the templates.
func TestNetworksRejected(t *testing.T) {
	nets := []string{"-f", networksFile(t)}
	cases := map[string]struct {
		args   []string
		want   string
		schema bool
	}{
		"upper-case name":       {[]string{"--set", "config.networks[1].name=Sepolia"}, "name", true},
		"name with a dot":       {[]string{"--set", "config.networks[1].name=sepolia.eth"}, "name", true},
		"route as a name":       {[]string{"--set", "config.networks[1].name=ws"}, "name", true},
		"route as an alias":     {[]string{"--set", "config.networks[0].aliases[0]=v3"}, "aliases", true},
		"no chain id":           {[]string{"--set", "config.networks[1].chain_id=null"}, "chain_id", true},
		"chain id zero":         {[]string{"--set", "config.networks[1].chain_id=0"}, "chain_id", true},
		"chain id not a number": {[]string{"--set-string", "config.networks[1].chain_id=sepolia"}, "chain_id", true},
		"host with a scheme":    {[]string{"--set", "config.networks[1].hosts[0]=https://sepolia.gw.example.com"}, "hosts", true},
		"host with a port":      {[]string{"--set", "config.networks[1].hosts[0]=sepolia.gw.example.com:443"}, "hosts", true},
		"wildcard inside":       {[]string{"--set", "config.networks[1].hosts[0]=sepolia.*.example.com"}, "hosts", true},
		"no upstreams":          {[]string{"--set-json", "config.networks[1].upstreams=[]"}, "upstreams", true},
		"unknown key":           {[]string{"--set", "config.networks[1].chainId=5"}, "chainId", true},
		"literal password":      {[]string{"--set", "config.networks[1].upstreams[0].password=hunter2"}, "password", true},
		"duplicate name":        {[]string{"--set", "config.networks[1].name=mainnet"}, `"mainnet" is already the name or an alias of network "mainnet"`, false},
		"name is an alias":      {[]string{"--set", "config.networks[1].name=eth"}, `"eth" is already the name or an alias of network "mainnet"`, false},
		"duplicate host":        {[]string{"--set", "config.networks[1].hosts[0]=MAINNET.gw.example.com"}, `host "mainnet.gw.example.com" is already a host of network "mainnet"`, false},
		"two defaults":          {[]string{"--set", "config.networks[1].default=true"}, "more than one network says default", false},
		"duplicate upstream":    {[]string{"--set", "config.networks[0].upstreams[1].name=infura-mainnet"}, `network "mainnet": the upstream name "infura-mainnet" is used twice`, false},
		"only fallbacks":        {[]string{"--set", "config.networks[1].upstreams[0].tier=fallback"}, `network "sepolia": every upstream is a fallback`, false},
		"plan of no network":    {[]string{"--set", "config.plans.free.networks[0]=holesky"}, `config.plans.free.networks: "holesky" is not a configured network`, false},
		"plan of an alias":      {[]string{"--set", "config.plans.free.networks[0]=eth"}, `"eth" is not a configured network`, false},
		"networks and upstreams": {[]string{"--set", "config.upstreams[0].name=x", "--set", "config.upstreams[0].http=http://n:8545"},
			"either config.networks or config.upstreams", false},
		"networks and url": {[]string{"--set", "config.upstreamHttpUrl=http://n:8545"}, "either config.networks or config.upstreamHttpUrl", false},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			args := append(append([]string{}, nets...), c.args...)
			out, err := helm(append([]string{"template", "gw", chartDir, "--kube-version", kubeVersion}, args...)...)
			if err == nil {
				t.Fatalf("helm template accepted %v:\n%.300s", c.args, out)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error does not mention %q: %v", c.want, err)
			}
			if c.schema {
				if out, err := helm(append([]string{"lint", "--strict", chartDir, "--kube-version", kubeVersion}, args...)...); err == nil {
					t.Errorf("helm lint --strict accepted %v:\n%s", c.args, out)
				}
			}
		})
	}
	// Without config.networks the one network is "default": a plan may name it only.
	out, err := helm(append([]string{"template", "gw", chartDir, "--kube-version", kubeVersion, "-f", filepath.Join(chartDir, "values-full.yaml")},
		"--set", "config.plans.free.networks[0]=mainnet")...)
	if err == nil || !strings.Contains(err.Error(), `the one network is "default"`) {
		t.Errorf("a plan naming a network without config.networks: %v\n%.300s", err, out)
	}
}

// The EKS profile with Infura-style hosts: one internet-facing NLB with one certificate
// (TLS ends there, the Host header picks the network), keys required; the manifests
// decode strictly, and NOTES list each network's prefix and hosts with the certificate
// and DNS they need.
func TestNetworksOnEKS(t *testing.T) {
	args := publicTLS("-f", networksFile(t), "-f", keysFile(t))
	r := render(t, "gw", append(args, monitoringAPIs...)...)
	svc := r.get(t, "Service", "gw-infura-gateway").(*corev1.Service)
	if svc.Annotations["service.beta.kubernetes.io/aws-load-balancer-ssl-cert"] != certARN ||
		svc.Annotations["service.beta.kubernetes.io/aws-load-balancer-scheme"] != "internet-facing" {
		t.Errorf("one internet-facing NLB with the certificate: %v", svc.Annotations)
	}
	cm := r.get(t, "ConfigMap", "gw-infura-gateway-config").(*corev1.ConfigMap)
	for _, w := range []string{"name: mainnet", "name: sepolia", "sepolia.gw.example.com", "name: alice"} {
		if !strings.Contains(cm.Data["config.yaml"], w) {
			t.Errorf("config.yaml lacks %q:\n%s", w, cm.Data["config.yaml"])
		}
	}
	notes := renderNotes(t, args...)
	for _, w := range []string{
		"mainnet (chain 1, default): $GATEWAY/mainnet/  hosts: mainnet.gw.example.com, *.mainnet.gw.example.com",
		"sepolia (chain 11155111): $GATEWAY/sepolia/  hosts: sepolia.gw.example.com",
		"must cover every host (SAN list or wildcard)", "gateway_dns_names",
	} {
		if !strings.Contains(notes, w) {
			t.Errorf("NOTES lack %q:\n%s", w, notes)
		}
	}
}
