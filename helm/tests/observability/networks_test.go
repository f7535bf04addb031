package observability

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// Several networks in one gateway: every per-network metric carries a network label
// (configured names; "default" for one network), the dashboard filters every
// per-network panel by the $network variable, and process-wide families are never
// filtered (they have no such label: a filter would empty the panel).

// processWide reads the "Process-wide (no network label):" line of the Metrics
// section of helm/README.md.
func processWide(t *testing.T) map[string]bool {
	t.Helper()
	m := regexp.MustCompile(`(?m)^Process-wide \(no network label\): (.+)$`).FindStringSubmatch(readFileString(t, contractPath))
	if m == nil {
		t.Fatalf("%s: no \"Process-wide (no network label):\" line in the Metrics section", contractPath)
	}
	out := map[string]bool{}
	for _, f := range strings.Split(m[1], ",") {
		out[strings.TrimSpace(f)] = true
	}
	return out
}

var selectorRe = regexp.MustCompile(`\b(gateway_[a-z0-9_]+)(\{[^}]*\})?`)

// family maps a histogram's series name to its family.
func family(name string, histograms map[string]bool) string {
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if base := strings.TrimSuffix(name, suf); base != name && histograms[base] {
			return base
		}
	}
	return name
}

func TestDashboardNetworkVariable(t *testing.T) {
	d := loadDashboard(t)
	vars := map[string]int{}
	for i, v := range d.Templating.List {
		vars[v.Name] = i
	}
	i, ok := vars["network"]
	if !ok {
		t.Fatal(`no "network" template variable`)
	}
	v := d.Templating.List[i]
	if want := `label_values(gateway_requests_total{job="infura-gateway", namespace=~"$namespace"}, network)`; v.Type != "query" || v.Definition != want {
		t.Errorf("variable network: %s %q, want a query %q", v.Type, v.Definition, want)
	}
	if i < vars["namespace"] {
		t.Error("variable network comes before namespace, which it depends on")
	}
	// The other query variables list the values of the selected networks only.
	for _, name := range []string{"route", "upstream", "transport"} {
		if def := d.Templating.List[vars[name]].Definition; !strings.Contains(def, `network=~"$network"`) || vars[name] < i {
			t.Errorf("variable %s: %q does not follow $network", name, def)
		}
	}
	// Multi-select with "All" as .*, which also matches series without the label.
	var raw struct {
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Multi      bool   `json:"multi"`
				IncludeAll bool   `json:"includeAll"`
				AllValue   string `json:"allValue"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := yaml.Unmarshal(readFile(t, dashboardPath), &raw); err != nil {
		t.Fatal(err)
	}
	if n := raw.Templating.List[i]; !n.Multi || !n.IncludeAll || n.AllValue != ".*" {
		t.Errorf("variable network: multi %v, includeAll %v, allValue %q; want true, true, .*", n.Multi, n.IncludeAll, n.AllValue)
	}
}

// Every selector of a per-network family filters by $network; no selector of a
// process-wide family does; an upstream is named with its network (upstream names are
// unique per network only).
func TestDashboardFiltersNetwork(t *testing.T) {
	families, histograms := contractFamilies(t)
	wide := processWide(t)
	for f := range wide {
		if !families[f] {
			t.Errorf("process-wide %s is not a family of the Metrics section", f)
		}
	}
	by := regexp.MustCompile(`\bby \(([^)]*)\)`)
	for _, e := range dashboardExprs(t, loadDashboard(t)) {
		if strings.HasPrefix(e.where, "variable ") {
			continue
		}
		perNetwork := false
		for _, m := range selectorRe.FindAllStringSubmatch(e.q, -1) {
			fam := family(m[1], histograms)
			filtered := strings.Contains(m[2], `network=~"$network"`)
			switch {
			case wide[fam] && strings.Contains(m[2], "network"):
				t.Errorf("%s: %s is process-wide (no network label) but is filtered by network: %s", e.where, fam, e.q)
			case !wide[fam] && !filtered:
				t.Errorf("%s: %s is per network but not filtered by network=~\"$network\": %s", e.where, fam, e.q)
			}
			perNetwork = perNetwork || !wide[fam]
		}
		if !perNetwork {
			continue
		}
		for _, g := range by.FindAllStringSubmatch(e.q, -1) {
			if regexp.MustCompile(`\bupstream\b`).MatchString(g[1]) && !regexp.MustCompile(`\bnetwork\b`).MatchString(g[1]) {
				t.Errorf("%s: groups by upstream without network (one name on two networks is two upstreams): %s", e.where, e.q)
			}
		}
	}
}

// The per-network SLO: every recording rule and alert about traffic, heads or
// upstreams keeps the network label; the process-wide ones do not group by it.
func TestAlertsPerNetwork(t *testing.T) {
	var rules rulesFile
	if err := yaml.UnmarshalStrict(readFile(t, alertsPath), &rules); err != nil {
		t.Fatal(err)
	}
	perNetwork := regexp.MustCompile(`gateway_(requests_total|request_duration_seconds|router_served_head|upstream_)`)
	by := regexp.MustCompile(`\b(by|on) \(([^)]*)\)`)
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			name := r.Alert + r.Record
			if !perNetwork.MatchString(r.Expr) {
				continue
			}
			for _, m := range by.FindAllStringSubmatch(r.Expr, -1) {
				if !regexp.MustCompile(`\bnetwork\b`).MatchString(m[2]) {
					t.Errorf("%s: %s (%s) drops the network label: %s", name, m[1], m[2], r.Expr)
				}
			}
		}
	}
}

// A gateway of two networks, configured with the file the chart renders from
// config.networks: it starts, and its admin /metrics labels every series of a
// per-network family (the Metrics section) with one of the two configured names, and
// no series of a process-wide family.
func TestLiveGatewayNetworkLabels(t *testing.T) {
	bin := os.Getenv("GATEWAY_BIN")
	if bin == "" {
		bin = filepath.Join(t.TempDir(), "infura-gateway")
		build := exec.Command("go", "build", "-o", bin, ".")
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build of the gateway: %v\n%s", err, out)
		}
	}
	public, admin, closed := freeAddr(t), freeAddr(t), freeAddr(t)
	values := fmt.Sprintf(`
config:
  networks:
    - name: mainnet
      chain_id: 1
      aliases: [eth]
      hosts: [mainnet.gw.example.com, "*.mainnet.gw.example.com"]
      upstreams:
        - {name: infura, http: "http://%[1]s/v3/${INFURA_PROJECT_ID}", ws: "ws://%[1]s/ws/v3/${INFURA_PROJECT_ID}"}
    - name: sepolia
      chain_id: 11155111
      hosts: [sepolia.gw.example.com]
      upstreams:
        - {name: infura, http: "http://%[1]s/v3/${INFURA_PROJECT_ID}", ws: "ws://%[1]s/ws/v3/${INFURA_PROJECT_ID}"}
  plans:
    free: {requests_per_second: 10, networks: [sepolia]}
  keys:
    required: false
    entries:
      - {name: k1, sha256: "%[2]s", plan: free}
`, closed, strings.Repeat("ab", 32))
	vf := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(vf, []byte(values), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"template", "gw", chartDir, "--kube-version", "1.32.0", "--set", "image.repository=r/gw", "-f", vf,
		"--show-only", "templates/configmap.yaml"}
	render := exec.Command(strings.TrimSpace(string(helmBinary(t))), args...)
	var stderr bytes.Buffer
	render.Stderr = &stderr
	manifest, err := render.Output()
	if err != nil {
		t.Fatalf("helm %v: %v\n%s", args, err, stderr.String())
	}
	var cm struct {
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal(manifest, &cm); err != nil || !strings.Contains(cm.Data["config.yaml"], "networks:") {
		t.Fatalf("no networks in the rendered config.yaml: %v\n%s", err, manifest)
	}
	config := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(config, []byte(cm.Data["config.yaml"]), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-listen", public, "-admin-listen", admin, "-config", config, "-log-level", "error")
	cmd.Env = append(os.Environ(), "INFURA_PROJECT_ID=test-project")
	logs, exited := startProcess(t, cmd)

	var body []byte
	deadline := time.Now().Add(15 * time.Second)
	for {
		status, b, err := get("http://" + admin + "/metrics")
		if err == nil && status == 200 {
			body = b
			break
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("the gateway exited (%v) with the chart's networks file:\n%s\nfile:\n%s", err, logs.String(), cm.Data["config.yaml"])
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no /metrics on the admin listener %s: %v\n%s", admin, err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	families, histograms := contractFamilies(t)
	wide := processWide(t)
	adminRoute := regexp.MustCompile(`route="(admin_health|admin_readyz|metrics|status)"`)
	netLabel := regexp.MustCompile(`[{,]network="([^"]*)"`)
	seen := map[string]map[string]bool{} // family -> network values
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' || !strings.HasPrefix(line, "gateway_") {
			continue
		}
		name := strings.FieldsFunc(line, func(r rune) bool { return r == '{' || r == ' ' })[0]
		fam := family(name, histograms)
		if !families[fam] {
			continue
		}
		m := netLabel.FindStringSubmatch(line)
		switch {
		case wide[fam] && m != nil:
			t.Errorf("process-wide %s has a network label: %s", fam, line)
		case !wide[fam] && m == nil && !adminRoute.MatchString(line):
			t.Errorf("per-network %s has no network label: %s", fam, line)
		case m != nil && m[1] != "mainnet" && m[1] != "sepolia":
			t.Errorf("%s: network %q is not a configured name (aliases and hosts are not labels): %s", fam, m[1], line)
		}
		if m != nil {
			if seen[fam] == nil {
				seen[fam] = map[string]bool{}
			}
			seen[fam][m[1]] = true
		}
	}
	var one []string
	for fam, nets := range seen {
		if len(nets) != 2 {
			one = append(one, fam)
		}
	}
	sort.Strings(one)
	if len(one) > 0 {
		t.Errorf("families with series of one network only (want mainnet and sepolia): %v", one)
	}
	for _, f := range []string{"gateway_requests_total", "gateway_upstream_up", "gateway_router_served_head"} {
		if len(seen[f]) != 2 {
			t.Errorf("%s: networks %v, want mainnet and sepolia", f, seen[f])
		}
	}
}
