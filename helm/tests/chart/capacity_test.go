package chart

import (
	"sort"
	"strconv"
	"strings"
	"testing"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// podMetrics are the per-pod custom metrics an HPA scales on, with their targets.
func podMetrics(h *autoscalingv2.HorizontalPodAutoscaler) map[string]string {
	m := map[string]string{}
	for _, s := range h.Spec.Metrics {
		if s.Type == autoscalingv2.PodsMetricSourceType && s.Pods != nil && s.Pods.Target.AverageValue != nil {
			m[s.Pods.Metric.Name] = s.Pods.Target.AverageValue.String()
		}
	}
	return m
}

// N6 (issue 24): the EKS profile scales on in-flight requests and open websockets per
// pod (the gateway's own gauges, listed in helm/README.md), next to CPU; the custom
// metrics API that serves them is the Prometheus adapter Terraform installs, whose
// rules name exactly these metrics.
func TestEKSScalesOnInFlightAndWebsockets(t *testing.T) {
	h := render(t, "gw", eks()...).get(t, "HorizontalPodAutoscaler", "gw-infura-gateway").(*autoscalingv2.HorizontalPodAutoscaler)
	got := podMetrics(h)
	want := map[string]string{"gateway_requests_in_flight": "128", "gateway_ws_client_connections": "2k"}
	if len(got) != len(want) {
		t.Errorf("HPA pod metrics %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("HPA pod metric %s target %q, want %q", k, got[k], v)
		}
	}
	cpu := false
	for _, s := range h.Spec.Metrics {
		cpu = cpu || (s.Type == autoscalingv2.ResourceMetricSourceType && s.Resource.Name == "cpu")
	}
	if !cpu {
		t.Error("the EKS HPA dropped CPU")
	}
	readme := string(readFile(t, "../../README.md"))
	names := make([]string, 0, len(got))
	for name := range got {
		names = append(names, name)
		if !strings.Contains(readme, "- "+name+" gauge") {
			t.Errorf("%s is not a gauge of helm/README.md's metric list", name)
		}
	}
	sort.Strings(names)

	// The adapter's rules (terraform/modules/monitoring-values) serve these names.
	out, err := applyModule(t, "../../../terraform/modules/monitoring-values",
		`  alert_receiver = { slack_webhook_url = "https://hooks.slack.com/services/T000/B000/XXXX" }`, "adapter_documents")
	if err != nil {
		t.Fatal(err)
	}
	var adapter struct {
		Rules struct {
			Default bool `json:"default"`
			Custom  []struct {
				SeriesQuery string `json:"seriesQuery"`
				Name        struct {
					As string `json:"as"`
				} `json:"name"`
				MetricsQuery string `json:"metricsQuery"`
				Resources    struct {
					Overrides map[string]map[string]string `json:"overrides"`
				} `json:"resources"`
			} `json:"custom"`
		} `json:"rules"`
	}
	if err := yaml.Unmarshal([]byte(out["adapter_documents"]), &adapter); err != nil {
		t.Fatal(err)
	}
	var served []string
	for _, r := range adapter.Rules.Custom {
		served = append(served, r.Name.As)
		if !strings.HasPrefix(r.SeriesQuery, r.Name.As+"{") || !strings.Contains(r.SeriesQuery, `job="infura-gateway"`) {
			t.Errorf("rule %s: seriesQuery %q must select the gateway's own series", r.Name.As, r.SeriesQuery)
		}
		// A pod's gauge has one series per network: the HPA reads the pod's total.
		if r.MetricsQuery != "sum by (<<.GroupBy>>) (<<.Series>>{<<.LabelMatchers>>})" {
			t.Errorf("rule %s: metricsQuery %q must add a pod's series (one per network)", r.Name.As, r.MetricsQuery)
		}
		if r.Resources.Overrides["pod"]["resource"] != "pod" || r.Resources.Overrides["namespace"]["resource"] != "namespace" {
			t.Errorf("rule %s: pod and namespace labels must map to their resources: %v", r.Name.As, r.Resources.Overrides)
		}
	}
	sort.Strings(served)
	if strings.Join(served, ",") != strings.Join(names, ",") {
		t.Errorf("the adapter serves %v, the HPA reads %v", served, names)
	}
}

// An in-flight target at or past the upstream connections would only scale once
// requests already queue.
func TestInFlightTargetBelowUpstreamConns(t *testing.T) {
	out, err := helm(append([]string{"template", "gw", chartDir, "--kube-version", kubeVersion},
		eks("--set", "autoscaling.targetInFlightPerPod=512")...)...)
	if err == nil || !strings.Contains(err.Error(), "upstreamMaxConns") {
		t.Errorf("targetInFlightPerPod=512 with 512 upstream connections: %v\n%.300s", err, out)
	}
}

// N6 (issue 24): the memory request is what the byte budgets let the gateway hold
// (cache, pending request bytes, the anonymous table, 32 KiB per connection of
// MAX_CONNS, 64 MiB runtime) when that is
// more than resources.requests.memory, and budgets that do not fit under GOMEMLIMIT
// are refused.
func TestMemoryRequestFromBudgets(t *testing.T) {
	keys := keysFile(t)
	cases := map[string]struct {
		args []string
		want string
	}{
		"default: 128 + 128 + 64 MiB + 2048 connections of 32 KiB": {values(""), "384Mi"},
		"eks: 256 + 256 + 64 MiB + 16384 connections":              {eks(), "1088Mi"},
		"eks with an anonymous plan: + 64 MiB":                     {eks("-f", keys, "--set", "config.anonymous.plan=anonymous"), "1152Mi"},
		"anonymous table of 32 MiB":                                {eks("-f", keys, "--set", "config.anonymous.plan=anonymous", "--set", "config.anonymous.max_bytes=33554432"), "1120Mi"},
		"cache off: not counted":                                   {append(values(""), "--set", "config.cacheEnabled=false"), "256Mi"},
		"20000 connections: 625 MiB":                               {append(values(""), "--set", "config.maxConns=20000", "--set", "resources.limits.memory=2Gi"), "945Mi"},
		"no connection bound: none counted":                        {append(values(""), "--set", "config.maxConns=0"), "320Mi"},
		"a larger request stays":                                   {append(values(""), "--set", "resources.requests.memory=400Mi"), "400Mi"},
		"a larger request in Gi stays":                             {append(values(""), "--set", "resources.limits.memory=2Gi", "--set", "resources.requests.memory=1Gi"), "1Gi"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, gw := gateway(t, render(t, "gw", c.args...), "gw-infura-gateway")
			req, limit := gw.Resources.Requests.Memory(), gw.Resources.Limits.Memory()
			if req.String() != c.want {
				t.Errorf("requests.memory %s, want %s", req, c.want)
			}
			if req.Cmp(*limit) > 0 {
				t.Errorf("requests.memory %s above limits.memory %s", req, limit)
			}
			env := envOf(gw)
			for _, name := range []string{"CACHE_MAX_BYTES", "MAX_PENDING_BYTES", "MAX_ANSWER_BYTES", "MAX_BODY_READ_BYTES", "MAX_CONNS"} {
				if env[name].Value == "" {
					t.Errorf("the byte budgets must reach the gateway: %s is not set", name)
				}
			}
		})
	}
	out, err := helm(append([]string{"template", "gw", chartDir, "--kube-version", kubeVersion}, append(values(""), "--set", "config.cacheMaxBytes=536870912")...)...)
	if err == nil || !strings.Contains(err.Error(), "exceed GOMEMLIMIT") {
		t.Errorf("a 512 MiB cache under a 512 Mi limit was accepted: %v\n%.300s", err, out)
	}
}

// The connection bounds reach the gateway: the total the memory request counts, and a
// per-address bound only where the PROXY protocol names each client (values-eks.yaml);
// behind a plain-HTTP balancer every client would share its address.
func TestConnectionBounds(t *testing.T) {
	cases := map[string]struct {
		args         []string
		total, perIP string
	}{
		"default":  {values(""), "2048", "0"},
		"eks":      {eks(), "16384", "256"},
		"no bound": {append(values(""), "--set", "config.maxConns=0"), "0", "0"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, gw := gateway(t, render(t, "gw", c.args...), "gw-infura-gateway")
			env := envOf(gw)
			if env["MAX_CONNS"].Value != c.total || env["MAX_CONNS_PER_IP"].Value != c.perIP {
				t.Errorf("MAX_CONNS %q, MAX_CONNS_PER_IP %q; want %q, %q", env["MAX_CONNS"].Value, env["MAX_CONNS_PER_IP"].Value, c.total, c.perIP)
			}
		})
	}
	out, err := helm(append([]string{"template", "gw", chartDir, "--kube-version", kubeVersion}, append(values(""), "--set", "config.maxConns=-1")...)...)
	if err == nil {
		t.Errorf("config.maxConns=-1 was accepted:\n%.300s", out)
	}
}

// checkMemoryLimitEnv: the gateway gets its container's memory limit through the
// downward API and a fraction of it within [lo, hi]; the chart sets no GOMEMLIMIT
// (the gateway would take it over the container's limit).
func checkMemoryLimitEnv(t *testing.T, c corev1.Container, lo, hi float64) {
	t.Helper()
	env := envOf(c)
	if e, ok := env["GOMEMLIMIT"]; ok {
		t.Errorf("the chart sets GOMEMLIMIT=%q: a number fixed at render time that would override the container's limit", e.Value)
	}
	ref := env["CONTAINER_MEMORY_LIMIT"].ValueFrom
	if ref == nil || ref.ResourceFieldRef == nil || ref.ResourceFieldRef.Resource != "limits.memory" ||
		ref.ResourceFieldRef.ContainerName != c.Name || (!ref.ResourceFieldRef.Divisor.IsZero() && ref.ResourceFieldRef.Divisor.Value() != 1) {
		t.Errorf("CONTAINER_MEMORY_LIMIT must come from the downward API's limits.memory of container %q, in bytes: %+v", c.Name, env["CONTAINER_MEMORY_LIMIT"])
	}
	f, err := strconv.ParseFloat(env["MEMORY_LIMIT_FRACTION"].Value, 64)
	if err != nil || f < lo || f > hi {
		t.Errorf("MEMORY_LIMIT_FRACTION %q: want %v-%v", env["MEMORY_LIMIT_FRACTION"].Value, lo, hi)
	}
}

// N6 (issue 24): GOMEMLIMIT follows the container's limit as the pod has it. The chart
// passes limits.memory through the downward API and goMemLimitPercent as a fraction;
// the gateway computes the limit at start (TestLiveGoMemLimitFromContainerLimit runs it).
func TestGoMemLimitFromDownwardAPI(t *testing.T) {
	cases := map[string]struct {
		args       []string
		deployment string
		want       float64
	}{
		"default":               {values(""), "gw-infura-gateway", 0.9},
		"eks":                   {eks(), "gw-infura-gateway", 0.9},
		"full (85 %)":           {values("values-full.yaml"), "gateway-full", 0.85},
		"goMemLimitPercent=100": {append(values(""), "--set", "goMemLimitPercent=100"), "gw-infura-gateway", 1},
		"goMemLimitPercent=75":  {append(values(""), "--set", "goMemLimitPercent=75"), "gw-infura-gateway", 0.75},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, gw := gateway(t, render(t, "gw", c.args...), c.deployment)
			checkMemoryLimitEnv(t, gw, c.want, c.want)
		})
	}
}
