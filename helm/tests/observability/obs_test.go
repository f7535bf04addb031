// Package observability checks the Grafana dashboard and the Prometheus alert rules
// against each other, against the metric list of helm/README.md and against the
// metrics a real gateway exposes. Standard library only: PromQL is parsed by promtool (the
// Debian prometheus package), not by linking the Prometheus Go module.
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
)

const (
	root          = "../../.."
	dashboardPath = root + "/helm/infura-gateway/files/dashboard.json"
	alertsPath    = root + "/helm/infura-gateway/files/alerts.yaml"
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
		// Label matchers and legend strings are not metric names.
		q = regexp.MustCompile(`"[^"]*"`).ReplaceAllString(q, `""`)
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
		case strings.HasPrefix(trimmed, "for:"), strings.HasPrefix(trimmed, "labels:"), strings.HasPrefix(trimmed, "- alert:"):
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

// Build the gateway, start it against closed upstream ports, scrape /metrics
// and check every family the dashboard and alerts use is exposed.
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
	addr := freeAddr(t)
	closed := freeAddr(t) // nothing listens there: upstream calls fail fast
	cmd := exec.Command(bin, "-listen", addr, "-upstream-http", "http://"+closed, "-upstream-ws", "ws://"+closed, "-log-level", "error")
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	var body []byte
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err == nil {
			body, err = readAll(resp)
			if err == nil && resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no /metrics from the gateway at %s: %v\n%s", addr, err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
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
	_, histograms := contractFamilies(t)
	for fam, where := range referenced(t, histograms) {
		if scrapeSynthetic[fam] {
			continue
		}
		if _, ok := types[fam]; !ok && !samples[fam] {
			t.Errorf("metric family %s (used in %s) is not exposed by the gateway's /metrics", fam, where[0])
		}
	}
	for h := range histograms {
		if typ, ok := types[h]; ok && typ != "histogram" {
			t.Errorf("%s is a %s, the contract (and histogram_quantile) needs a Prometheus histogram", h, typ)
		}
	}

	// promtool's exposition-format lint: exit 1 is a format error, exit 3
	// lint findings (naming, missing HELP); both fail.
	lint := exec.Command(promtool(), "check", "metrics")
	lint.Stdin = bytes.NewReader(body)
	if out, err := lint.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

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
