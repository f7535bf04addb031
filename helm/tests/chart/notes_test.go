package chart

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// copyDir copies the chart so a test can add a template without touching it.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		dt, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), dt, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// renderNotes renders NOTES.txt, which is not part of `helm template` output (and
// `helm install --dry-run` cannot take --kube-version), by wrapping it in a ConfigMap
// template inside a copy of the chart.
func renderNotes(t *testing.T, args ...string) string {
	t.Helper()
	chart := filepath.Join(t.TempDir(), "infura-gateway")
	copyDir(t, chartDir, chart)
	notes, err := os.ReadFile(filepath.Join(chart, "templates", "NOTES.txt"))
	if err != nil {
		t.Fatal(err)
	}
	wrapper := `{{- define "notes-under-test" }}` + string(notes) + `{{- end }}
apiVersion: v1
kind: ConfigMap
metadata:
  name: notes-under-test
data:
  notes: {{ include "notes-under-test" . | quote }}
`
	if err := os.WriteFile(filepath.Join(chart, "templates", "zz-notes.yaml"), []byte(wrapper), 0o644); err != nil {
		t.Fatal(err)
	}
	// Profiles are given as paths into the real chart; the copy renders the same.
	out, err := helm(append([]string{"template", "gw", chart, "--kube-version", kubeVersion, "--namespace", "gw",
		"--show-only", "templates/zz-notes.yaml"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	r, err := decodeAll(out)
	if err != nil {
		t.Fatal(err)
	}
	return r.get(t, "ConfigMap", "notes-under-test").(*corev1.ConfigMap).Data["notes"]
}

func TestNotesRender(t *testing.T) {
	cases := map[string]struct {
		args []string
		want []string
	}{
		"default": {values(""), []string{"port-forward svc/gw-infura-gateway 8000:8000", "helm test gw", "port-forward svc/gw-infura-gateway-metrics 9090:9090"}},
		"eks existing secret": {append(values("values-eks.yaml"), monitoringAPIs...),
			[]string{"load balancer", "rollout restart deploy/gw-infura-gateway", "ServiceMonitor gw-infura-gateway", "Grafana"}},
		// Monitoring asked for on a cluster without prometheus-operator's CRDs: skipped, and said so.
		"eks without CRDs": {values("values-eks.yaml"), []string{"no ServiceMonitor was rendered", "the alert rules were not rendered"}},
		"config file":      {values("values-full.yaml"), []string{"ConfigMap gateway-full-config", "rolls the pods"}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			text := renderNotes(t, c.args...)
			for _, w := range c.want {
				if !strings.Contains(text, w) {
					t.Errorf("NOTES lack %q:\n%s", w, text)
				}
			}
		})
	}
}
