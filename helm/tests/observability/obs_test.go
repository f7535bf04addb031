// Package observability checks the Grafana dashboard and the Prometheus alert rules
// against each other, against the metric list of helm/README.md, against the runbook
// and against the metrics a real gateway exposes on its admin port, configured with
// the file the chart renders. PromQL is parsed by promtool (the Debian prometheus
// package), not by linking the Prometheus Go module.
package observability

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

const (
	root          = "../../.."
	dashboardPath = root + "/helm/infura-gateway/files/dashboard.json"
	alertsPath    = root + "/helm/infura-gateway/files/alerts.yaml"
	runbookPath   = root + "/helm/infura-gateway/RUNBOOK.md"
	chartDir      = root + "/helm/infura-gateway"
	// The "## Metrics" section of the chart's README lists every metric family the
	// dashboard and alerts may use.
	contractPath = root + "/helm/README.md"
)

// Metrics Prometheus itself attaches to every target.
var scrapeSynthetic = map[string]bool{"up": true, "scrape_duration_seconds": true}

func promtool() string {
	if p := os.Getenv("PROMTOOL"); p != "" {
		return p
	}
	return "promtool"
}

type target struct {
	RefID      string          `json:"refId"`
	Expr       string          `json:"expr"`
	Datasource json.RawMessage `json:"datasource"`
}

type panel struct {
	ID         int             `json:"id"`
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Datasource json.RawMessage `json:"datasource"`
	GridPos    *struct{ H, W, X, Y int }
	Targets    []target `json:"targets"`
	Panels     []panel  `json:"panels"`
}

type dashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
			Datasource json.RawMessage `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	dt, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(dt))
	var d dashboard
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	return d
}

func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

// expr is one PromQL expression and where it came from.
type expr struct{ where, q string }

func dashboardExprs(t *testing.T, d dashboard) []expr {
	t.Helper()
	var out []expr
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			out = append(out, expr{fmt.Sprintf("panel %d %q target %s", p.ID, p.Title, tg.RefID), tg.Expr})
		}
	}
	// Query variables: label_values(<selector>, label) wraps a series selector.
	lv := regexp.MustCompile(`^label_values\((.*),\s*\w+\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := lv.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Errorf("variable %s: unsupported query %q", v.Name, v.Definition)
			continue
		}
		out = append(out, expr{"variable " + v.Name, m[1]})
	}
	return out
}

var (
	grafanaRange = regexp.MustCompile(`\$__(rate_interval|interval|range)\b`)
	grafanaVar   = regexp.MustCompile(`\$\{?([A-Za-z_]\w*)\}?`)
)

// substitute replaces Grafana variables with values that keep the PromQL
// valid: durations for the interval macros, a match-all regex otherwise.
func substitute(q string) string {
	q = grafanaRange.ReplaceAllString(q, "5m")
	return grafanaVar.ReplaceAllString(q, ".*")
}

// checkExprs writes each expression as a recording rule and runs
// `promtool check rules` on the file: promtool parses every expr fully.
func checkExprs(exprs []expr) (string, error) {
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard-exprs\n    rules:\n")
	for i, e := range exprs {
		q, _ := json.Marshal(substitute(e.q)) // JSON strings are valid YAML scalars
		fmt.Fprintf(&b, "      # %s\n      - record: dashboard:expr_%d\n        expr: %s\n", e.where, i, q)
	}
	dir, err := os.MkdirTemp("", "obscheck")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "dashboard-exprs.rules.yaml")
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		return "", err
	}
	out, err := exec.Command(promtool(), "check", "rules", file).CombinedOutput()
	return string(out), err
}

func TestDashboardStructure(t *testing.T) {
	d := loadDashboard(t)
	if d.UID != "infura-gateway" {
		t.Errorf("dashboard uid %q: keep it stable (links and provisioning use it)", d.UID)
	}
	var dsVar bool
	for _, v := range d.Templating.List {
		if v.Name == "datasource" {
			var q string
			_ = json.Unmarshal(v.Query, &q)
			dsVar = v.Type == "datasource" && q == "prometheus"
		}
	}
	if !dsVar {
		t.Error(`no datasource variable "datasource" of type datasource/prometheus`)
	}
	wantDS := func(where string, raw json.RawMessage) {
		var ds struct{ Type, UID string }
		if err := json.Unmarshal(raw, &ds); err != nil || ds.Type != "prometheus" || ds.UID != "${datasource}" {
			t.Errorf("%s: datasource %s, want {type: prometheus, uid: ${datasource}}", where, raw)
		}
	}
	ids := map[int]bool{}
	for _, p := range allPanels(d.Panels) {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos == nil || p.GridPos.W == 0 || p.GridPos.H == 0 {
			t.Errorf("panel %d %q has no gridPos", p.ID, p.Title)
		}
		if p.Type == "row" {
			continue
		}
		wantDS(fmt.Sprintf("panel %d %q", p.ID, p.Title), p.Datasource)
		if len(p.Targets) == 0 {
			t.Errorf("panel %d %q has no queries", p.ID, p.Title)
		}
		for _, tg := range p.Targets {
			wantDS(fmt.Sprintf("panel %d target %s", p.ID, tg.RefID), tg.Datasource)
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %d target %s has an empty expr", p.ID, tg.RefID)
			}
		}
	}
}

// The dashboard's details: cores are not a percentage, one axis has one unit, pods
// are shown by name, memory next to its limit, 5xx ratios over user routes only.
func TestDashboardDetails(t *testing.T) {
	dt, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			ID          int    `json:"id"`
			Type        string `json:"type"`
			Title       string `json:"title"`
			FieldConfig struct {
				Defaults struct {
					Unit   string `json:"unit"`
					Custom struct {
						AxisLabel string `json:"axisLabel"`
					} `json:"custom"`
				} `json:"defaults"`
			} `json:"fieldConfig"`
			Targets []struct {
				Expr         string `json:"expr"`
				LegendFormat string `json:"legendFormat"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name string `json:"name"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(dt, &d); err != nil {
		t.Fatal(err)
	}
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
	}
	if !vars["pod"] || vars["instance"] {
		t.Error("the dashboard selects pods by name ($pod), not by IP:port ($instance)")
	}
	memLimit := false
	for _, p := range d.Panels {
		where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
		unit := p.FieldConfig.Defaults.Unit
		var quantile, rate, increase, other int
		var exprs string
		for _, tg := range p.Targets {
			exprs += tg.Expr + "\n"
			if strings.Contains(tg.LegendFormat, "{{instance}}") || regexp.MustCompile(`\bby \([^)]*\binstance\b`).MatchString(tg.Expr) {
				t.Errorf("%s: shows instance (IP:port); use pod", where)
			}
			switch {
			case strings.Contains(tg.Expr, "histogram_quantile("):
				quantile++
			case strings.Contains(tg.Expr, "increase("):
				increase++
			case strings.Contains(tg.Expr, "rate("):
				rate++
			default:
				other++
			}
			if strings.Contains(tg.Expr, "gateway_requests_total") && strings.Contains(tg.Expr, `code=~"5.."`) &&
				!strings.Contains(tg.Expr, `route!~"health|ws_health|readyz|admin_health|admin_readyz|metrics|status|other"`) {
				t.Errorf("%s: a 5xx ratio that counts probes, /metrics or unmatched paths: %s", where, tg.Expr)
			}
		}
		// Quantiles (seconds) never share an axis with counts or rates, nor do
		// per-interval increases with per-second rates.
		if quantile > 0 && quantile < len(p.Targets) || increase > 0 && rate > 0 {
			t.Errorf("%s: mixes units on one axis (%d quantiles, %d rates, %d increases, %d others)", where, quantile, rate, increase, other)
		}
		if strings.Contains(exprs, "process_cpu_seconds_total") && (unit == "percentunit" || p.FieldConfig.Defaults.Custom.AxisLabel != "cores") {
			t.Errorf("%s: CPU is in cores: unit %q, axis %q", where, unit, p.FieldConfig.Defaults.Custom.AxisLabel)
		}
		if strings.Contains(exprs, "process_resident_memory_bytes") && strings.Contains(exprs, "go_memlimit_bytes") {
			memLimit = true
		}
	}
	if !memLimit {
		t.Error("no memory panel with the memory limit (go_memlimit_bytes) line")
	}
}

func TestDashboardExprsParse(t *testing.T) {
	exprs := dashboardExprs(t, loadDashboard(t))
	out, err := checkExprs(exprs)
	if err != nil {
		t.Fatalf("promtool rejects a dashboard expression: %v\n%s", err, out)
	}
	t.Logf("%d dashboard expressions parse: %s", len(exprs), strings.TrimSpace(out))
}

// The harness must be able to fail: a broken expression is rejected.
func TestBrokenExprIsRejected(t *testing.T) {
	out, err := checkExprs([]expr{{"broken", `sum(rate(gateway_requests_total[$__rate_interval])`}})
	if err == nil {
		t.Fatalf("promtool accepted an unbalanced expression:\n%s", out)
	}
}

var metricToken = regexp.MustCompile(`\b((?:gateway|go|process)_[a-zA-Z0-9_]+|up)\b`)

// referenced returns metric names used in the dashboard and alert rules,
// mapped to their family (histogram _bucket/_sum/_count to the histogram).
func referenced(t *testing.T, histograms map[string]bool) map[string][]string {
	t.Helper()
	refs := map[string][]string{}
	add := func(where, q string) {
		// Label matchers and legend strings are not metric names, nor are recording
		// rules' names (level:metric:operations).
		q = regexp.MustCompile(`"[^"]*"`).ReplaceAllString(q, `""`)
		q = regexp.MustCompile(`[A-Za-z_][A-Za-z0-9_]*:[A-Za-z0-9_:]+`).ReplaceAllString(q, "")
		q = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`).ReplaceAllString(q, "")
		q = regexp.MustCompile(`\{[^}]*\}`).ReplaceAllString(q, "{}")
		for _, m := range metricToken.FindAllString(q, -1) {
			fam := m
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				if base := strings.TrimSuffix(m, suf); base != m && histograms[base] {
					fam = base
				}
			}
			refs[fam] = append(refs[fam], where)
		}
	}
	for _, e := range dashboardExprs(t, loadDashboard(t)) {
		add(e.where, e.q)
	}
	alerts, err := os.ReadFile(alertsPath)
	if err != nil {
		t.Fatal(err)
	}
	// Only the expr: blocks, not the annotations' prose.
	inExpr := false
	for i, line := range strings.Split(string(alerts), "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(trimmed, "expr:"):
			inExpr = true
			add(fmt.Sprintf("alerts.yaml:%d", i+1), strings.TrimPrefix(trimmed, "expr:"))
			continue
		case strings.HasPrefix(trimmed, "for:"), strings.HasPrefix(trimmed, "labels:"), strings.HasPrefix(trimmed, "- alert:"),
			strings.HasPrefix(trimmed, "- record:"):
			inExpr = false
		}
		if inExpr {
			add(fmt.Sprintf("alerts.yaml:%d", i+1), trimmed)
		}
	}
	return refs
}

// contractFamilies reads the metric families of the "## Metrics" section of
// helm/README.md and which of them are histograms.
func contractFamilies(t *testing.T) (families, histograms map[string]bool) {
	t.Helper()
	dt, err := os.ReadFile(contractPath)
	if err != nil {
		t.Fatal(err)
	}
	families, histograms = map[string]bool{}, map[string]bool{}
	section := string(dt)
	i := strings.Index(section, "\n## Metrics\n")
	if i < 0 {
		t.Fatalf("%s has no \"## Metrics\" section", contractPath)
	}
	section = section[i+1:]
	if j := strings.Index(section[3:], "\n## "); j >= 0 {
		section = section[:j+3]
	}
	for _, line := range strings.Split(section, "\n") {
		names := regexp.MustCompile(`\bgateway_[a-z0-9_]+`).FindAllString(line, -1)
		for _, n := range names {
			families[n] = true
			if strings.Contains(line, "histogram") {
				histograms[n] = true
			}
		}
	}
	if len(families) < 20 {
		t.Fatalf("read only %d metric families from %s", len(families), contractPath)
	}
	return families, histograms
}

func TestMetricsExistInContract(t *testing.T) {
	families, histograms := contractFamilies(t)
	refs := referenced(t, histograms)
	for fam, where := range refs {
		if strings.HasPrefix(fam, "gateway_") && !families[fam] {
			t.Errorf("%s (used in %s) is not in the Metrics section of helm/README.md", fam, where[0])
		}
	}
	// The dashboard is the operator's view of the contract: all of it.
	var missing []string
	for fam := range families {
		if _, ok := refs[fam]; !ok {
			missing = append(missing, fam)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("contract metrics on no dashboard panel or alert: %v", missing)
	}
}

// The gateway the chart deploys: the configuration file rendered from
// values-full.yaml (every section: several upstreams, keys, plans, costs), its
// upstreams and Redis on closed ports, the admin listener apart from the public one.
// Checked: the binary accepts the chart's file, /metrics is on the admin port only,
// /readyz answers 200 although no upstream answers, and every family the dashboard
// and alerts use is exposed, with HELP (promtool check metrics).
func TestLiveGatewayExposesReferencedMetrics(t *testing.T) {
	bin := os.Getenv("GATEWAY_BIN")
	if bin == "" {
		bin = filepath.Join(t.TempDir(), "infura-gateway")
		build := exec.Command("go", "build", "-o", bin, ".")
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build of the gateway: %v\n%s", err, out)
		}
	}
	public, admin := freeAddr(t), freeAddr(t)
	closed := freeAddr(t) // nothing listens there: upstream and Redis calls fail fast
	config := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(config, []byte(chartConfigFile(t, closed)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-listen", public, "-admin-listen", admin, "-config", config, "-log-level", "error")
	// What the chart's Secrets provide: the ${VAR}s of the file, Redis.
	cmd.Env = append(os.Environ(), "INFURA_PROJECT_ID=test-project", "INFURA_PROJECT_SECRET=test-secret", "ALCHEMY_KEY=test-key",
		"REDIS_ADDR="+closed, "REDIS_TLS=false", "REDIS_PASSWORD=test-password")
	logs, exited := startProcess(t, cmd)

	var body []byte
	deadline := time.Now().Add(15 * time.Second)
	for {
		// Scraped once the gateway is ready: the admin listener is up (and serves
		// /metrics) before the start is over, when some series are not exported yet.
		ready, _, _ := get("http://" + admin + "/readyz")
		status, b, err := get("http://" + admin + "/metrics")
		if err == nil && status == 200 && ready == 200 {
			body = b
			break
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("the gateway exited (%v) with the chart's configuration file:\n%s\nfile:\n%s", err, logs.String(), readFileString(t, config))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no /metrics on the admin listener %s: %v\n%s", admin, err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The public listener serves neither metrics nor profiles; both listeners answer
	// the probes, and readiness does not depend on the (dead) upstreams.
	for _, c := range []struct {
		url  string
		want func(int) bool
		what string
	}{
		{"http://" + public + "/metrics", func(s int) bool { return s != 200 }, "must not be served on the public port"},
		{"http://" + public + "/debug/pprof/", func(s int) bool { return s != 200 }, "must not be served on the public port"},
		{"http://" + public + "/status", func(s int) bool { return s == 404 }, "must not be served on the public port"},
		{"http://" + admin + "/status", func(s int) bool { return s == 200 }, "upstream state on the admin port"},
		{"http://" + public + "/health", func(s int) bool { return s == 200 }, "liveness on the public port"},
		{"http://" + public + "/readyz", func(s int) bool { return s == 200 }, "readiness: started and not draining, whatever the upstreams"},
		{"http://" + admin + "/health", func(s int) bool { return s == 200 }, "liveness on the admin port (the chart's livenessProbe)"},
		{"http://" + admin + "/readyz", func(s int) bool { return s == 200 }, "readiness on the admin port"},
	} {
		status, _, err := get(c.url)
		if err != nil || !c.want(status) {
			t.Errorf("GET %s: %d %v: %s", c.url, status, err, c.what)
		}
	}

	types := map[string]string{} // family -> type, from # TYPE lines
	samples := map[string]bool{} // sample names (runtime histograms are referenced as name_bucket)
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			types[f[2]] = f[3]
		} else if line != "" && line[0] != '#' {
			samples[strings.FieldsFunc(line, func(r rune) bool { return r == '{' || r == ' ' })[0]] = true
		}
	}
	families, histograms := contractFamilies(t)
	for fam, where := range referenced(t, histograms) {
		if scrapeSynthetic[fam] {
			continue
		}
		if _, ok := types[fam]; !ok && !samples[fam] {
			t.Errorf("metric family %s (used in %s) is not exposed by the gateway's /metrics", fam, where[0])
		}
	}
	var missing []string
	for fam := range families {
		if _, ok := types[fam]; !ok {
			missing = append(missing, fam)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("families of the helm/README.md list not on the admin /metrics: %v", missing)
	}
	for h := range histograms {
		if typ, ok := types[h]; ok && typ != "histogram" {
			t.Errorf("%s is a %s, the contract (and histogram_quantile) needs a Prometheus histogram", h, typ)
		}
	}
	// The latency SLO counts requests under one bucket boundary: it must exist.
	if le := sloBucket(t); !regexp.MustCompile(`(?m)^gateway_request_duration_seconds_bucket\{[^}]*le="` + regexp.QuoteMeta(le) + `"`).Match(body) {
		t.Errorf("gateway_request_duration_seconds has no le=%q bucket, which the latency SLO rules count", le)
	}

	// One network (top-level upstreams): its series say network="default", the value
	// the per-network alerts and the dashboard's $network show.
	if !regexp.MustCompile(`(?m)^gateway_requests_total\{network="default",route="rpc"`).Match(body) {
		t.Error(`a gateway of one network does not label its requests network="default"`)
	}

	// promtool's exposition-format lint: exit 1 is a format error, exit 3
	// lint findings (naming, missing HELP); both fail.
	lint := exec.Command(promtool(), "check", "metrics")
	lint.Stdin = bytes.NewReader(body)
	if out, err := lint.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// sloBucket is the le the latency SLO rules of alerts.yaml use.
func sloBucket(t *testing.T) string {
	t.Helper()
	m := regexp.MustCompile(`gateway_request_duration_seconds_bucket\{[^}]*le="([^"]+)"`).FindSubmatch(readFile(t, alertsPath))
	if m == nil {
		t.Fatal("alerts.yaml: no latency SLO bucket")
	}
	return string(m[1])
}

func get(url string) (int, []byte, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, nil, err
	}
	b, err := readAll(resp)
	return resp.StatusCode, b, err
}

// startProcess starts cmd with its output in the returned buffer; exited receives its
// end (put the value back after reading it, for the cleanup). The process is killed
// when the test ends.
func startProcess(t *testing.T, cmd *exec.Cmd) (*bytes.Buffer, chan error) {
	t.Helper()
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
		}
	})
	return &logs, exited
}

// helmBinary is the path of the helm pinned in .ci/tools (built by go tool on first use).
func helmBinary(t *testing.T) []byte {
	t.Helper()
	modfile, err := filepath.Abs(root + "/.ci/tools/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	tool := exec.Command("go", "tool", "-modfile="+modfile, "-n", "helm")
	tool.Dir = filepath.Dir(modfile)
	out, err := tool.Output()
	if err != nil {
		t.Fatalf("go tool -n helm: %v", err)
	}
	return out
}

// chartConfigFile is the configuration file the chart renders from values-full.yaml,
// with every upstream pointed at addr (nothing listens there).
func chartConfigFile(t *testing.T, addr string) string {
	t.Helper()
	out := helmBinary(t)
	args := []string{"template", "gw", chartDir, "--kube-version", "1.32.0", "-f", chartDir + "/values-full.yaml",
		"--show-only", "templates/configmap.yaml"}
	for i, u := range []struct{ http, ws string }{
		{"http://" + addr + "/v3/${INFURA_PROJECT_ID}", "ws://" + addr + "/ws/v3/${INFURA_PROJECT_ID}"},
		{"http://" + addr, "ws://" + addr},
		{"http://" + addr + "/v2/${ALCHEMY_KEY}", ""},
	} {
		args = append(args, "--set-string", fmt.Sprintf("config.upstreams[%d].http=%s", i, u.http))
		if u.ws != "" {
			args = append(args, "--set-string", fmt.Sprintf("config.upstreams[%d].ws=%s", i, u.ws))
		}
	}
	render := exec.Command(strings.TrimSpace(string(out)), args...)
	var stderr bytes.Buffer
	render.Stderr = &stderr
	manifest, err := render.Output()
	if err != nil {
		t.Fatalf("helm %v: %v\n%s", args, err, stderr.String())
	}
	var cm struct {
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal(manifest, &cm); err != nil || cm.Data["config.yaml"] == "" {
		t.Fatalf("no config.yaml in the rendered ConfigMap: %v\n%s", err, manifest)
	}
	return cm.Data["config.yaml"]
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readFileString(t *testing.T, path string) string { return string(readFile(t, path)) }

func readAll(resp *http.Response) ([]byte, error) {
	defer resp.Body.Close()
	var b bytes.Buffer
	_, err := b.ReadFrom(resp.Body)
	return b.Bytes(), err
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "127.0.0.1:" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

type rulesFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Record      string            `json:"record"`
			Expr        string            `json:"expr"`
			For         string            `json:"for"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

type ruleTests struct {
	Tests []struct {
		AlertRuleTest []struct {
			EvalTime  string `json:"eval_time"`
			Alertname string `json:"alertname"`
			ExpAlerts []struct {
				ExpLabels map[string]string `json:"exp_labels"`
			} `json:"exp_alerts"`
		} `json:"alert_rule_test"`
	} `json:"tests"`
}

const runbookURL = "https://github.com/infura-gateway/infura-gateway/blob/main/helm/infura-gateway/RUNBOOK.md"

// Every alert is deliberate: a severity, words for the person paged, a runbook
// section that exists, and promtool tests where it fires and where it stays quiet,
// for each of its severities. Every runbook section belongs to an alert.
func TestAlertsHaveRunbooksAndTests(t *testing.T) {
	var rules rulesFile
	if err := yaml.UnmarshalStrict(readFile(t, alertsPath), &rules); err != nil {
		t.Fatal(err)
	}
	runbook := string(readFile(t, runbookPath))
	sections := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^## (\S+)\s*$`).FindAllStringSubmatch(runbook, -1) {
		sections[m[1]] = true
	}
	fires, quiet := map[string]bool{}, map[string]bool{} // alertname/severity, alertname
	files, _ := filepath.Glob("*_test.yaml")
	for _, f := range files {
		var rt ruleTests
		if err := yaml.Unmarshal(readFile(t, f), &rt); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, tc := range rt.Tests {
			for _, a := range tc.AlertRuleTest {
				if len(a.ExpAlerts) == 0 {
					quiet[a.Alertname] = true
				}
				for _, e := range a.ExpAlerts {
					fires[a.Alertname+"/"+e.ExpLabels["severity"]] = true
				}
			}
		}
	}
	alerts := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts[r.Alert] = true
			sev := r.Labels["severity"]
			if sev != "critical" && sev != "warning" {
				t.Errorf("%s: severity %q, want critical (pages) or warning (ticket)", r.Alert, sev)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: needs a summary and a description", r.Alert)
			}
			if want := runbookURL + "#" + strings.ToLower(r.Alert); r.Annotations["runbook_url"] != want {
				t.Errorf("%s: runbook_url %q, want %q", r.Alert, r.Annotations["runbook_url"], want)
			}
			if !sections[r.Alert] {
				t.Errorf("%s: RUNBOOK.md has no section \"## %s\"", r.Alert, r.Alert)
			}
			if !fires[r.Alert+"/"+sev] {
				t.Errorf("%s (%s): no promtool test where it fires", r.Alert, sev)
			}
			if !quiet[r.Alert] {
				t.Errorf("%s: no promtool test where it stays quiet", r.Alert)
			}
		}
	}
	for s := range sections {
		if !alerts[s] {
			t.Errorf("RUNBOOK.md section %q is for no alert of alerts.yaml", s)
		}
	}
	if len(alerts) < 10 {
		t.Errorf("read only %d alerts from %s", len(alerts), alertsPath)
	}
}
