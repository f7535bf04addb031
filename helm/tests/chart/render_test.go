// Package chart renders the infura-gateway chart with every values
// profile, decodes each manifest strictly into its Kubernetes (or
// prometheus-operator) Go type, and asserts the chart's operational rules.
//
// Strict decoding (sigs.k8s.io/json, the API server's own strict decoder)
// rejects unknown or misspelt fields, wrong types, bad quantities and
// duplicate keys: the checks kubectl --validate=strict would make, offline.
package chart

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// runbookBase is where files/alerts.yaml links by default (metrics.prometheusRule.runbookBaseUrl).
const runbookBase = "https://github.com/infura-gateway/infura-gateway/blob/main/helm/infura-gateway/RUNBOOK.md"

const (
	chartDir    = "../../infura-gateway"
	kubeVersion = "1.32.0"
)

// base are the values every install must give (the chart has no default image or
// upstream); monitoringAPIs is what a cluster with prometheus-operator's CRDs reports.
var (
	base           = []string{"--set", "image.repository=registry.example.com/infura-gateway", "--set", "config.upstreamHttpUrl=http://geth.ethereum:8545"}
	monitoringAPIs = []string{"--api-versions", "monitoring.coreos.com/v1/ServiceMonitor", "--api-versions", "monitoring.coreos.com/v1/PrometheusRule"}
)

// Every kind the chart may render. Anything else fails the test, so a new
// template must be added here (and so gets strict decoding).
var kinds = map[schema.GroupVersionKind]func() any{
	{Group: "apps", Version: "v1", Kind: "Deployment"}:                      func() any { return &appsv1.Deployment{} },
	{Version: "v1", Kind: "Service"}:                                        func() any { return &corev1.Service{} },
	{Version: "v1", Kind: "Secret"}:                                         func() any { return &corev1.Secret{} },
	{Version: "v1", Kind: "ServiceAccount"}:                                 func() any { return &corev1.ServiceAccount{} },
	{Version: "v1", Kind: "ConfigMap"}:                                      func() any { return &corev1.ConfigMap{} },
	{Version: "v1", Kind: "Pod"}:                                            func() any { return &corev1.Pod{} },
	{Group: "autoscaling", Version: "v2", Kind: "HorizontalPodAutoscaler"}:  func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
	{Group: "policy", Version: "v1", Kind: "PodDisruptionBudget"}:           func() any { return &policyv1.PodDisruptionBudget{} },
	{Group: "networking.k8s.io", Version: "v1", Kind: "NetworkPolicy"}:      func() any { return &networkingv1.NetworkPolicy{} },
	{Group: "monitoring.coreos.com", Version: "v1", Kind: "ServiceMonitor"}: func() any { return &monitoringv1.ServiceMonitor{} },
	{Group: "monitoring.coreos.com", Version: "v1", Kind: "PrometheusRule"}: func() any { return &monitoringv1.PrometheusRule{} },
}

var (
	helmOnce sync.Once
	helmPath string
	helmErr  error
)

// helmBin is $HELM, or the helm pinned in .ci/tools/go.mod (built once, then cached by
// the go command).
func helmBin() (string, error) {
	helmOnce.Do(func() {
		if helmPath = os.Getenv("HELM"); helmPath != "" {
			return
		}
		modfile, err := filepath.Abs("../../../.ci/tools/go.mod")
		if err != nil {
			helmErr = err
			return
		}
		cmd := exec.Command("go", "tool", "-modfile="+modfile, "-n", "helm")
		cmd.Dir = filepath.Dir(modfile)
		out, err := cmd.Output()
		if err != nil {
			helmErr = fmt.Errorf("go tool -n helm: %w", err)
			return
		}
		helmPath = strings.TrimSpace(string(out))
	})
	return helmPath, helmErr
}

func helm(args ...string) ([]byte, error) {
	bin, err := helmBin()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("helm %s: %w\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return out, nil
}

// rendered is the decoded output of one `helm template`.
type rendered struct {
	objs map[string]any // "Kind/name" -> typed object
}

func (r rendered) get(t *testing.T, kind, name string) any {
	t.Helper()
	o, ok := r.objs[kind+"/"+name]
	if !ok {
		keys := make([]string, 0, len(r.objs))
		for k := range r.objs {
			keys = append(keys, k)
		}
		t.Fatalf("no %s/%s rendered; have %v", kind, name, keys)
	}
	return o
}

func (r rendered) has(kind, name string) bool { _, ok := r.objs[kind+"/"+name]; return ok }

func render(t *testing.T, release string, args ...string) rendered {
	t.Helper()
	out, err := helm(append([]string{"template", release, chartDir, "--kube-version", kubeVersion, "--namespace", "gw"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	r, err := decodeAll(out)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func decodeAll(out []byte) (rendered, error) {
	r := rendered{objs: map[string]any{}}
	for _, doc := range strings.Split(string(out), "\n---") {
		if strings.TrimSpace(strings.TrimPrefix(doc, "---")) == "" {
			continue
		}
		source := ""
		if i := strings.Index(doc, "# Source: "); i >= 0 {
			source = strings.SplitN(doc[i:], "\n", 2)[0]
		}
		js, err := yaml.YAMLToJSONStrict([]byte(doc))
		if err != nil {
			return r, fmt.Errorf("%s: %w", source, err)
		}
		if string(js) == "null" {
			continue
		}
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(js, &head); err != nil {
			return r, fmt.Errorf("%s: %w", source, err)
		}
		gv, err := schema.ParseGroupVersion(head.APIVersion)
		if err != nil {
			return r, fmt.Errorf("%s: %w", source, err)
		}
		newObj, ok := kinds[gv.WithKind(head.Kind)]
		if !ok {
			return r, fmt.Errorf("%s: unexpected kind %s %s", source, head.APIVersion, head.Kind)
		}
		obj := newObj()
		strict, err := kjson.UnmarshalStrict(js, obj)
		if err != nil {
			return r, fmt.Errorf("%s: %w", source, err)
		}
		if len(strict) > 0 {
			return r, fmt.Errorf("%s: strict decoding: %v", source, strict)
		}
		if head.Metadata.Name == "" {
			return r, fmt.Errorf("%s: no metadata.name", source)
		}
		key := head.Kind + "/" + head.Metadata.Name
		if _, dup := r.objs[key]; dup {
			return r, fmt.Errorf("%s rendered twice", key)
		}
		r.objs[key] = obj
	}
	return r, nil
}

// values are the arguments of a profile: values-full.yaml is complete; the default
// values and values-eks.yaml need an image and an upstream, as every install does.
func values(name string) []string {
	switch name {
	case "":
		return append([]string{}, base...)
	case "values-eks.yaml":
		// The VPC CIDR Terraform passes: the NLB's PROXY headers are read from it only.
		return append(eksValuesWithoutTrust(), "--set", "config.trustedProxies={10.42.0.0/16}")
	}
	return []string{"-f", filepath.Join(chartDir, name)}
}

func eksValuesWithoutTrust() []string {
	return []string{"-f", filepath.Join(chartDir, "values-eks.yaml"), "--set", "image.repository=registry.example.com/infura-gateway",
		"--set", "image.digest=sha256:" + strings.Repeat("ab", 32), "--set", "infura.existingSecret=infura-credentials"}
}

// Strict decoding of every profile, plus the chart's rules on each.
func TestProfilesRenderValidObjects(t *testing.T) {
	profiles := map[string]struct {
		file     string
		fullname string
		want     []string
	}{
		"default": {"", "gw-infura-gateway", []string{"Deployment", "Service", "ServiceAccount", "PodDisruptionBudget", "Pod"}},
		"eks": {"values-eks.yaml", "gw-infura-gateway", []string{"Deployment", "Service", "ServiceAccount", "PodDisruptionBudget", "Pod",
			"HorizontalPodAutoscaler", "ServiceMonitor", "PrometheusRule", "ConfigMap", "NetworkPolicy"}},
		"full": {"values-full.yaml", "gateway-full", []string{"Deployment", "Service", "ServiceAccount", "PodDisruptionBudget", "Pod",
			"HorizontalPodAutoscaler", "ServiceMonitor", "PrometheusRule", "ConfigMap", "Secret", "NetworkPolicy"}},
	}
	for name, p := range profiles {
		t.Run(name, func(t *testing.T) {
			r := render(t, "gw", append(values(p.file), monitoringAPIs...)...)
			got := map[string]int{}
			for k := range r.objs {
				got[strings.SplitN(k, "/", 2)[0]]++
			}
			for _, k := range p.want {
				if got[k] == 0 {
					t.Errorf("profile %s renders no %s (got %v)", name, k, got)
				}
			}
			if len(got) != len(p.want) {
				t.Errorf("profile %s renders kinds %v, want exactly %v", name, got, p.want)
			}
			checkDeployment(t, r, p.fullname)
			checkTestPod(t, r, p.fullname)
			if r.has("ServiceMonitor", p.fullname) {
				checkMonitoring(t, r, p.fullname, runbookBaseOf(t, p.file))
			}
			if r.has("HorizontalPodAutoscaler", p.fullname) {
				checkHPA(t, r, p.fullname)
			}
			if r.has("NetworkPolicy", p.fullname) {
				checkNetworkPolicy(t, r, p.fullname)
			}
			pdb := r.get(t, "PodDisruptionBudget", p.fullname).(*policyv1.PodDisruptionBudget)
			if pdb.Spec.MaxUnavailable == nil || pdb.Spec.Selector == nil {
				t.Errorf("PDB without maxUnavailable/selector: %+v", pdb.Spec)
			}
		})
	}
}

func checkDeployment(t *testing.T, r rendered, name string) {
	t.Helper()
	d := r.get(t, "Deployment", name).(*appsv1.Deployment)
	pod := d.Spec.Template.Spec
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("automountServiceAccountToken must be false")
	}
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext not restricted: %+v", psc)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("want 1 container, got %d", len(pod.Containers))
	}
	c := pod.Containers[0]
	checkContainerSecurity(t, c)
	// Liveness on the admin listener (an overloaded public port must not get the pod
	// restarted), readiness on the public one (the port the traffic uses).
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/health" ||
		c.LivenessProbe.HTTPGet.Port.String() != "admin" {
		t.Errorf("liveness probe must GET /health on the admin port: %+v", c.LivenessProbe)
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" ||
		c.ReadinessProbe.HTTPGet.Port.String() != "http" {
		t.Errorf("readiness probe must GET /readyz on the public port: %+v", c.ReadinessProbe)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources need cpu/memory requests and a memory limit: %+v", c.Resources)
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if len(c.Ports) != 2 || ports["http"] != 8000 || ports["admin"] == 0 || ports["admin"] == 8000 {
		t.Errorf("container ports must be http/8000 and a separate admin port: %+v", c.Ports)
	}
	if args := strings.Join(c.Args, " "); !strings.Contains(args, "-listen :8000") || !strings.Contains(args, fmt.Sprintf("-admin-listen :%d", ports["admin"])) {
		// The gateway's own default is loopback: probes and Prometheus come to the pod IP.
		t.Errorf("args %q must set -listen :8000 and -admin-listen on the admin port of every interface", args)
	}
	if strings.HasSuffix(c.Image, ":latest") || !strings.Contains(c.Image, ":") {
		t.Errorf("gateway image must be pinned: %s", c.Image)
	}

	// Grace period must cover preStop sleep + drain delay + shutdown timeout.
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		if _, dup := env[e.Name]; dup {
			t.Errorf("env %s set twice", e.Name)
		}
		env[e.Name] = e
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
		t.Fatalf("preStop must be a sleep action (no shell in distroless): %+v", c.Lifecycle)
	}
	sleep := c.Lifecycle.PreStop.Sleep.Seconds
	drain := seconds(t, env["DRAIN_DELAY"].Value)
	shutdown := seconds(t, env["SHUTDOWN_TIMEOUT"].Value)
	if pod.TerminationGracePeriodSeconds == nil || *pod.TerminationGracePeriodSeconds <= sleep+drain+shutdown {
		t.Errorf("terminationGracePeriodSeconds %v must exceed preStop %d + drain %d + shutdown %d",
			pod.TerminationGracePeriodSeconds, sleep, drain, shutdown)
	}
	if shutdown == 0 {
		t.Error("SHUTDOWN_TIMEOUT must be set")
	}
	// Websocket closes are spread over DRAIN_DELAY: zero would close them all at once.
	if drain == 0 {
		t.Error("DRAIN_DELAY must be above zero: the gateway spreads websocket closes over it")
	}
	// The Go heap's soft limit: a share (85-95 %) of the limit the container has when
	// it runs (the downward API), not a number fixed at render time.
	checkMemoryLimitEnv(t, c, 0.85, 0.95)
	if d.Spec.MinReadySeconds == 0 || d.Spec.Strategy.RollingUpdate == nil || d.Spec.Strategy.RollingUpdate.MaxUnavailable.String() != "0" {
		t.Errorf("rollout needs minReadySeconds and maxUnavailable 0: %d %+v", d.Spec.MinReadySeconds, d.Spec.Strategy.RollingUpdate)
	}

	// Credentials come only from a Secret, and chart-managed ones roll pods.
	for _, k := range []string{"INFURA_PROJECT_ID", "INFURA_PROJECT_SECRET"} {
		if e, ok := env[k]; ok && (e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
			t.Errorf("%s must come from a secretKeyRef, got %+v", k, e)
		}
	}
	if id, ok := env["INFURA_PROJECT_ID"]; ok && r.has("Secret", id.ValueFrom.SecretKeyRef.Name) {
		if d.Spec.Template.Annotations["checksum/secret"] == "" {
			t.Error("chart-managed Secret without checksum/secret pod annotation")
		}
	}

	// Spread: selector labels must match the pod template.
	for _, tsc := range pod.TopologySpreadConstraints {
		for k, v := range tsc.LabelSelector.MatchLabels {
			if d.Spec.Template.Labels[k] != v {
				t.Errorf("topology spread selects %s=%s, pod has %q", k, v, d.Spec.Template.Labels[k])
			}
		}
	}
	svc := r.get(t, "Service", name).(*corev1.Service)
	for k, v := range svc.Spec.Selector {
		if d.Spec.Template.Labels[k] != v {
			t.Errorf("Service selects %s=%s, pod has %q", k, v, d.Spec.Template.Labels[k])
		}
	}
	// The public Service exposes the public port only: a LoadBalancer Service gets an
	// NLB listener per port.
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort.String() != "http" {
		t.Errorf("Service must target the http port only: %+v", svc.Spec.Ports)
	}
	msvc := r.get(t, "Service", name+"-metrics").(*corev1.Service)
	if msvc.Spec.Type != corev1.ServiceTypeClusterIP || msvc.Spec.ClusterIP != "None" || len(msvc.Spec.Ports) != 1 ||
		msvc.Spec.Ports[0].TargetPort.String() != "admin" || msvc.Spec.Ports[0].Port != ports["admin"] {
		t.Errorf("the metrics Service must be headless ClusterIP on the admin port: %+v", msvc.Spec)
	}
	for k, v := range msvc.Spec.Selector {
		if d.Spec.Template.Labels[k] != v {
			t.Errorf("metrics Service selects %s=%s, pod has %q", k, v, d.Spec.Template.Labels[k])
		}
	}
	sa := pod.ServiceAccountName
	if r.has("ServiceAccount", sa) {
		if a := r.get(t, "ServiceAccount", sa).(*corev1.ServiceAccount).AutomountServiceAccountToken; a == nil || *a {
			t.Error("ServiceAccount must set automountServiceAccountToken: false")
		}
	}
}

func checkContainerSecurity(t *testing.T, c corev1.Container) {
	t.Helper()
	sc := c.SecurityContext
	if sc == nil {
		t.Fatalf("container %s has no securityContext", c.Name)
	}
	if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
		t.Errorf("container %s must run as non-root: %+v", c.Name, sc)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("container %s must have a read-only root filesystem", c.Name)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("container %s must disallow privilege escalation", c.Name)
	}
	if sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) > 0 {
		t.Errorf("container %s must drop ALL capabilities: %+v", c.Name, sc.Capabilities)
	}
	if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("container %s must use seccomp RuntimeDefault", c.Name)
	}
}

func seconds(t *testing.T, v string) int64 {
	t.Helper()
	var n int64
	if _, err := fmt.Sscanf(v, "%ds", &n); err != nil || fmt.Sprintf("%ds", n) != v {
		t.Errorf("duration %q: want whole seconds like 20s", v)
	}
	return n
}

func checkTestPod(t *testing.T, r rendered, name string) {
	t.Helper()
	p := r.get(t, "Pod", name+"-test").(*corev1.Pod)
	if p.Annotations["helm.sh/hook"] != "test" {
		t.Errorf("test pod is not a helm test hook: %v", p.Annotations)
	}
	if len(p.Spec.Containers) != 1 {
		t.Fatalf("test pod: want 1 container")
	}
	c := p.Spec.Containers[0]
	checkContainerSecurity(t, c)
	if strings.HasSuffix(c.Image, ":latest") || !regexp.MustCompile(`:[^/]+$`).MatchString(c.Image) {
		t.Errorf("test image must be pinned: %s", c.Image)
	}
	script := strings.Join(c.Args, " ")
	if !strings.Contains(script, "/health") || !strings.Contains(script, `"method":"eth_chainId"`) {
		t.Errorf("test pod must call /health and a JSON-RPC method: %s", script)
	}
	// The test pod must not be selected by the Service (or it would get traffic).
	svc := r.get(t, "Service", name).(*corev1.Service)
	matches := true
	for k, v := range svc.Spec.Selector {
		matches = matches && p.Labels[k] == v
	}
	if matches {
		t.Error("the Service selector matches the helm test pod")
	}
}

// runbookBaseOf is the runbookBaseUrl a values profile sets, else the chart's default.
func runbookBaseOf(t *testing.T, file string) string {
	t.Helper()
	if file == "" {
		return runbookBase
	}
	var v struct {
		Metrics struct {
			PrometheusRule struct {
				RunbookBaseURL string `json:"runbookBaseUrl"`
			} `json:"prometheusRule"`
		} `json:"metrics"`
	}
	if err := yaml.Unmarshal(readFile(t, filepath.Join(chartDir, file)), &v); err != nil {
		t.Fatal(err)
	}
	if u := v.Metrics.PrometheusRule.RunbookBaseURL; u != "" {
		return u
	}
	return runbookBase
}

func checkMonitoring(t *testing.T, r rendered, name, runbookBase string) {
	t.Helper()
	sm := r.get(t, "ServiceMonitor", name).(*monitoringv1.ServiceMonitor)
	if sm.Labels["release"] == "" {
		t.Error("ServiceMonitor has no release label (kube-prometheus-stack selects on it)")
	}
	if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "admin" || sm.Spec.Endpoints[0].Path != "/metrics" {
		t.Errorf("ServiceMonitor must scrape port admin /metrics: %+v", sm.Spec.Endpoints)
	}
	// It selects the metrics Service and never the public one.
	selects := func(svc *corev1.Service) bool {
		for k, v := range sm.Spec.Selector.MatchLabels {
			if svc.Labels[k] != v {
				return false
			}
		}
		return true
	}
	if !selects(r.get(t, "Service", name+"-metrics").(*corev1.Service)) || selects(r.get(t, "Service", name).(*corev1.Service)) {
		t.Errorf("ServiceMonitor selector %v must match the metrics Service only", sm.Spec.Selector.MatchLabels)
	}
	jobFixed := false
	for _, rl := range sm.Spec.Endpoints[0].RelabelConfigs {
		jobFixed = jobFixed || (rl.TargetLabel == "job" && rl.Replacement != nil && *rl.Replacement == "infura-gateway")
	}
	if !jobFixed {
		t.Error(`ServiceMonitor must set job="infura-gateway" (the alert rules select on it)`)
	}
	pr := r.get(t, "PrometheusRule", name).(*monitoringv1.PrometheusRule)
	if pr.Labels["release"] == "" {
		t.Error("PrometheusRule has no release label")
	}
	alerts := 0
	for _, g := range pr.Spec.Groups {
		for _, rule := range g.Rules {
			if rule.Alert == "" {
				continue
			}
			alerts++
			if rule.Labels["severity"] == "" || rule.Annotations["summary"] == "" || rule.Annotations["description"] == "" {
				t.Errorf("alert %s needs severity, summary and description", rule.Alert)
			}
			if u := rule.Annotations["runbook_url"]; !strings.HasPrefix(u, runbookBase+"#") {
				t.Errorf("alert %s: runbook_url %q, want a section of %s", rule.Alert, u, runbookBase)
			}
		}
	}
	if alerts < 8 {
		t.Errorf("PrometheusRule carries %d alerts, want the full set from files/alerts.yaml", alerts)
	}
	cm := r.get(t, "ConfigMap", name+"-dashboard").(*corev1.ConfigMap)
	if cm.Labels["grafana_dashboard"] != "1" {
		t.Errorf("dashboard ConfigMap labels %v: want grafana_dashboard=1", cm.Labels)
	}
	if len(cm.Data) != 1 {
		t.Fatalf("dashboard ConfigMap keys %v: want one", cm.Data)
	}
	for key, data := range cm.Data {
		if key != "gw-"+name+".json" {
			t.Errorf("dashboard key %q: want <namespace>-<fullname>.json (the sidecar writes every key into one folder)", key)
		}
		got, want := dashboardJSON(t, []byte(data)), dashboardJSON(t, readFile(t, filepath.Join(chartDir, "files/dashboard.json")))
		if got["uid"] == want["uid"] || len(got["uid"].(string)) > 40 || !strings.Contains(got["title"].(string), "gw/"+name) {
			t.Errorf("dashboard uid %q / title %q must come from the release (and a uid fits in 40 characters)", got["uid"], got["title"])
		}
		for _, k := range []string{"uid", "title"} {
			delete(got, k)
			delete(want, k)
		}
		if !reflect.DeepEqual(got, want) {
			t.Error("dashboard ConfigMap differs from files/dashboard.json beyond uid and title")
		}
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func dashboardJSON(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	return m
}

func checkHPA(t *testing.T, r rendered, name string) {
	t.Helper()
	h := r.get(t, "HorizontalPodAutoscaler", name).(*autoscalingv2.HorizontalPodAutoscaler)
	if h.Spec.ScaleTargetRef.Kind != "Deployment" || h.Spec.ScaleTargetRef.Name != name {
		t.Errorf("HPA targets %+v", h.Spec.ScaleTargetRef)
	}
	b := h.Spec.Behavior
	if b == nil || b.ScaleDown == nil || b.ScaleDown.StabilizationWindowSeconds == nil || *b.ScaleDown.StabilizationWindowSeconds < 60 || len(b.ScaleDown.Policies) == 0 {
		t.Errorf("HPA needs a slow scale-down behaviour: %+v", b)
	}
	if len(h.Spec.Metrics) == 0 {
		t.Error("HPA without metrics")
	}
	d := r.get(t, "Deployment", name).(*appsv1.Deployment)
	if d.Spec.Replicas != nil {
		t.Error("Deployment sets replicas while the HPA owns them (every helm upgrade would reset the scale)")
	}
}

func checkNetworkPolicy(t *testing.T, r rendered, name string) {
	t.Helper()
	np := r.get(t, "NetworkPolicy", name).(*networkingv1.NetworkPolicy)
	ingress8000 := false
	d := r.get(t, "Deployment", name).(*appsv1.Deployment)
	var admin int
	for _, p := range d.Spec.Template.Spec.Containers[0].Ports {
		if p.Name == "admin" {
			admin = int(p.ContainerPort)
		}
	}
	for _, in := range np.Spec.Ingress {
		for _, p := range in.Ports {
			ingress8000 = ingress8000 || (p.Port != nil && p.Port.IntValue() == 8000)
			// The admin port only from named peers: an empty from admits everyone.
			if p.Port != nil && p.Port.IntValue() == admin && len(in.From) == 0 {
				t.Errorf("NetworkPolicy admits every source to the admin port %d", admin)
			}
		}
		if len(in.Ports) == 0 {
			t.Error("NetworkPolicy ingress rule without ports admits the admin port too")
		}
	}
	egress := map[int]bool{}
	for _, e := range np.Spec.Egress {
		for _, p := range e.Ports {
			if p.Port != nil {
				egress[p.Port.IntValue()] = true
			}
		}
	}
	if !ingress8000 || !egress[53] || !egress[443] {
		t.Errorf("NetworkPolicy must allow ingress 8000 and egress 53+443: ingress8000=%v egress=%v", ingress8000, egress)
	}
	if len(np.Spec.PolicyTypes) != 2 {
		t.Errorf("NetworkPolicy must restrict both directions: %v", np.Spec.PolicyTypes)
	}
}

// The EKS profile must produce an NLB with ip targets through the AWS Load
// Balancer Controller and a websocket-friendly idle timeout on its listener.
func TestEKSProfileNLB(t *testing.T) {
	r := render(t, "gw", values("values-eks.yaml")...)
	d := r.get(t, "Deployment", "gw-infura-gateway").(*appsv1.Deployment)
	pod := d.Spec.Template.Spec
	// Websocket-heavy rollouts: the whole new set first, each new pod Ready (in the
	// target group, through the readiness gate) for a while before it counts.
	if ru := d.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxSurge.String() != "100%" || d.Spec.MinReadySeconds < 10 {
		t.Errorf("EKS rollout: want maxSurge 100%% and minReadySeconds >= 10, got %+v / %d", ru, d.Spec.MinReadySeconds)
	}
	if !strings.Contains(pod.Containers[0].Image, "@sha256:") {
		t.Errorf("EKS image %q: pin it by digest", pod.Containers[0].Image)
	}
	svc := r.get(t, "Service", "gw-infura-gateway").(*corev1.Service)
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		t.Fatalf("EKS Service type %s, want LoadBalancer", svc.Spec.Type)
	}
	a := svc.Annotations
	want := map[string]string{
		"service.beta.kubernetes.io/aws-load-balancer-type":             "external",
		"service.beta.kubernetes.io/aws-load-balancer-nlb-target-type":  "ip",
		"service.beta.kubernetes.io/aws-load-balancer-healthcheck-path": "/readyz",
	}
	for k, v := range want {
		if a[k] != v {
			t.Errorf("annotation %s=%q, want %q", k, a[k], v)
		}
	}
	listener := fmt.Sprintf("service.beta.kubernetes.io/aws-load-balancer-listener-attributes.TCP-%d", svc.Spec.Ports[0].Port)
	var idle int
	if _, err := fmt.Sscanf(a[listener], "tcp.idle_timeout.seconds=%d", &idle); err != nil || idle < 600 || idle > 6000 {
		t.Errorf("%s=%q: want tcp.idle_timeout.seconds in [600, 6000] for websockets", listener, a[listener])
	}
	// The NLB keeps a deregistering target's connections for the deregistration delay,
	// then resets them: the gateway must have closed its websockets and drained by then.
	var dereg int
	for _, kv := range strings.Split(a["service.beta.kubernetes.io/aws-load-balancer-target-group-attributes"], ",") {
		fmt.Sscanf(kv, "deregistration_delay.timeout_seconds=%d", &dereg)
	}
	env := map[string]string{}
	for _, e := range pod.Containers[0].Env {
		env[e.Name] = e.Value
	}
	preStop := pod.Containers[0].Lifecycle.PreStop.Sleep.Seconds
	drain, shutdown := seconds(t, env["DRAIN_DELAY"]), seconds(t, env["SHUTDOWN_TIMEOUT"])
	if int64(dereg) < preStop+drain+shutdown {
		t.Errorf("deregistration delay %d s < preStop %d + drain %d + shutdown %d", dereg, preStop, drain, shutdown)
	}
	// The NLB goes on sending new connections for a while after deregistration starts.
	if preStop < 20 || drain < 30 {
		t.Errorf("EKS preStop %d s / drain %d s: NLB deregistration takes tens of seconds to stop new connections", preStop, drain)
	}
}

// The namespace label that makes the AWS Load Balancer Controller inject its
// readiness gate: without it, the chart warns (helm template cannot see the
// cluster; against one, requirePodReadinessGate fails the install).
func TestReadinessGateNotes(t *testing.T) {
	notes := renderNotes(t, values("values-eks.yaml")...)
	for _, w := range []string{"kubectl label namespace gw elbv2.k8s.aws/pod-readiness-gate-inject=enabled", "admin port 9090"} {
		if !strings.Contains(notes, w) {
			t.Errorf("EKS NOTES lack %q:\n%s", w, notes)
		}
	}
	if strings.Contains(renderNotes(t, values("")...), "readiness-gate") {
		t.Error("NOTES talk about the NLB readiness gate for a ClusterIP Service")
	}
}

func TestDefaultIsClusterIP(t *testing.T) {
	r := render(t, "gw", values("")...)
	if s := r.get(t, "Service", "gw-infura-gateway").(*corev1.Service); s.Spec.Type != corev1.ServiceTypeClusterIP {
		t.Errorf("default Service type %s, want ClusterIP", s.Spec.Type)
	}
}

// Changing the chart-managed credentials must change the pod template, and
// an existingSecret must be referenced without the chart creating one.
func TestSecretHandling(t *testing.T) {
	sum := func(secret string) string {
		r := render(t, "gw", "--set", "image.repository=r/gw", "--set", "infura.projectId=abc", "--set", "infura.projectSecret="+secret)
		d := r.get(t, "Deployment", "gw-infura-gateway").(*appsv1.Deployment)
		return d.Spec.Template.Annotations["checksum/secret"]
	}
	a, b := sum("one"), sum("two")
	if a == "" || a == b {
		t.Errorf("checksum/secret does not follow the secret: %q vs %q", a, b)
	}

	r := render(t, "gw", "--set", "image.repository=r/gw", "--set", "infura.existingSecret=infura-creds", "--set", "infura.existingSecretProjectIdKey=id")
	if r.has("Secret", "gw-infura-gateway") {
		t.Error("chart created a Secret although existingSecret is set")
	}
	d := r.get(t, "Deployment", "gw-infura-gateway").(*appsv1.Deployment)
	found := false
	for _, e := range d.Spec.Template.Spec.Containers[0].Env {
		if e.Name == "INFURA_PROJECT_ID" {
			ref := e.ValueFrom.SecretKeyRef
			found = ref.Name == "infura-creds" && ref.Key == "id"
		}
	}
	if !found {
		t.Error("INFURA_PROJECT_ID does not reference existingSecret infura-creds/id")
	}
}

// Bad values must be rejected so a typo never reaches a cluster: schema
// violations by both `helm lint --strict` and `helm template`; cross-field
// rules (template `fail`, which helm lint tolerates) by `helm template`, the
// step every install and upgrade runs.
// helm lint --strict passes on the defaults and on every values profile.
func TestLintStrict(t *testing.T) {
	profiles, err := filepath.Glob(chartDir + "/values-*.yaml")
	if err != nil || len(profiles) == 0 {
		t.Fatalf("no values profiles in %s: %v", chartDir, err)
	}
	for _, f := range append([]string{""}, profiles...) {
		args := []string{"lint", "--strict", "--kube-version", kubeVersion, chartDir}
		if f == "" {
			args = append(args, values("")...)
		} else {
			args = append(args, values(filepath.Base(f))...)
		}
		out, err := helm(args...)
		if err != nil {
			t.Errorf("%v\n%s", err, out)
		}
	}
}

func TestBadValuesAreRejected(t *testing.T) {
	cases := map[string]struct {
		set    []string
		want   string
		schema bool
	}{
		"replicas not a number":    {[]string{"--set-string", "replicaCount=two"}, "replicaCount", true},
		"unknown service type":     {[]string{"--set", "service.type=Ingress"}, "service.type", true},
		"root user":                {[]string{"--set", "podSecurityContext.runAsUser=0"}, "runAsUser", true},
		"misspelt key":             {[]string{"--set", "replicas=3"}, "replicas", true},
		"bad log level":            {[]string{"--set", "config.logLevel=verbose"}, "logLevel", true},
		"bad duration":             {[]string{"--set", "config.upstreamTimeout=ten"}, "upstreamTimeout", true},
		"ws url for http":          {[]string{"--set", "config.upstreamHttpUrl=ws://node:8546"}, "upstreamHttpUrl", true},
		"port out of range":        {[]string{"--set", "service.port=70000"}, "port", true},
		"bad digest":               {[]string{"--set", "image.digest=latest"}, "digest", true},
		"bad quantity":             {[]string{"--set", "resources.requests.cpu=lots"}, "cpu", true},
		"grace shorter than drain": {[]string{"--set", "lifecycle.terminationGracePeriodSeconds=20"}, "terminationGracePeriodSeconds", false},
		"min above max replicas":   {[]string{"--set", "autoscaling.enabled=true", "--set", "autoscaling.minReplicas=5", "--set", "autoscaling.maxReplicas=2"}, "minReplicas", false},
		"hpa without a target":     {[]string{"--set", "autoscaling.enabled=true", "--set", "autoscaling.targetCPUUtilizationPercentage=0"}, "targetCPUUtilizationPercentage", false},
		"secret without id":        {[]string{"--set", "infura.projectSecret=s"}, "projectId", false},
		"secret twice":             {[]string{"--set", "infura.projectId=a", "--set", "infura.existingSecret=b"}, "existingSecret", false},
		"bad ws url":               {[]string{"--set", "config.upstreamWsUrl=offline"}, "upstreamWsUrl", true},
		"admin on the public port": {[]string{"--set", "admin.port=8000"}, "admin", true},
		"empty metricsFrom":        {[]string{"--set-json", "networkPolicy.metricsFrom=[]"}, "metricsFrom", true},
		"no metricsFrom":           {[]string{"--set", "networkPolicy.metricsFrom=null"}, "metricsFrom", true},
		"GOMEMLIMIT over limit":    {[]string{"--set", "goMemLimitPercent=120"}, "goMemLimitPercent", true},
		"zero surge":               {[]string{"--set", "rollout.maxSurge=0%"}, "maxSurge", true},
		"bad runbook url":          {[]string{"--set", "metrics.prometheusRule.runbookBaseUrl=runbook.md"}, "runbookBaseUrl", true},
		"bad test image digest":    {[]string{"--set", "tests.image.digest=latest"}, "digest", true},
		"dereg shorter than drain": {[]string{"--set-string", "service.annotations.service\\.beta\\.kubernetes\\.io/aws-load-balancer-target-group-attributes=deregistration_delay.timeout_seconds=30"}, "deregistration_delay", false},
		"no memory limit":          {[]string{"--set", "resources.limits.memory=null"}, "limits.memory", false},
		"shared cache of writes":   {[]string{"--set", "redis.sharedCache.methods={eth_sendRawTransaction}"}, "methods", true},
		// Credentials written into URLs land in the ConfigMap or the Deployment in clear.
		"password in a URL":      {[]string{"--set-string", "config.upstreamHttpUrl=https://user:literalpw@x.example/"}, "upstreamHttpUrl", true},
		"Infura key in a URL":    {[]string{"--set-string", "config.upstreamWsUrl=wss://mainnet.infura.io/ws/v3/0123456789abcdef0123456789abcdef"}, "upstreamWsUrl", true},
		"Alchemy key in a URL":   {[]string{"--set-string", "config.upstreamHttpUrl=https://eth-mainnet.g.alchemy.com/v2/abcdefghijklmnopqrstuvwxyz"}, "upstreamHttpUrl", true},
		"password in a list URL": {[]string{"--set", "config.upstreams[0].name=a", "--set-string", "config.upstreams[0].http=https://:pw@x.example/"}, "upstreams", true},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			out, err := helm(append(append([]string{"template", "gw", chartDir, "--kube-version", kubeVersion}, base...), c.set...)...)
			if err == nil {
				t.Fatalf("helm template accepted bad values %v:\n%.400s", c.set, out)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("helm template error does not mention %q:\n%v", c.want, err)
			}
			if !c.schema {
				return
			}
			if out, err := helm(append(append([]string{"lint", "--strict", chartDir, "--kube-version", kubeVersion}, base...), c.set...)...); err == nil {
				t.Errorf("helm lint --strict accepted bad values %v:\n%s", c.set, out)
			}
		})
	}
}

// With keys required, the smoke test cannot make its call without a key: given one
// (tests.apiKey, from a Secret) it sends it as X-API-Key; without, it checks that a call
// with no key is refused (401) instead of failing every `helm test`.
func TestSmokeTestWithKeysRequired(t *testing.T) {
	script := func(p *corev1.Pod) string { return strings.Join(p.Spec.Containers[0].Args, " ") }
	keyEnv := func(p *corev1.Pod) *corev1.EnvVar {
		for i, e := range p.Spec.Containers[0].Env {
			if e.Name == "API_KEY" {
				return &p.Spec.Containers[0].Env[i]
			}
		}
		return nil
	}
	pod := func(args ...string) *corev1.Pod {
		return render(t, "gw", args...).get(t, "Pod", "gateway-full-test").(*corev1.Pod)
	}

	p := pod(values("values-full.yaml")...)
	if s := script(p); !strings.Contains(s, "*401*") || strings.Contains(s, "X-API-Key") || keyEnv(p) != nil {
		t.Errorf("keys required, no test key: the test must expect 401 and send no key: %s", s)
	}
	p = pod(append(values("values-full.yaml"), "--set", "tests.apiKey.secretName=smoke")...)
	e := keyEnv(p)
	if s := script(p); !strings.Contains(s, `--header "X-API-Key: $API_KEY"`) || !strings.Contains(s, `*'"result"'*`) ||
		e == nil || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name != "smoke" ||
		e.ValueFrom.SecretKeyRef.Key != "api-key" {
		t.Errorf("keys required, a test key: the test must send it from the Secret and want a result: %s %+v", s, e)
	}
	// Without keys required the key is neither needed nor sent.
	p = render(t, "gw", append(values(""), "--set", "tests.apiKey.secretName=smoke")...).get(t, "Pod", "gw-infura-gateway-test").(*corev1.Pod)
	if s := script(p); strings.Contains(s, "X-API-Key") || strings.Contains(s, "*401*") || keyEnv(p) != nil {
		t.Errorf("keys off: the test sends no key and wants a result: %s", s)
	}
}
