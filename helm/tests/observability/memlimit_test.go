package observability

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// gatewayBin is $GATEWAY_BIN (./task lint:dashboards passes the built one) or a fresh build.
func gatewayBin(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("GATEWAY_BIN"); bin != "" {
		return bin
	}
	bin := filepath.Join(t.TempDir(), "infura-gateway")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build of the gateway: %v\n%s", err, out)
	}
	return bin
}

// deploymentEnv renders the chart with args and returns the gateway container's
// environment as the kubelet would give it to a container whose memory limit is
// limitBytes: plain values as they are, the downward API's limits.memory resolved.
// Variables from Secrets are left out.
func deploymentEnv(t *testing.T, limitBytes int64, args ...string) []string {
	t.Helper()
	args = append([]string{"template", "gw", chartDir, "--kube-version", "1.32.0", "--show-only", "templates/deployment.yaml",
		"--set", "image.repository=r/gw"}, args...)
	render := exec.Command(strings.TrimSpace(string(helmBinary(t))), args...)
	var stderr bytes.Buffer
	render.Stderr = &stderr
	manifest, err := render.Output()
	if err != nil {
		t.Fatalf("helm %v: %v\n%s", args, err, stderr.String())
	}
	var d struct {
		Spec struct {
			Template struct {
				Spec struct {
					Containers []struct {
						Env []struct {
							Name      string `json:"name"`
							Value     string `json:"value"`
							ValueFrom *struct {
								ResourceFieldRef *struct {
									Resource string `json:"resource"`
									Divisor  string `json:"divisor"`
								} `json:"resourceFieldRef"`
							} `json:"valueFrom"`
						} `json:"env"`
					} `json:"containers"`
				} `json:"spec"`
			} `json:"template"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(manifest, &d); err != nil || len(d.Spec.Template.Spec.Containers) == 0 {
		t.Fatalf("no Deployment rendered: %v\n%s", err, manifest)
	}
	var env []string
	for _, e := range d.Spec.Template.Spec.Containers[0].Env {
		switch {
		case e.ValueFrom == nil:
			env = append(env, e.Name+"="+e.Value)
		case e.ValueFrom.ResourceFieldRef != nil:
			if r := e.ValueFrom.ResourceFieldRef; r.Resource != "limits.memory" || (r.Divisor != "" && r.Divisor != "1") {
				t.Fatalf("%s: resourceFieldRef %+v: this test resolves limits.memory in bytes only", e.Name, *r)
			}
			env = append(env, fmt.Sprintf("%s=%d", e.Name, limitBytes))
		}
	}
	return env
}

// N6 (issue 24): the gateway as the chart runs it sets the Go memory limit from the
// limit the container has when it starts (here one the values never mention, as
// after a LimitRange or a VPA changed it), not from the values; GOMEMLIMIT given
// explicitly (extraEnv) wins. Read back from the runtime itself (go_memlimit_bytes on
// the admin /metrics) and from the start-up log line.
func TestLiveGoMemLimitFromContainerLimit(t *testing.T) {
	bin := gatewayBin(t)
	closed := freeAddr(t)
	const limit = 700 << 20 // the values say 512Mi
	cases := map[string]struct {
		args   []string
		want   int64
		source string
	}{
		"90 % of the container's limit": {nil, limit * 9 / 10, `"source":"container"`},
		"goMemLimitPercent=75":          {[]string{"--set", "goMemLimitPercent=75"}, limit * 3 / 4, `"source":"container"`},
		"GOMEMLIMIT in extraEnv wins": {[]string{"--set", "extraEnv[0].name=GOMEMLIMIT", "--set", "extraEnv[0].value=300MiB"},
			300 << 20, `"source":"GOMEMLIMIT"`},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			env := deploymentEnv(t, limit, append([]string{"--set", "config.upstreamHttpUrl=http://" + closed,
				"--set", "config.upstreamWsUrl=off"}, c.args...)...)
			public, admin := freeAddr(t), freeAddr(t)
			cmd := exec.Command(bin, "-listen", public, "-admin-listen", admin)
			// Only the chart's settings: nothing from this process's environment.
			cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
			logs, exited := startProcess(t, cmd)
			var got string
			deadline := time.Now().Add(15 * time.Second)
			for {
				status, body, err := get("http://" + admin + "/metrics")
				if err == nil && status == 200 {
					if m := regexp.MustCompile(`(?m)^go_memlimit_bytes (\S+)$`).FindSubmatch(body); m != nil {
						got = string(m[1])
					}
					break
				}
				select {
				case err := <-exited:
					exited <- err
					t.Fatalf("the gateway exited (%v) with the chart's settings %v:\n%s", err, env, logs.String())
				default:
				}
				if time.Now().After(deadline) {
					t.Fatalf("no /metrics on %s: %v\n%s", admin, err, logs.String())
				}
				time.Sleep(100 * time.Millisecond)
			}
			if got != fmt.Sprint(c.want) {
				t.Errorf("go_memlimit_bytes %s, want %d (env %v)", got, c.want, env)
			}
			line := ""
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, `"msg":"memory limit"`) {
					line = l
				}
			}
			if !strings.Contains(line, c.source) || !strings.Contains(line, fmt.Sprintf(`"gomemlimit_bytes":%d`, c.want)) {
				t.Errorf("start-up log line %q: want %s and gomemlimit_bytes %d\n%s", line, c.source, c.want, logs.String())
			}
		})
	}
}
