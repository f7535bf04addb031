package chart

import (
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

func envOf(c corev1.Container) map[string]corev1.EnvVar {
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	return env
}

func gateway(t *testing.T, r rendered, name string) (*appsv1.Deployment, corev1.Container) {
	t.Helper()
	d := r.get(t, "Deployment", name).(*appsv1.Deployment)
	return d, d.Spec.Template.Spec.Containers[0]
}

// The configuration file: rendered from config.upstreams and its sections, mounted as
// a directory (a subPath never sees the kubelet's updates), named by CONFIG_FILE, with
// every secret left as a ${VAR} that an existing Secret provides.
func TestConfigFile(t *testing.T) {
	r := render(t, "gw", values("values-full.yaml")...)
	cm := r.get(t, "ConfigMap", "gateway-full-config").(*corev1.ConfigMap)
	var file struct {
		Upstreams []map[string]any `json:"upstreams"`
		Routing   map[string]any   `json:"routing"`
		Health    map[string]any   `json:"health"`
		Keys      struct {
			Required bool             `json:"required"`
			Entries  []map[string]any `json:"entries"`
		} `json:"keys"`
		Plans     map[string]map[string]any `json:"plans"`
		Costs     map[string]int            `json:"costs"`
		Anonymous map[string]string         `json:"anonymous"`
		Clients   map[string]any            `json:"clients"`
		EnvAllow  []string                  `json:"env_allow"`
	}
	if err := yaml.UnmarshalStrict([]byte(cm.Data["config.yaml"]), &file); err != nil {
		t.Fatalf("config.yaml: %v\n%s", err, cm.Data["config.yaml"])
	}
	if len(file.Upstreams) != 3 || file.Upstreams[0]["name"] != "infura" || file.Upstreams[2]["tier"] != "fallback" {
		t.Errorf("upstreams %v", file.Upstreams)
	}
	if file.Upstreams[0]["password"] != "${INFURA_PROJECT_SECRET}" || !strings.Contains(file.Upstreams[2]["http"].(string), "${ALCHEMY_KEY}") {
		t.Errorf("secrets must stay ${VAR} references: %v", file.Upstreams)
	}
	// The gateway expands only GATEWAY_*, the Infura credentials and env_allow.
	if len(file.EnvAllow) != 1 || file.EnvAllow[0] != "ALCHEMY_KEY" {
		t.Errorf("env_allow %v, want [ALCHEMY_KEY] (config.envAllow)", file.EnvAllow)
	}
	if file.Routing["retries"] != float64(2) || file.Health["window"] != "30s" || !file.Keys.Required || len(file.Keys.Entries) != 2 ||
		file.Plans["free"]["daily_units"] != float64(100000) || file.Costs["eth_call"] != 26 || file.Anonymous["plan"] != "anonymous" ||
		file.Clients["proxy_protocol"] != false {
		t.Errorf("sections not rendered as given: %+v", file)
	}
	if strings.Contains(cm.Data["config.yaml"], "e+") {
		t.Errorf("a number rendered in exponent form:\n%s", cm.Data["config.yaml"])
	}

	d, c := gateway(t, r, "gateway-full")
	env := envOf(c)
	if env["CONFIG_FILE"].Value != "/etc/infura-gateway/config.yaml" {
		t.Errorf("CONFIG_FILE = %q", env["CONFIG_FILE"].Value)
	}
	for _, k := range []string{"UPSTREAM_HTTP_URL", "UPSTREAM_WS_URL"} {
		if _, ok := env[k]; ok {
			t.Errorf("%s set next to the configuration file, which replaces it", k)
		}
	}
	mounted := false
	for _, m := range c.VolumeMounts {
		if m.MountPath == "/etc/infura-gateway" {
			mounted = m.SubPath == "" && m.ReadOnly
		}
	}
	vol := false
	for _, v := range d.Spec.Template.Spec.Volumes {
		vol = vol || (v.ConfigMap != nil && v.ConfigMap.Name == "gateway-full-config")
	}
	if !mounted || !vol {
		t.Errorf("the ConfigMap must be mounted read-only as a directory at /etc/infura-gateway: %+v %+v", c.VolumeMounts, d.Spec.Template.Spec.Volumes)
	}
	if len(c.EnvFrom) != 1 || c.EnvFrom[0].SecretRef == nil || c.EnvFrom[0].SecretRef.Name != "upstream-keys" {
		t.Errorf("envFromSecrets must become envFrom secretRefs: %+v", c.EnvFrom)
	}

	// rollOnChange: a checksum that follows the file; off (the default), the gateway
	// reloads the file itself and the pod template stays the same.
	sum := func(args ...string) string {
		r := render(t, "gw", append(values("values-full.yaml"), args...)...)
		d, _ := gateway(t, r, "gateway-full")
		return d.Spec.Template.Annotations["checksum/config"]
	}
	a, b := sum(), sum("--set", "config.routing.retries=3")
	if a == "" || a == b {
		t.Errorf("checksum/config does not follow the file: %q vs %q", a, b)
	}
	if s := sum("--set", "config.rollOnChange=false"); s != "" {
		t.Errorf("rollOnChange=false still rolls pods: checksum/config=%q", s)
	}
}

// Without an upstream list the chart renders no file and configures one upstream
// through the environment, as before; ws "off" is a documented value.
func TestSingleUpstreamStaysEnv(t *testing.T) {
	r := render(t, "gw", append(values(""), "--set", "config.upstreamWsUrl=off")...)
	if r.has("ConfigMap", "gw-infura-gateway-config") {
		t.Error("a configuration file without config.upstreams")
	}
	_, c := gateway(t, r, "gw-infura-gateway")
	env := envOf(c)
	if env["UPSTREAM_HTTP_URL"].Value != "http://geth.ethereum:8545" || env["UPSTREAM_WS_URL"].Value != "off" {
		t.Errorf("single-upstream env: %v %v", env["UPSTREAM_HTTP_URL"], env["UPSTREAM_WS_URL"])
	}
	if _, ok := env["CONFIG_FILE"]; ok || len(c.VolumeMounts) != 0 {
		t.Error("CONFIG_FILE or a mount without a file")
	}
}

// With the NetworkPolicy on, the upstreams stay reachable on their own ports.
func TestNetworkPolicyAdmitsUpstreamPorts(t *testing.T) {
	np := toYAML(t, render(t, "gw", append(values(""), "--set", "networkPolicy.enabled=true",
		"--set", "config.upstreamWsUrl=ws://geth.ethereum:8546")...).get(t, "NetworkPolicy", "gw-infura-gateway"))
	for _, p := range []string{"port: 8545", "port: 8546"} {
		if !strings.Contains(np, p) {
			t.Errorf("NetworkPolicy has no egress to the upstream's %s:\n%s", p, np)
		}
	}
	np = toYAML(t, render(t, "gw", append(values("values-full.yaml"), "--set-string", "config.upstreams[2].http=https://${RPC_USER}:${RPC_PASS}@rpc.example.com:8443/v2/${KEY}")...).
		get(t, "NetworkPolicy", "gateway-full"))
	if !strings.Contains(np, "port: 8443") {
		t.Errorf("NetworkPolicy has no egress to an upstream list's port 8443:\n%s", np)
	}
	// Plain http and ws without a port are on 80, which the 443 rule does not cover.
	np = toYAML(t, render(t, "gw", append(values(""), "--set", "networkPolicy.enabled=true",
		"--set", "config.upstreamHttpUrl=http://geth.ethereum", "--set", "config.upstreamWsUrl=ws://geth.ethereum/ws")...).get(t, "NetworkPolicy", "gw-infura-gateway"))
	if !strings.Contains(np, "port: 80\n") {
		t.Errorf("NetworkPolicy has no egress to port 80 for http:// and ws:// upstreams without a port:\n%s", np)
	}
}

// Redis: nothing without it; the address as a value or from the Secret; the password
// only ever from a Secret.
func TestRedis(t *testing.T) {
	r := render(t, "gw", values("")...)
	_, c := gateway(t, r, "gw-infura-gateway")
	for k := range envOf(c) {
		if strings.HasPrefix(k, "REDIS_") || k == "LIMITS_FAIL_CLOSED" {
			t.Errorf("%s set without Redis", k)
		}
	}

	r = render(t, "gw", append(values(""), "--set", "redis.address=master.gw.abc123.euw1.cache.amazonaws.com:6379",
		"--set", "redis.existingSecret=gw-redis", "--set", "networkPolicy.enabled=true")...)
	_, c = gateway(t, r, "gw-infura-gateway")
	env := envOf(c)
	if env["REDIS_ADDR"].Value != "master.gw.abc123.euw1.cache.amazonaws.com:6379" || env["REDIS_TLS"].Value != "true" ||
		env["LIMITS_FAIL_CLOSED"].Value != "false" {
		t.Errorf("Redis env: %v", env)
	}
	if p := env["REDIS_PASSWORD"]; p.Value != "" || p.ValueFrom == nil || p.ValueFrom.SecretKeyRef.Name != "gw-redis" || p.ValueFrom.SecretKeyRef.Key != "password" {
		t.Errorf("REDIS_PASSWORD must come from the Secret: %+v", p)
	}
	np := render(t, "gw", append(values(""), "--set", "redis.address=redis:6380", "--set", "networkPolicy.enabled=true")...).
		get(t, "NetworkPolicy", "gw-infura-gateway")
	if !strings.Contains(toYAML(t, np), "port: 6380") {
		t.Errorf("NetworkPolicy has no egress to the Redis port 6380:\n%s", toYAML(t, np))
	}

	_, c = gateway(t, render(t, "gw", values("values-full.yaml")...), "gateway-full")
	if a := envOf(c)["REDIS_ADDR"]; a.ValueFrom == nil || a.ValueFrom.SecretKeyRef.Key != "address" {
		t.Errorf("REDIS_ADDR must come from the Secret's address key: %+v", a)
	}
}

// The shared cache tier's bounds reach the gateway as its environment; a cache-only
// Redis on another port gets its NetworkPolicy egress too.
func TestRedisSharedCache(t *testing.T) {
	base := append(values(""), "--set", "redis.address=redis:6379", "--set", "networkPolicy.enabled=true")
	_, c := gateway(t, render(t, "gw", base...), "gw-infura-gateway")
	env := envOf(c)
	for k, want := range map[string]string{"SHARED_CACHE_TTL": "24h", "SHARED_CACHE_MAX_VALUE_BYTES": "262144",
		"SHARED_CACHE_TENANT_BYTES_PER_MINUTE": "4194304"} {
		if env[k].Value != want {
			t.Errorf("%s = %q, want %q", k, env[k].Value, want)
		}
	}
	if _, ok := env["SHARED_CACHE_METHODS"]; ok {
		t.Error("SHARED_CACHE_METHODS set by default: eth_call must be off by default")
	}
	r := render(t, "gw", append(base, "--set", "redis.sharedCache.address=cache:6380",
		"--set", "redis.sharedCache.methods={eth_call,eth_getBalance}", "--set", "redis.sharedCache.tenantBytesPerMinute=0")...)
	_, c = gateway(t, r, "gw-infura-gateway")
	env = envOf(c)
	if env["SHARED_CACHE_REDIS_ADDR"].Value != "cache:6380" || env["SHARED_CACHE_METHODS"].Value != "eth_call,eth_getBalance" ||
		env["SHARED_CACHE_TENANT_BYTES_PER_MINUTE"].Value != "0" {
		t.Errorf("shared cache env: %v", env)
	}
	if np := toYAML(t, r.get(t, "NetworkPolicy", "gw-infura-gateway")); !strings.Contains(np, "port: 6380") || !strings.Contains(np, "port: 6379") {
		t.Errorf("NetworkPolicy lacks egress to both Redis ports:\n%s", np)
	}
}

func toYAML(t *testing.T, o any) string {
	t.Helper()
	b, err := yaml.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// prometheus-operator objects only when the cluster serves their API.
func TestMonitoringNeedsCRDs(t *testing.T) {
	r := render(t, "gw", values("values-eks.yaml")...)
	if r.has("ServiceMonitor", "gw-infura-gateway") || r.has("PrometheusRule", "gw-infura-gateway") {
		t.Error("ServiceMonitor/PrometheusRule rendered for a cluster without monitoring.coreos.com/v1")
	}
	r = render(t, "gw", append(values("values-eks.yaml"), monitoringAPIs...)...)
	if !r.has("ServiceMonitor", "gw-infura-gateway") || !r.has("PrometheusRule", "gw-infura-gateway") {
		t.Error("ServiceMonitor/PrometheusRule missing although the API exists")
	}
}

// Two releases, or one release in two namespaces, get two dashboards.
func TestDashboardPerRelease(t *testing.T) {
	uid := func(release, ns string) (string, string) {
		out, err := helm(append([]string{"template", release, chartDir, "--kube-version", kubeVersion, "--namespace", ns,
			"--show-only", "templates/dashboard-configmap.yaml", "--set", "dashboards.enabled=true"}, values("")...)...)
		if err != nil {
			t.Fatal(err)
		}
		r, err := decodeAll(out)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range r.objs {
			for k, v := range o.(*corev1.ConfigMap).Data {
				return k, dashboardJSON(t, []byte(v))["uid"].(string)
			}
		}
		t.Fatal("no dashboard")
		return "", ""
	}
	k1, a := uid("gw", "prod")
	k2, b := uid("gw2", "prod")
	k3, c := uid("gw", "staging")
	if a == b || a == c || b == c || k1 == k2 || k1 == k3 {
		t.Errorf("dashboards collide: uids %s %s %s, keys %s %s %s", a, b, c, k1, k2, k3)
	}
}

// Values that the schema admits but that cannot work: the templates refuse them.
func TestBadConfigIsRejected(t *testing.T) {
	full := values("values-full.yaml")
	cases := map[string]struct {
		args   []string
		want   string
		schema bool
	}{
		"no image":            {[]string{"--set", "config.upstreamHttpUrl=http://n:8545"}, "image.repository", false},
		"no upstream":         {[]string{"--set", "image.repository=r/gw"}, "no upstream configured", false},
		"file and url":        {append(full, "--set", "config.upstreamHttpUrl=http://n:8545"), "not both", false},
		"duplicate upstream":  {append(full, "--set", "config.upstreams[1].name=infura"), "used twice", false},
		"only fallbacks":      {append(full, "--set", "config.upstreams[0].tier=fallback", "--set", "config.upstreams[1].tier=fallback"), "tier: primary", false},
		"unknown key plan":    {append(full, "--set", "config.keys.entries[0].plan=gold"), "gold", false},
		"unknown anon plan":   {append(full, "--set", "config.anonymous.plan=gold"), "gold", false},
		"sections, no file":   {append(values(""), "--set", "config.routing.retries=1"), "needs config.upstreams", false},
		"literal password":    {append(full, "--set", "config.upstreams[0].password=hunter2"), "password", true},
		"bad key hash":        {append(full, "--set", "config.keys.entries[0].sha256=abc"), "sha256", true},
		"bad upstream name":   {append(full, "--set", "config.upstreams[0].name=Infura"), "name", true},
		"unknown file key":    {append(full, "--set", "config.routing.retry=1"), "retry", true},
		"bad tier":            {append(full, "--set", "config.upstreams[0].tier=backup"), "tier", true},
		"redis secret only":   {append(values(""), "--set", "redis.existingSecret=r"), "without an address", false},
		"redis address twice": {append(values(""), "--set", "redis.address=r:6379", "--set", "redis.existingSecret=r", "--set", "redis.existingSecretAddressKey=a"), "not both", false},
		"redis bad address":   {append(values(""), "--set", "redis.address=redis"), "address", true},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			out, err := helm(append([]string{"template", "gw", chartDir, "--kube-version", kubeVersion}, c.args...)...)
			if err == nil {
				t.Fatalf("helm template accepted %v:\n%.300s", c.args, out)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error does not mention %q: %v", c.want, err)
			}
			if c.schema {
				if out, err := helm(append([]string{"lint", "--strict", chartDir, "--kube-version", kubeVersion}, c.args...)...); err == nil {
					t.Errorf("helm lint --strict accepted %v:\n%s", c.args, out)
				}
			}
		})
	}
}

// The readiness-gate check itself needs a cluster (a lookup of the namespace, which
// helm template cannot make); the EKS profile must turn it on.
func TestEKSRequiresReadinessGate(t *testing.T) {
	var v struct {
		Service struct {
			RequirePodReadinessGate bool `json:"requirePodReadinessGate"`
		} `json:"service"`
	}
	if err := yaml.Unmarshal(readFile(t, filepath.Join(chartDir, "values-eks.yaml")), &v); err != nil || !v.Service.RequirePodReadinessGate {
		t.Errorf("values-eks.yaml must set service.requirePodReadinessGate: %v", err)
	}
}
