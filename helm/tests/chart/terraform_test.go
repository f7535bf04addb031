package chart

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// The values Terraform gives the chart (terraform/modules/gateway-values, a module
// without providers, so it runs offline) render into valid objects with values-eks.yaml,
// with the shapes the schema wants: booleans stay booleans, tags stay strings.
func TestTerraformValuesRender(t *testing.T) {
	tf, err := exec.LookPath("terraform")
	if err != nil {
		t.Fatal("terraform is needed (as for ./task lint:tf): ", err)
	}
	module, err := filepath.Abs("../../../terraform/modules/gateway-values")
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		inputs string
		check  func(t *testing.T, r rendered)
	}{
		"upstream list, Redis, egress ports, internet-facing with TLS and keys": {`
  install_monitoring   = true
  kubernetes_version   = "1.33"
  vpc_cidr             = "10.42.0.0/16"
  scheme               = "internet-facing"
  certificate_arn      = "arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d-1111-2222-3333-444455556666"
  plans                = { free = { requests_per_second = 10, burst = 20 } }
  keys                 = [{ name = "alice", sha256 = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae", plan = "free" }]
  egress_ports         = [8545, 8546]
  upstreams = [
    { name = "infura", http = "https://mainnet.infura.io/v3/$${INFURA_PROJECT_ID}", ws = "wss://mainnet.infura.io/ws/v3/$${INFURA_PROJECT_ID}", password = "$${INFURA_PROJECT_SECRET}", weight = 2, methods = { deny = ["trace_"] } },
    { name = "alchemy", http = "https://eth-mainnet.g.alchemy.com/v2/$${ALCHEMY_KEY}", tier = "fallback", archive = true },
  ]
  upstream_secret_name = "infura-gateway-upstreams"
  upstream_env_allow   = ["ALCHEMY_KEY"]
  redis_address        = "master.gw.abc123.euw1.cache.amazonaws.com:6379"
  redis_secret_name    = "infura-gateway-redis"`,
			func(t *testing.T, r rendered) {
				_, c := gateway(t, r, "infura-gateway")
				env := envOf(c)
				svc := r.get(t, "Service", "infura-gateway").(*corev1.Service)
				a := svc.Annotations
				if a[annPrefix+"scheme"] != "internet-facing" || a[annPrefix+"ssl-cert"] == "" || a[annPrefix+"ssl-ports"] != "443" ||
					len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 443 {
					t.Errorf("internet-facing NLB: want TLS on 443 only: %v %+v", a, svc.Spec.Ports)
				}
				file := r.get(t, "ConfigMap", "infura-gateway-config").(*corev1.ConfigMap).Data["config.yaml"]
				if !strings.Contains(file, "required: true") || !strings.Contains(file, "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae") {
					t.Errorf("keys not in the configuration file:\n%s", file)
				}
				if env["CONFIG_FILE"].Value == "" || env["REDIS_ADDR"].Value != "master.gw.abc123.euw1.cache.amazonaws.com:6379" ||
					env["REDIS_TLS"].Value != "true" || env["REDIS_PASSWORD"].ValueFrom.SecretKeyRef.Name != "infura-gateway-redis" {
					t.Errorf("configuration file and Redis env: %v", env)
				}
				if len(c.EnvFrom) != 1 || c.EnvFrom[0].SecretRef.Name != "infura-gateway-upstreams" {
					t.Errorf("envFrom %+v", c.EnvFrom)
				}
				// The Secret's variables are the ones the file may read (env_allow).
				if file := toYAML(t, r.get(t, "ConfigMap", "infura-gateway-config")); !strings.Contains(file, "env_allow:") ||
					!strings.Contains(file, "- ALCHEMY_KEY") {
					t.Errorf("the configuration file lacks env_allow [ALCHEMY_KEY]:\n%s", file)
				}
				np := toYAML(t, r.get(t, "NetworkPolicy", "infura-gateway"))
				for _, p := range []string{"port: 8545", "port: 8546", "port: 6379", "cidr: 10.42.0.0/16"} {
					if !strings.Contains(np, p) {
						t.Errorf("NetworkPolicy lacks %q:\n%s", p, np)
					}
				}
				if !r.has("ServiceMonitor", "infura-gateway") || !r.has("ConfigMap", "infura-gateway-dashboard") {
					t.Error("install_monitoring = true renders no ServiceMonitor or dashboard")
				}
			}},
		// gateway_networks: Infura-style hosts on one internet-facing NLB, a plan of one network.
		"networks with hosts, a plan of one network": {`
  install_monitoring   = false
  kubernetes_version   = "1.33"
  vpc_cidr             = "10.42.0.0/16"
  scheme               = "internet-facing"
  certificate_arn      = "arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d-1111-2222-3333-444455556666"
  plans                = { free = { requests_per_second = 10, networks = ["sepolia"] } }
  keys                 = [{ name = "alice", sha256 = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae", plan = "free" }]
  networks = [
    { name = "mainnet", chain_id = 1, aliases = ["eth"], hosts = ["mainnet.gw.example.com"], default = true,
      upstreams = [{ name = "infura", http = "https://mainnet.infura.io/v3/$${INFURA_KEY}", ws = "wss://mainnet.infura.io/ws/v3/$${INFURA_KEY}" }] },
    { name = "sepolia", chain_id = 11155111, hosts = ["sepolia.gw.example.com"], deny_methods = ["debug_"],
      upstreams = [{ name = "infura", http = "https://sepolia.infura.io/v3/$${INFURA_KEY}" }, { name = "node", http = "http://geth-sepolia:8545", tier = "fallback" }] },
  ]
  upstream_secret_name = "infura-gateway-upstreams"
  upstream_env_allow   = ["INFURA_KEY"]`,
			func(t *testing.T, r rendered) {
				_, c := gateway(t, r, "infura-gateway")
				var file struct {
					Networks []struct {
						Name        string           `json:"name"`
						ChainID     uint64           `json:"chain_id"`
						Aliases     []string         `json:"aliases"`
						Hosts       []string         `json:"hosts"`
						Default     bool             `json:"default"`
						DenyMethods []string         `json:"deny_methods"`
						Upstreams   []map[string]any `json:"upstreams"`
					} `json:"networks"`
					Plans    map[string]map[string]any `json:"plans"`
					Keys     map[string]any            `json:"keys"`
					EnvAllow []string                  `json:"env_allow"`
				}
				raw := r.get(t, "ConfigMap", "infura-gateway-config").(*corev1.ConfigMap).Data["config.yaml"]
				if err := yaml.UnmarshalStrict([]byte(raw), &file); err != nil {
					t.Fatalf("config.yaml: %v\n%s", err, raw)
				}
				if len(file.Networks) != 2 || file.Networks[0].Name != "mainnet" || file.Networks[0].ChainID != 1 || !file.Networks[0].Default ||
					file.Networks[1].ChainID != 11155111 || strings.Join(file.Networks[1].Hosts, ",") != "sepolia.gw.example.com" ||
					strings.Join(file.Networks[1].DenyMethods, ",") != "debug_" || len(file.Networks[1].Upstreams) != 2 ||
					file.Networks[1].Upstreams[1]["tier"] != "fallback" || file.Networks[0].Upstreams[0]["http"] != "https://mainnet.infura.io/v3/${INFURA_KEY}" {
					t.Errorf("networks not rendered as given:\n%s", raw)
				}
				if _, ok := file.Networks[1].Upstreams[0]["ws"]; ok {
					t.Errorf("a null attribute rendered: %v", file.Networks[1].Upstreams[0])
				}
				if fmt.Sprint(file.Plans["free"]["networks"]) != "[sepolia]" || strings.Join(file.EnvAllow, ",") != "INFURA_KEY" {
					t.Errorf("plan networks or env_allow:\n%s", raw)
				}
				if len(c.EnvFrom) != 1 || c.EnvFrom[0].SecretRef.Name != "infura-gateway-upstreams" {
					t.Errorf("envFrom %+v", c.EnvFrom)
				}
				if a := r.get(t, "Service", "infura-gateway").(*corev1.Service).Annotations; a[annPrefix+"ssl-cert"] == "" {
					t.Errorf("hosts need the NLB's TLS listener: %v", a)
				}
				np := toYAML(t, r.get(t, "NetworkPolicy", "infura-gateway"))
				if !strings.Contains(np, "port: 8545") {
					t.Errorf("NetworkPolicy does not admit sepolia's node on 8545:\n%s", np)
				}
			}},
		"one node, websockets off, no Redis, no monitoring, internal": {`
  install_monitoring = false
  kubernetes_version = "1.33"
  vpc_cidr           = "10.42.0.0/16"
  upstream_http_url  = "http://geth.ethereum.svc.cluster.local:8545"
  upstream_ws_url    = "off"`,
			func(t *testing.T, r rendered) {
				_, c := gateway(t, r, "infura-gateway")
				env := envOf(c)
				if a := r.get(t, "Service", "infura-gateway").(*corev1.Service).Annotations; a[annPrefix+"scheme"] != "internal" || a[annPrefix+"ssl-cert"] != "" {
					t.Errorf("default scheme: want internal, plaintext: %v", a)
				}
				if env["UPSTREAM_HTTP_URL"].Value != "http://geth.ethereum.svc.cluster.local:8545" || env["UPSTREAM_WS_URL"].Value != "off" {
					t.Errorf("single upstream env: %v", env)
				}
				if _, ok := env["REDIS_ADDR"]; ok {
					t.Error("REDIS_ADDR without Redis")
				}
				if r.has("ServiceMonitor", "infura-gateway") {
					t.Error("install_monitoring = false renders a ServiceMonitor")
				}
				// No Prometheus adapter without monitoring: the HPA falls back to CPU.
				if m := podMetrics(r.get(t, "HorizontalPodAutoscaler", "infura-gateway").(*autoscalingv2.HorizontalPodAutoscaler)); len(m) != 0 {
					t.Errorf("install_monitoring = false: the HPA reads custom metrics nobody serves: %v", m)
				}
			}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			// Not t.TempDir: helm splits -f on commas, and the test names have some.
			dir, err := os.MkdirTemp("", "tfvalues")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			main := fmt.Sprintf("module \"values\" {\n  source = %q\n%s\n}\n\noutput \"documents\" {\n  value = module.values.documents\n}\n\noutput \"namespace_labels\" {\n  value = module.values.namespace_labels\n}\n", module, c.inputs)
			if err := os.WriteFile(filepath.Join(dir, "main.tf"), []byte(main), 0o644); err != nil {
				t.Fatal(err)
			}
			run := func(args ...string) []byte {
				cmd := exec.Command(tf, args...)
				cmd.Dir = dir
				cmd.Env = append(os.Environ(), "TF_IN_AUTOMATION=1", "TF_INPUT=0")
				out, err := cmd.Output()
				if err != nil {
					stderr := ""
					if ee, ok := err.(*exec.ExitError); ok {
						stderr = string(ee.Stderr)
					}
					t.Fatalf("terraform %v: %v\n%s%s", args, err, out, stderr)
				}
				return out
			}
			run("init", "-backend=false", "-no-color")
			run("apply", "-auto-approve", "-no-color")
			var docs []string
			if err := json.Unmarshal(run("output", "-json", "documents"), &docs); err != nil {
				t.Fatal(err)
			}
			var nsLabels map[string]string
			if err := json.Unmarshal(run("output", "-json", "namespace_labels"), &nsLabels); err != nil {
				t.Fatal(err)
			}
			// N10: the namespace Terraform creates enforces Pod Security "restricted" at the
			// cluster's version (gateway.tf adds the readiness-gate label, which the docs
			// check finds there).
			want := map[string]string{
				"pod-security.kubernetes.io/enforce":         "restricted",
				"pod-security.kubernetes.io/enforce-version": "v1.33",
				"pod-security.kubernetes.io/warn":            "restricted",
				"pod-security.kubernetes.io/audit":           "restricted",
			}
			for k, v := range want {
				if nsLabels[k] != v {
					t.Errorf("namespace label %s=%q, want %q", k, nsLabels[k], v)
				}
			}
			// Terraform's values only: not the trusted proxies values() adds.
			args := append(eksValuesWithoutTrust(), monitoringAPIs...)
			args = append(args, "--set-string", "image.tag=20250101", "--set-string", "infura.projectId=p", "--set", "infura.existingSecret=")
			for i, d := range docs {
				f := filepath.Join(dir, fmt.Sprintf("values-%d.yaml", i))
				if err := os.WriteFile(f, []byte(d), 0o644); err != nil {
					t.Fatal(err)
				}
				args = append(args, "-f", f)
			}
			out, err := helm(append([]string{"template", "infura-gateway", chartDir, "--kube-version", kubeVersion, "--namespace", "infura-gateway"}, args...)...)
			if err != nil {
				t.Fatal(err)
			}
			r, err := decodeAll(out)
			if err != nil {
				t.Fatal(err)
			}
			_, gw := gateway(t, r, "infura-gateway")
			if !strings.Contains(gw.Image, ":20250101@sha256:") {
				t.Errorf("an all-digit tag must stay a tag, next to the digest: %s", gw.Image)
			}
			// N2: PROXY v2 on the target group, read by the gateway from the VPC's addresses.
			env := envOf(gw)
			if svc := r.get(t, "Service", "infura-gateway").(*corev1.Service); svc.Annotations[annPrefix+"proxy-protocol"] != "*" ||
				env["PROXY_PROTOCOL"].Value != "true" || env["TRUSTED_PROXIES"].Value != "10.42.0.0/16" {
				t.Errorf("proxy protocol: annotation %q, PROXY_PROTOCOL %q, TRUSTED_PROXIES %q: want *, true, the VPC CIDR",
					svc.Annotations[annPrefix+"proxy-protocol"], env["PROXY_PROTOCOL"].Value, env["TRUSTED_PROXIES"].Value)
			}
			c.check(t, r)
		})
	}
}
