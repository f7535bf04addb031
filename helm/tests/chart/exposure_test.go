package chart

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
)

const (
	annPrefix = "service.beta.kubernetes.io/aws-load-balancer-"
	certARN   = "arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d-1111-2222-3333-444455556666"
	vpcCIDR   = "10.42.0.0/16"
)

// keysFile is a values file with required keys (and an anonymous plan for the cases
// that allow anonymous calls); the upstream stays the flags' one.
func keysFile(t *testing.T) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "keys.yaml")
	body := `config:
  keys:
    entries:
      - {name: alice, sha256: "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae", plan: free}
  plans:
    free: {requests_per_second: 10, burst: 20}
    anonymous: {requests_per_second: 2, burst: 5}
`
	if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

func eks(extra ...string) []string {
	return append(values("values-eks.yaml"), extra...)
}

func publicTLS(extra ...string) []string {
	return eks(append([]string{"--set", "service.nlb.scheme=internet-facing", "--set", "service.nlb.certificateArn=" + certARN}, extra...)...)
}

// N1/N2 (issue 24): what the EKS profile's NLB looks like, closed by default.
func TestNLBExposure(t *testing.T) {
	keys := keysFile(t)
	cases := map[string]struct {
		args   []string
		public bool
		tls    bool
		anon   bool
	}{
		"eks default: internal, plaintext, no keys": {eks(), false, false, true},
		"internet-facing with TLS and keys":         {publicTLS("-f", keys), true, true, false},
		"internet-facing, anonymous allowed":        {publicTLS("-f", keys, "--set", "config.keys.required=false", "--set", "service.allowAnonymous=true", "--set", "config.anonymous.plan=anonymous"), true, true, true},
		"internal with TLS":                         {eks("--set", "service.nlb.certificateArn="+certARN), false, true, true},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			r := render(t, "gw", c.args...)
			svc := r.get(t, "Service", "gw-infura-gateway").(*corev1.Service)
			a := svc.Annotations
			wantScheme := map[bool]string{true: "internet-facing", false: "internal"}[c.public]
			if a[annPrefix+"scheme"] != wantScheme {
				t.Errorf("scheme %q, want %q", a[annPrefix+"scheme"], wantScheme)
			}
			// One port only: an NLB gets a listener per Service port, so a second port
			// would be a second (plaintext) listener.
			if len(svc.Spec.Ports) != 1 {
				t.Fatalf("Service ports %+v: want exactly one", svc.Spec.Ports)
			}
			port := svc.Spec.Ports[0].Port
			listenerAttr := ""
			for k := range a {
				if strings.HasPrefix(k, annPrefix+"listener-attributes.") {
					listenerAttr = k
				}
			}
			if c.tls {
				if a[annPrefix+"ssl-cert"] != certARN || a[annPrefix+"ssl-ports"] != "443" || port != 443 {
					t.Errorf("TLS: ssl-cert %q, ssl-ports %q, port %d: want the certificate on the one port 443", a[annPrefix+"ssl-cert"], a[annPrefix+"ssl-ports"], port)
				}
				if p := a[annPrefix+"ssl-negotiation-policy"]; !strings.HasPrefix(p, "ELBSecurityPolicy-TLS13-") {
					t.Errorf("ssl-negotiation-policy %q: want a TLS 1.3 policy", p)
				}
				// A TLS listener's idle timeout cannot be changed; the attribute would fail
				// the controller's reconcile.
				if listenerAttr != "" {
					t.Errorf("TLS listener with %s", listenerAttr)
				}
			} else {
				if _, ok := a[annPrefix+"ssl-cert"]; ok {
					t.Error("ssl-cert without a certificate")
				}
				if want := annPrefix + "listener-attributes.TCP-80"; listenerAttr != want || a[want] != "tcp.idle_timeout.seconds=3600" {
					t.Errorf("plaintext listener: %s=%q, want %s=tcp.idle_timeout.seconds=3600", listenerAttr, a[listenerAttr], want)
				}
			}
			// N2: PROXY v2 from the target group, read by the gateway from the VPC only.
			if a[annPrefix+"proxy-protocol"] != "*" {
				t.Errorf("proxy-protocol %q, want *", a[annPrefix+"proxy-protocol"])
			}
			_, gw := gateway(t, r, "gw-infura-gateway")
			env := envOf(gw)
			if env["PROXY_PROTOCOL"].Value != "true" || env["TRUSTED_PROXIES"].Value != vpcCIDR {
				t.Errorf("PROXY_PROTOCOL=%q TRUSTED_PROXIES=%q: want true and the VPC CIDR", env["PROXY_PROTOCOL"].Value, env["TRUSTED_PROXIES"].Value)
			}
			// Keys: a public endpoint requires them unless anonymous calls are allowed,
			// and then they are limited per address.
			file := ""
			if cm, ok := r.objs["ConfigMap/gw-infura-gateway-config"]; ok {
				file = cm.(*corev1.ConfigMap).Data["config.yaml"]
			}
			if c.public && !c.anon && (!strings.Contains(file, "sha256:") || strings.Contains(file, "required: false")) {
				t.Errorf("public endpoint without required keys:\n%s", file)
			}
			if c.public && c.anon && !strings.Contains(file, "plan: anonymous") {
				t.Errorf("public anonymous endpoint without an anonymous plan:\n%s", file)
			}
			if file != "" && env["UPSTREAM_HTTP_URL"].Value == "" && env["INFURA_PROJECT_ID"].ValueFrom == nil {
				t.Error("a configuration file of keys only must keep the flags' upstream")
			}
			if c.tls {
				notes := renderNotes(t, c.args...)
				if !strings.Contains(notes, "export GATEWAY=https://") || !strings.Contains(notes, ":443") {
					t.Errorf("NOTES must give the https URL:\n%s", notes)
				}
			}
		})
	}
}

// What a public endpoint must never be: plaintext, open to anyone, or configured
// around the chart's checks.
func TestNLBExposureRefused(t *testing.T) {
	keys := keysFile(t)
	cases := map[string]struct {
		args   []string
		want   string
		schema bool
	}{
		"internet-facing without TLS":     {eks("-f", keys, "--set", "service.nlb.scheme=internet-facing"), "plaintext", false},
		"internet-facing without keys":    {publicTLS(), "open relay", false},
		"keys not required":               {publicTLS("-f", keys, "--set", "config.keys.required=false"), "open relay", false},
		"anonymous without a plan":        {publicTLS("--set", "service.allowAnonymous=true"), "anonymous.plan", false},
		"scheme set as an annotation":     {eks("--set-string", "service.annotations.service\\.beta\\.kubernetes\\.io/aws-load-balancer-scheme=internet-facing"), "through service.nlb", false},
		"proxy protocol, no trust":        {eks("--set", "config.trustedProxies=null"), "trustedProxies", false},
		"proxy protocol off in file":      {eks("-f", keys, "--set", "config.clients.proxy_protocol=false"), "proxy_protocol", false},
		"public LoadBalancer, no keys":    {append(values(""), "--set", "service.type=LoadBalancer"), "open relay", false},
		"AWS annotations, public, no TLS": {append(values(""), "-f", keys, "--set", "service.type=LoadBalancer", "--set-string", "service.annotations.service\\.beta\\.kubernetes\\.io/aws-load-balancer-type=external", "--set-string", "service.annotations.service\\.beta\\.kubernetes\\.io/aws-load-balancer-scheme=internet-facing"), "plaintext", false},
		"nlb on a ClusterIP":              {append(values(""), "--set", "service.nlb.enabled=true"), "LoadBalancer", false},
		"eks without a digest":            {eks("--set", "image.digest="), "image.digest", false},
		"bad scheme":                      {eks("--set", "service.nlb.scheme=public"), "scheme", true},
		"certificate not an ACM ARN":      {eks("--set", "service.nlb.certificateArn=mycert"), "certificateArn", true},
		"TLS 1.2 policy":                  {eks("--set", "service.nlb.sslNegotiationPolicy=ELBSecurityPolicy-2016-08"), "sslNegotiationPolicy", true},
		"bad trusted proxy":               {eks("--set", "config.trustedProxies={vpc}"), "trustedProxies", true},
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

// N10 (issue 24): the EKS profile spreads over zones strictly (Karpenter launches a
// node in the zone asked for), over nodes as far as it can, and its PDB lets a
// drain evict pods that are not Ready.
func TestEKSPlacement(t *testing.T) {
	r := render(t, "gw", eks()...)
	d, _ := gateway(t, r, "gw-infura-gateway")
	spread := map[string]corev1.UnsatisfiableConstraintAction{}
	for _, c := range d.Spec.Template.Spec.TopologySpreadConstraints {
		spread[c.TopologyKey] = c.WhenUnsatisfiable
		if c.MaxSkew != 1 || len(c.MatchLabelKeys) != 1 || c.MatchLabelKeys[0] != "pod-template-hash" {
			t.Errorf("%s: maxSkew %d, matchLabelKeys %v: want 1 and pod-template-hash (a rollout's new set spreads on its own)", c.TopologyKey, c.MaxSkew, c.MatchLabelKeys)
		}
	}
	if spread["topology.kubernetes.io/zone"] != corev1.DoNotSchedule || spread["kubernetes.io/hostname"] != corev1.ScheduleAnyway {
		t.Errorf("spread %v: want zone DoNotSchedule, hostname ScheduleAnyway", spread)
	}
	pdb := r.get(t, "PodDisruptionBudget", "gw-infura-gateway").(*policyv1.PodDisruptionBudget)
	if pdb.Spec.UnhealthyPodEvictionPolicy == nil || *pdb.Spec.UnhealthyPodEvictionPolicy != policyv1.AlwaysAllow {
		t.Errorf("PDB unhealthyPodEvictionPolicy %v: want AlwaysAllow", pdb.Spec.UnhealthyPodEvictionPolicy)
	}
	for k, v := range pdb.Spec.Selector.MatchLabels {
		if d.Spec.Template.Labels[k] != v {
			t.Errorf("PDB selects %s=%s, pod has %q", k, v, d.Spec.Template.Labels[k])
		}
	}
	// The default profile keeps both constraints soft (small clusters stay schedulable).
	d, _ = gateway(t, render(t, "gw", values("")...), "gw-infura-gateway")
	for _, c := range d.Spec.Template.Spec.TopologySpreadConstraints {
		if c.WhenUnsatisfiable != corev1.ScheduleAnyway {
			t.Errorf("default profile: %s is %s", c.TopologyKey, c.WhenUnsatisfiable)
		}
	}
}
