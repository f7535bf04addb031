package chart

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// applyModule applies a Terraform module without providers offline, with the given
// inputs, and returns `terraform output -raw NAME` for each name (sensitive outputs
// included). err is the apply's error, for the cases that must be refused.
func applyModule(t *testing.T, module, inputs string, outputs ...string) (map[string]string, error) {
	t.Helper()
	tf, err := exec.LookPath("terraform")
	if err != nil {
		t.Fatal("terraform is needed (as for ./task lint:tf): ", err)
	}
	abs, err := filepath.Abs(module)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	main := fmt.Sprintf("module \"m\" {\n  source = %q\n%s\n}\n", abs, inputs)
	for _, o := range outputs {
		main += fmt.Sprintf("\noutput %q {\n  value     = module.m.%s\n  sensitive = true\n}\n", o, o)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.tf"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) ([]byte, error) {
		cmd := exec.Command(tf, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "TF_IN_AUTOMATION=1", "TF_INPUT=0")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return out, fmt.Errorf("terraform %v: %w\n%s%s", args, err, out, stderr.String())
		}
		return out, nil
	}
	if _, err := run("init", "-backend=false", "-no-color"); err != nil {
		t.Fatal(err)
	}
	if _, err := run("apply", "-auto-approve", "-no-color"); err != nil {
		return nil, err
	}
	got := map[string]string{}
	for _, o := range outputs {
		out, err := run("output", "-json", o)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := json.Unmarshal(out, &v); err != nil {
			t.Fatal(err)
		}
		switch v := v.(type) {
		case string:
			got[o] = v
		case []any: // documents: one YAML document
			if len(v) != 1 {
				t.Fatalf("%s: want one document, got %d", o, len(v))
			}
			got[o] = v[0].(string)
		default:
			t.Fatalf("%s: unexpected output %T", o, v)
		}
	}
	return got, nil
}

// amtoolCheck runs `amtool check-config` (Alertmanager 0.25, Debian's
// prometheus-alertmanager, which ./task lint:helm installs) on config.
func amtoolCheck(t *testing.T, config string) error {
	t.Helper()
	amtool, err := exec.LookPath("amtool")
	if err != nil {
		t.Fatal("amtool is needed: ./task lint:helm installs it (apt-get install prometheus-alertmanager): ", err)
	}
	f := filepath.Join(t.TempDir(), "alertmanager.yaml")
	if err := os.WriteFile(f, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(amtool, "check-config", f).CombinedOutput()
	if err != nil {
		return fmt.Errorf("amtool check-config: %w\n%s", err, out)
	}
	return nil
}

type amRoute struct {
	Receiver string    `json:"receiver"`
	Matchers []string  `json:"matchers"`
	Continue bool      `json:"continue"`
	Routes   []amRoute `json:"routes"`
}

type amConfig struct {
	Route     amRoute `json:"route"`
	Receivers []struct {
		Name             string           `json:"name"`
		SlackConfigs     []map[string]any `json:"slack_configs"`
		PagerdutyConfigs []map[string]any `json:"pagerduty_configs"`
		SNSConfigs       []struct {
			TopicARN string            `json:"topic_arn"`
			SigV4    map[string]string `json:"sigv4"`
			Subject  string            `json:"subject"`
			Message  string            `json:"message"`
		} `json:"sns_configs"`
	} `json:"receivers"`
}

// amtoolRoutes returns the receivers, in order, an alert with labels is routed to
// (`amtool config routes test`): what Alertmanager itself makes of the routing tree,
// child routes' continue and fallbacks included.
func amtoolRoutes(t *testing.T, config string, labels ...string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "alertmanager.yaml")
	if err := os.WriteFile(f, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("amtool", append([]string{"config", "routes", "test", "--config.file=" + f}, labels...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("amtool config routes test %v: %v\n%s", labels, err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// N3 (issue 24): the Alertmanager configuration Terraform gives kube-prometheus-stack
// routes every alert to a person (Slack, PagerDuty and/or an SNS topic; critical ones
// page), is valid for Alertmanager (amtool check-config), routes as intended (amtool
// config routes test), and Prometheus and Alertmanager keep their data on gp3 volumes
// with a retention sized to the volume. SNS publishes with SigV4 credentials of an IRSA
// role (the Alertmanager service account's annotation) in the topic's region.
func TestMonitoringValues(t *testing.T) {
	const module = "../../../terraform/modules/monitoring-values"
	slack := `slack_webhook_url = "https://hooks.slack.com/services/T000/B000/XXXX", slack_channel = "#gateway"`
	pd := `pagerduty_routing_key = "0123456789abcdef0123456789abcdef"`
	const topic = "arn:aws:sns:eu-west-1:123456789012:gateway-alerts"
	sns := `sns_topic_arn = "` + topic + `"`
	const role = `  sns_role_arn = "arn:aws:iam::123456789012:role/alertmanager-sns"`
	cases := map[string]struct {
		receiver, extra   string
		defaultTo         string
		criticalToPager   bool
		slacks, pagerduty int
		sns               int
		// The receivers, in order, of a critical and of a warning alert.
		critical, warning string
	}{
		"slack":                 {receiver: slack, defaultTo: "slack", slacks: 1, critical: "slack", warning: "slack"},
		"pagerduty":             {receiver: pd, defaultTo: "pagerduty", pagerduty: 1, critical: "pagerduty", warning: "pagerduty"},
		"slack and pagerduty":   {receiver: slack + ", " + pd, defaultTo: "slack", criticalToPager: true, slacks: 1, pagerduty: 1, critical: "pagerduty,slack", warning: "slack"},
		"slack without channel": {receiver: `slack_webhook_url = "https://hooks.slack.com/services/T000/B000/XXXX"`, defaultTo: "slack", slacks: 1, critical: "slack", warning: "slack"},
		"sns":                   {receiver: sns, extra: role, defaultTo: "sns", sns: 1, critical: "sns", warning: "sns"},
		"slack and sns":         {receiver: slack + ", " + sns, extra: role, defaultTo: "slack", slacks: 1, sns: 1, critical: "sns,slack", warning: "sns,slack"},
		"pagerduty and sns":     {receiver: pd + ", " + sns, extra: role, defaultTo: "sns", criticalToPager: true, pagerduty: 1, sns: 1, critical: "pagerduty,sns", warning: "sns"},
		"all three":             {receiver: slack + ", " + pd + ", " + sns, extra: role, defaultTo: "slack", criticalToPager: true, slacks: 1, pagerduty: 1, sns: 1, critical: "pagerduty,sns,slack", warning: "sns,slack"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			inputs := "  alert_receiver = { " + c.receiver + " }\n  prometheus_storage_gib = 50\n" + c.extra
			out, err := applyModule(t, module, inputs, "alertmanager_config", "documents")
			if err != nil {
				t.Fatal(err)
			}
			if err := amtoolCheck(t, out["alertmanager_config"]); err != nil {
				t.Fatal(err)
			}
			for _, r := range []struct{ labels, want string }{
				{"severity=critical", c.critical},
				{"severity=warning", c.warning},
			} {
				if got := amtoolRoutes(t, out["alertmanager_config"], "alertname=InfuraGatewayTargetDown", "namespace=gw", r.labels); got != r.want {
					t.Errorf("an alert with %s goes to %q, want %q", r.labels, got, r.want)
				}
			}
			if got := amtoolRoutes(t, out["alertmanager_config"], "alertname=Watchdog", "severity=none"); got != "null" {
				t.Errorf("Watchdog goes to %q, want null", got)
			}
			var am amConfig
			if err := yaml.Unmarshal([]byte(out["alertmanager_config"]), &am); err != nil {
				t.Fatal(err)
			}
			if am.Route.Receiver != c.defaultTo {
				t.Errorf("default route to %q, want %q", am.Route.Receiver, c.defaultTo)
			}
			slacks, pagers, snss := 0, 0, 0
			for _, r := range am.Receivers {
				slacks += len(r.SlackConfigs)
				pagers += len(r.PagerdutyConfigs)
				snss += len(r.SNSConfigs)
				if r.Name == am.Route.Receiver && len(r.SlackConfigs)+len(r.PagerdutyConfigs)+len(r.SNSConfigs) == 0 {
					t.Errorf("the default receiver %q notifies nobody", r.Name)
				}
				for _, s := range r.SNSConfigs {
					if s.TopicARN != topic || s.SigV4["region"] != "eu-west-1" || s.Subject == "" || s.Message == "" {
						t.Errorf("sns config %+v: want the topic, SigV4 in its region (eu-west-1), a subject and a message", s)
					}
				}
			}
			if slacks != c.slacks || pagers != c.pagerduty || snss != c.sns {
				t.Errorf("%d Slack, %d PagerDuty, %d SNS configs: want %d, %d, %d", slacks, pagers, snss, c.slacks, c.pagerduty, c.sns)
			}
			watchdogMuted, critical := false, false
			for _, r := range am.Route.Routes {
				m := strings.Join(r.Matchers, ",")
				watchdogMuted = watchdogMuted || (r.Receiver == "null" && m == `alertname = "Watchdog"`)
				critical = critical || (r.Receiver == "pagerduty" && m == `severity = "critical"` && r.Continue)
				if r.Receiver == "null" && !strings.HasPrefix(m, "alertname = ") {
					t.Errorf("route %q to null drops more than a named alert", m)
				}
			}
			if !watchdogMuted || critical != c.criticalToPager {
				t.Errorf("routes %+v: Watchdog to null %v, critical pages (and continues) %v (want %v)", am.Route.Routes, watchdogMuted, critical, c.criticalToPager)
			}

			var v struct {
				Prometheus struct {
					PrometheusSpec struct {
						Retention     string         `json:"retention"`
						RetentionSize string         `json:"retentionSize"`
						StorageSpec   map[string]any `json:"storageSpec"`
					} `json:"prometheusSpec"`
				} `json:"prometheus"`
				Alertmanager struct {
					Config           map[string]any `json:"config"`
					AlertmanagerSpec struct {
						Storage map[string]any `json:"storage"`
					} `json:"alertmanagerSpec"`
					ServiceAccount struct {
						Annotations map[string]string `json:"annotations"`
					} `json:"serviceAccount"`
				} `json:"alertmanager"`
			}
			if err := yaml.UnmarshalStrict([]byte(out["documents"]), &v); err != nil {
				t.Fatal(err)
			}
			ps := v.Prometheus.PrometheusSpec
			if ps.Retention != "15d" || ps.RetentionSize != "42GB" {
				t.Errorf("retention %q / %q: want 15d and 85%% of the 50 GiB volume (42GB)", ps.Retention, ps.RetentionSize)
			}
			for what, s := range map[string]map[string]any{"prometheus": ps.StorageSpec, "alertmanager": v.Alertmanager.AlertmanagerSpec.Storage} {
				b, _ := json.Marshal(s)
				if !strings.Contains(string(b), `"storageClassName":"gp3"`) || !strings.Contains(string(b), `"ReadWriteOnce"`) {
					t.Errorf("%s storage %s: want a gp3 volumeClaimTemplate", what, b)
				}
			}
			// SNS: Alertmanager's pods take the IRSA role that may publish to the topic.
			if got, want := v.Alertmanager.ServiceAccount.Annotations["eks.amazonaws.com/role-arn"], map[bool]string{true: "arn:aws:iam::123456789012:role/alertmanager-sns"}[c.sns > 0]; got != want {
				t.Errorf("alertmanager service account role %q, want %q", got, want)
			}
			if v.Alertmanager.Config["route"] == nil || len(v.Alertmanager.Config["receivers"].([]any)) < 2 {
				t.Errorf("alertmanager.config not in the values: %v", v.Alertmanager.Config)
			}
		})
	}

	t.Run("no receiver is refused", func(t *testing.T) {
		if _, err := applyModule(t, module, "  alert_receiver = {}"); err == nil || !strings.Contains(err.Error(), "reach nobody") {
			t.Errorf("a configuration without a receiver was accepted: %v", err)
		}
	})
	t.Run("sns needs its role", func(t *testing.T) {
		_, err := applyModule(t, module, "  alert_receiver = { sns_topic_arn = \"arn:aws:sns:eu-west-1:123456789012:a\" }")
		if err == nil || !strings.Contains(err.Error(), "sns_role_arn") {
			t.Errorf("an SNS receiver without a role to publish with was accepted: %v", err)
		}
	})
	t.Run("sns topic must be an ARN", func(t *testing.T) {
		_, err := applyModule(t, module, "  alert_receiver = { sns_topic_arn = \"gateway-alerts\" }\n"+role)
		if err == nil || !strings.Contains(err.Error(), "sns_topic_arn") {
			t.Errorf("a topic that is no SNS ARN was accepted: %v", err)
		}
	})
	// amtool itself refuses a broken configuration: the check above checks something.
	t.Run("amtool refuses a route to a missing receiver", func(t *testing.T) {
		if err := amtoolCheck(t, "route:\n  receiver: slack\nreceivers:\n  - name: \"null\"\n"); err == nil {
			t.Error("amtool accepted a route to an undefined receiver")
		}
	})
}
