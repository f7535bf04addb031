package observability

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// Issue 24, N9: every command of RUNBOOK.md is run by a test, or marked as needing a
// cluster with the output to expect. The runbook's form: commands in fenced blocks,
// each after "$ ", the lines below it the output to expect (each must appear in the
// real output); a block opened with "```sh cluster" needs the cluster and is not run.
//
// runbookCoverage maps every command that runs without a cluster to the test that
// runs it: a new command fails TestRunbookCommandsCovered until it is added here (and
// so run) or marked as needing a cluster. The tests run the runbook's own text, with
// `localhost:9090` (a pod's admin port through a port-forward) pointed at the local
// gateway's admin listener.
var runbookCoverage = map[string]string{
	`curl -s localhost:9090/readyz`:                                                                                                                                                      "TestRunbookAdminCommands",
	`curl -s localhost:9090/metrics | grep -E '^gateway_(ready|config_info)'`:                                                                                                            "TestRunbookAdminCommands",
	`curl -s localhost:9090/metrics | grep -E '^gateway_requests_total\{.*code="5' | grep -v ' 0$'`:                                                                                      "TestRunbookAdminCommands",
	`curl -s localhost:9090/status | grep -E '"(ready|draining)"'`:                                                                                                                       "TestRunbookAdminCommands",
	`curl -s localhost:9090/status | grep -E '"(served_head|name|head|lag|state)"'`:                                                                                                      "TestRunbookAdminCommands",
	`curl -s localhost:9090/metrics | grep -E '^(go_memlimit_bytes|process_resident_memory_bytes) '`:                                                                                     "TestRunbookAdminCommands",
	`curl -s localhost:9090/metrics | grep -E '^gateway_redis_(up|readonly_reconnects_total)'`:                                                                                           "TestRunbookAdminCommands",
	`curl -s localhost:9090/metrics | grep -E '^gateway_config_(info|reloads_total)'`:                                                                                                    "TestRunbookAdminCommands",
	`redis-cli -u "$REDIS_URL" --no-auth-warning ROLE | head -1`:                                                                                                                         "TestRunbookAdminCommands",
	`redis-cli -u "$REDIS_URL" --no-auth-warning INFO memory | grep -E '^maxmemory_policy'`:                                                                                              "TestRunbookAdminCommands",
	`promtool query instant http://localhost:9091 "sum by (network, route, code) (rate(gateway_requests_total{namespace=\"$NS\", code=~\"5..\"}[5m]))"`:                                  "TestRunbookMonitoringCommands",
	`amtool --alertmanager.url=http://localhost:9093 alert add InfuraGatewayRunbookTest severity=warning namespace=$NS --annotation=summary='a test alert: ignore it'`:                   "TestRunbookMonitoringCommands",
	`amtool --alertmanager.url=http://localhost:9093 alert query alertname=InfuraGatewayRunbookTest`:                                                                                     "TestRunbookMonitoringCommands",
	`helm template $GW helm/infura-gateway -f $VALUES --kube-version 1.32.0 --show-only templates/deployment.yaml | grep -A4 -E 'name: (CONTAINER_MEMORY_LIMIT|MEMORY_LIMIT_FRACTION)$'`: "TestRunbookAdminCommands",
}

// The tools whose commands belong in blocks: a span of inline code that starts with
// one of them and has arguments must repeat a command of a block.
var runbookTools = []string{"kubectl", "curl", "helm", "promtool", "amtool", "redis-cli", "aws", "terraform"}

type runbookCommand struct {
	line    int
	cmd     string
	want    []string // output to expect, one line each
	cluster bool
}

var runbookFence = regexp.MustCompile("^(\\s*)```(.*)$")

// parseRunbook returns the commands of the fenced blocks of text, and what breaks the
// runbook's form.
func parseRunbook(text string) ([]runbookCommand, []string) {
	var cmds []runbookCommand
	var problems []string
	var prose strings.Builder
	in, cluster, indent := false, false, ""
	cur := -1 // index in cmds of the command whose output is being read
	continued := false
	for i, line := range strings.Split(text, "\n") {
		n := i + 1
		if m := runbookFence.FindStringSubmatch(line); m != nil {
			if !in {
				in, indent, cur, continued = true, m[1], -1, false
				switch strings.TrimSpace(m[2]) {
				case "sh":
					cluster = false
				case "sh cluster":
					cluster = true
				default:
					problems = append(problems, fmt.Sprintf("line %d: a block is \"```sh\" (run by a test) or \"```sh cluster\" (needs a cluster), not %q", n, m[2]))
				}
			} else {
				in = false
			}
			continue
		}
		if !in {
			prose.WriteString(line + "\n")
			continue
		}
		l := strings.TrimPrefix(line, indent)
		switch {
		case continued:
			cmds[cur].cmd += "\n" + l
			continued = strings.HasSuffix(l, `\`)
		case strings.HasPrefix(l, "$ "):
			cmds = append(cmds, runbookCommand{line: n, cmd: strings.TrimPrefix(l, "$ "), cluster: cluster})
			cur = len(cmds) - 1
			continued = strings.HasSuffix(l, `\`)
		case strings.TrimSpace(l) == "":
		case cur < 0:
			problems = append(problems, fmt.Sprintf("line %d: %q is in a block before any \"$ \" command", n, l))
		default:
			cmds[cur].want = append(cmds[cur].want, strings.TrimSpace(l))
		}
	}
	if in {
		problems = append(problems, "a fenced block is not closed")
	}
	known := map[string]bool{}
	for _, c := range cmds {
		known[c.cmd] = true
		if c.cluster && len(c.want) == 0 {
			problems = append(problems, fmt.Sprintf("line %d: %q needs a cluster: write the output to expect below it", c.line, c.cmd))
		}
	}
	for _, m := range regexp.MustCompile("`([^`\n]+)`").FindAllStringSubmatch(prose.String(), -1) {
		words := strings.Fields(m[1])
		for _, tool := range runbookTools {
			if len(words) >= 3 && words[0] == tool && !known[strings.Join(words, " ")] {
				problems = append(problems, fmt.Sprintf("`%s`: a command outside a block (put it in a \"```sh\" block, run by a test, or \"```sh cluster\" with its output)", m[1]))
			}
		}
	}
	return cmds, problems
}

func runbookCommands(t *testing.T) []runbookCommand {
	t.Helper()
	cmds, problems := parseRunbook(readFileString(t, runbookPath))
	for _, p := range problems {
		t.Errorf("RUNBOOK.md: %s", p)
	}
	return cmds
}

// The check itself: every command is run by a test or needs a cluster, and the table
// names no command the runbook lost and no test that does not exist.
func TestRunbookCommandsCovered(t *testing.T) {
	cmds := runbookCommands(t)
	if len(cmds) < 20 {
		t.Fatalf("read only %d commands from RUNBOOK.md: is the parser broken?", len(cmds))
	}
	inRunbook := map[string]bool{}
	for _, c := range cmds {
		inRunbook[c.cmd] = true
		if _, ok := runbookCoverage[c.cmd]; c.cluster && ok {
			t.Errorf("RUNBOOK.md:%d: %q is marked as needing a cluster and run by %s: one or the other", c.line, c.cmd, runbookCoverage[c.cmd])
		} else if !c.cluster && !ok {
			t.Errorf("RUNBOOK.md:%d: %q is run by no test: add it to runbookCoverage (and make that test able to run it) or mark its block \"sh cluster\" with the output to expect", c.line, c.cmd)
		}
	}
	var sources bytes.Buffer
	files, _ := filepath.Glob("*_test.go")
	for _, f := range files {
		sources.Write(readFile(t, f))
	}
	for cmd, test := range runbookCoverage {
		if !inRunbook[cmd] {
			t.Errorf("runbookCoverage: %q is no longer in RUNBOOK.md", cmd)
		}
		if !bytes.Contains(sources.Bytes(), []byte("func "+test+"(t *testing.T)")) {
			t.Errorf("runbookCoverage: %q: no test %s", cmd, test)
		}
	}
}

// The harness must be able to fail: each broken form is reported.
func TestRunbookParserRejects(t *testing.T) {
	cases := map[string]struct {
		text string
		want string
	}{
		"inline command":           {"Run `kubectl -n $NS get pods` now.\n", "a command outside a block"},
		"cluster without output":   {"```sh cluster\n$ kubectl -n $NS get pods\n```\n", "write the output to expect"},
		"other block":              {"```console\n$ ls\n```\n", "not \"console\""},
		"output before a command":  {"```sh\nhello\n```\n", "before any"},
		"unclosed block":           {"```sh\n$ ls\n", "not closed"},
		"inline copy of a command": {"```sh\n$ curl -s localhost:9090/readyz\n```\nSee `curl -s localhost:9090/readyz`.\n", ""},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, problems := parseRunbook(c.text)
			got := strings.Join(problems, "\n")
			if c.want == "" && got != "" || !strings.Contains(got, c.want) {
				t.Errorf("problems %q, want %q", got, c.want)
			}
		})
	}
	cmds, _ := parseRunbook("  ```sh\n  $ a \\\n    --b\n  out 1\n  out 2\n  ```\n")
	if len(cmds) != 1 || cmds[0].cmd != "a \\\n  --b" || strings.Join(cmds[0].want, "|") != "out 1|out 2" {
		t.Errorf("indented block with a continued command: %+v", cmds)
	}
}

// runRunbookCommands runs the commands runbookCoverage gives to test, as bash runs
// them (pipefail: a failing curl is not hidden by grep), in the repository's root with
// env and the port-forwarded addresses (localhost:PORT) replaced by the local ones, and
// checks each expected line is in the output.
func runRunbookCommands(t *testing.T, test string, env []string, addrs *strings.Replacer) {
	t.Helper()
	ran := 0
	for _, c := range runbookCommands(t) {
		if runbookCoverage[c.cmd] != test {
			continue
		}
		ran++
		script := addrs.Replace(c.cmd)
		cmd := exec.Command("bash", "-o", "pipefail", "-c", script)
		cmd.Dir = root
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("RUNBOOK.md:%d: %s: %v\n%s", c.line, c.cmd, err, out)
			continue
		}
		for _, w := range c.want {
			if !bytes.Contains(out, []byte(w)) {
				t.Errorf("RUNBOOK.md:%d: %s: the output lacks %q:\n%s", c.line, c.cmd, w, out)
			}
		}
	}
	if ran == 0 {
		t.Errorf("%s ran no runbook command", test)
	}
}

// startRedis starts a redis-server on a free loopback port, configured as the README
// asks of ElastiCache (allkeys-lru), and returns its address.
func startRedis(t *testing.T) string {
	t.Helper()
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru")
	logs, exited := startProcess(t, cmd)
	deadline := time.Now().Add(15 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return addr
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("redis-server exited (%v):\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server not listening on %s:\n%s", addr, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runbookStack is a local stand-in for one pod and what it talks to: the gateway with
// the environment the chart gives it (the Deployment of `helm template`, a container
// limit of 1 GiB through the downward API), Redis in a real redis-server, an upstream
// that answers but fails eth_getLogs.
type runbookStack struct {
	public, admin, redis string
	values               string // a values file for the chart
	dir                  string
}

func startRunbookStack(t *testing.T) runbookStack {
	t.Helper()
	bin := gatewayBin(t)
	s := runbookStack{redis: startRedis(t), dir: t.TempDir()}
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if bytes.Contains(body, []byte("eth_getLogs")) {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		fakeRPC(w, r)
	}))
	t.Cleanup(upstream.Close)
	s.values = filepath.Join(s.dir, "values.yaml")
	if err := os.WriteFile(s.values, []byte("image:\n  repository: registry.example.com/infura-gateway\nconfig:\n  upstreamHttpUrl: http://127.0.0.1:8545\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := deploymentEnv(t, 1<<30, "-f", s.values, "--set", "config.upstreamHttpUrl="+upstream.URL, "--set", "config.upstreamWsUrl=off",
		"--set", "redis.address="+s.redis, "--set", "redis.tls=false")
	s.public, s.admin = freeAddr(t), freeAddr(t)
	gw := exec.Command(bin, "-listen", s.public, "-admin-listen", s.admin)
	gw.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	logs, exited := startProcess(t, gw)
	// Ready, and connected to Redis: what the commands show.
	deadline := time.Now().Add(20 * time.Second)
	for {
		status, body, err := get("http://" + s.admin + "/metrics")
		if err == nil && status == 200 && bytes.Contains(body, []byte(`gateway_redis_up{client="redis"} 1`)) {
			break
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("the gateway exited (%v) with the chart's settings %v:\n%s", err, env, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway never got ready and connected to Redis (%v):\n%s\n%s", err, logs.String(), body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return s
}

// fail5xx makes one call the upstream fails: a 5xx for the commands that look for them.
func (s runbookStack) fail5xx(t *testing.T) {
	t.Helper()
	resp, err := http.Post("http://"+s.public+"/", "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"eth_getLogs","params":[{}]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode < 500 {
		t.Fatalf("a call the upstream fails: %s, want a 5xx", resp.Status)
	}
}

// env is what the commands run with: the runbook's variables, helm (the pinned one)
// on PATH.
func (s runbookStack) env(t *testing.T) []string {
	helmDir := filepath.Dir(strings.TrimSpace(string(helmBinary(t))))
	return []string{
		"PATH=" + helmDir + string(os.PathListSeparator) + os.Getenv("PATH"),
		"HOME=" + s.dir,
		"NS=infura-gateway", "GW=infura-gateway", "VALUES=" + s.values,
		"REDIS_URL=redis://" + s.redis,
	}
}

// The runbook's commands on one pod's admin port, Redis and the chart, against a
// local stack; then the metrics and label values the runbook names, against that
// gateway's /metrics.
func TestRunbookAdminCommands(t *testing.T) {
	s := startRunbookStack(t)
	s.fail5xx(t)
	runRunbookCommands(t, "TestRunbookAdminCommands", s.env(t), strings.NewReplacer("localhost:9090", s.admin))
	status, live, err := get("http://" + s.admin + "/metrics")
	if err != nil || status != 200 {
		t.Fatalf("/metrics: %d %v", status, err)
	}
	checkRunbookMetrics(t, live)
}

// startDaemon starts the command cmdFor gives for a free loopback address, waits
// until path on it answers 200 and returns the address. A port taken between picking
// and binding (another process's outgoing connection may get it) is picked again.
func startDaemon(t *testing.T, cmdFor func(addr string) *exec.Cmd, path string) string {
	t.Helper()
	for attempt := 1; ; attempt++ {
		addr := freeAddr(t)
		cmd := cmdFor(addr)
		logs, exited := startProcess(t, cmd)
		deadline := time.Now().Add(30 * time.Second)
	wait:
		for {
			if status, _, err := get("http://" + addr + path); err == nil && status == 200 {
				return addr
			}
			select {
			case err := <-exited:
				exited <- err
				if attempt < 3 && strings.Contains(logs.String(), "address already in use") {
					break wait // pick another port
				}
				t.Fatalf("%s exited (%v):\n%s", cmd.Path, err, logs.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never answered on %s%s:\n%s", cmd.Path, addr, path, logs.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// promQuery asks Prometheus at addr for q and returns the number of series in the answer.
func promQuery(addr, q string) int {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var r struct {
		Data struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if json.NewDecoder(resp.Body).Decode(&r) != nil {
		return 0
	}
	return len(r.Data.Result)
}

// The runbook's promtool queries and amtool commands, against a real Prometheus
// (Debian's, the package promtool comes from) scraping the local gateway with the
// labels the ServiceMonitor gives (job, namespace, pod), and a real Alertmanager.
func TestRunbookMonitoringCommands(t *testing.T) {
	s := startRunbookStack(t)
	config := filepath.Join(s.dir, "prometheus.yml")
	if err := os.WriteFile(config, []byte(fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: infura-gateway
    static_configs:
      - targets: [%q]
        labels: {namespace: infura-gateway, pod: infura-gateway-0}
`, s.admin)), 0o644); err != nil {
		t.Fatal(err)
	}
	prom := startDaemon(t, func(addr string) *exec.Cmd {
		return exec.Command("prometheus", "--config.file="+config, "--storage.tsdb.path="+filepath.Join(s.dir, "tsdb"),
			"--web.listen-address="+addr, "--log.level=warn")
	}, "/-/ready")
	amConfig := filepath.Join(s.dir, "alertmanager.yml")
	if err := os.WriteFile(amConfig, []byte("route: {receiver: none}\nreceivers: [{name: none}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	am := startDaemon(t, func(addr string) *exec.Cmd {
		return exec.Command("prometheus-alertmanager", "--config.file="+amConfig, "--storage.path="+filepath.Join(s.dir, "am"),
			"--web.listen-address="+addr, "--cluster.listen-address=", "--log.level=warn")
	}, "/-/ready")
	// A first scrape, then a 5xx, then a scrape that counted it: rate() sees it.
	waitFor := func(what, q string) {
		deadline := time.Now().Add(30 * time.Second)
		for promQuery(prom, q) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("Prometheus never had %s (%s)", what, q)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	waitFor("a scrape of the gateway", `gateway_ready{namespace="infura-gateway"}`)
	s.fail5xx(t)
	waitFor("the 5xx", `gateway_requests_total{code=~"5.."} > 0`)
	runRunbookCommands(t, "TestRunbookMonitoringCommands", s.env(t),
		strings.NewReplacer("localhost:9090", s.admin, "localhost:9091", prom, "localhost:9093", am))
}

// The commands that need a cluster still name what the chart creates: the
// Deployment, the Services and their ports, the pods' labels (the chart rendered with
// Terraform's release name and namespace, the EKS profile); their PromQL parses, and
// the monitoring stack's names are the ones Terraform installs.
func TestRunbookClusterCommandsMatchTheChart(t *testing.T) {
	const ns, gw = "infura-gateway", "infura-gateway"
	args := []string{"template", gw, chartDir, "--namespace", ns, "--kube-version", "1.32.0", "-f", chartDir + "/values-eks.yaml",
		"--set", "image.repository=r/gw", "--set", "image.digest=sha256:" + strings.Repeat("ab", 32),
		"--set", "config.trustedProxies={10.0.0.0/16}", "--set", "infura.existingSecret=infura"}
	render := exec.Command(strings.TrimSpace(string(helmBinary(t))), args...)
	var stderr bytes.Buffer
	render.Stderr = &stderr
	manifests, err := render.Output()
	if err != nil {
		t.Fatalf("helm %v: %v\n%s", args, err, stderr.String())
	}
	type port struct {
		Port int `json:"port"`
	}
	type object struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Spec struct {
			Ports    []port `json:"ports"`
			Template struct {
				Metadata struct {
					Labels map[string]string `json:"labels"`
				} `json:"metadata"`
			} `json:"template"`
		} `json:"spec"`
	}
	objs := map[string]object{} // kind/name
	for _, doc := range strings.Split(string(manifests), "\n---") {
		var o object
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatal(err)
		}
		objs[o.Kind+"/"+o.Metadata.Name] = o
	}
	// The monitoring stack Terraform installs (terraform/addons.tf): kube-prometheus-stack
	// in "monitoring", whose Services are <release>-prometheus on 9090 and
	// <release>-alertmanager on 9093.
	addons := readFileString(t, root+"/terraform/addons.tf")
	if !strings.Contains(addons, `name             = "kube-prometheus-stack"`) || !strings.Contains(addons, `namespace        = "monitoring"`) {
		t.Fatal("terraform/addons.tf no longer installs kube-prometheus-stack in monitoring: fix this test and the runbook")
	}
	for name, p := range map[string]int{"kube-prometheus-stack-prometheus": 9090, "kube-prometheus-stack-alertmanager": 9093} {
		var o object
		o.Spec.Ports = []port{{p}}
		objs["Service/"+name] = o
	}
	kinds := map[string]string{"deploy": "Deployment", "deployment": "Deployment", "svc": "Service", "service": "Service",
		"endpoints": "Service", "hpa": "HorizontalPodAutoscaler"}
	var exprs []expr
	checked := 0
	for _, c := range runbookCommands(t) {
		if !c.cluster {
			continue
		}
		cmd := strings.NewReplacer("$NS", ns, "$GW", gw).Replace(c.cmd)
		words := strings.Fields(cmd)
		where := fmt.Sprintf("RUNBOOK.md:%d: %s", c.line, c.cmd)
		switch words[0] {
		case "kubectl":
			checked++
			for i, w := range words {
				if kind, name, ok := strings.Cut(w, "/"); ok && kinds[kind] != "" {
					o, found := objs[kinds[kind]+"/"+name]
					if !found {
						t.Errorf("%s: the chart renders no %s %s", where, kinds[kind], name)
						continue
					}
					if words[1] == "port-forward" || (len(words) > 3 && words[3] == "port-forward") {
						if i+1 >= len(words) {
							t.Errorf("%s: no port", where)
							continue
						}
						_, remote, _ := strings.Cut(words[i+1], ":")
						if remote == "" {
							remote = words[i+1]
						}
						p, _ := strconv.Atoi(remote)
						has := false
						for _, sp := range o.Spec.Ports {
							has = has || sp.Port == p
						}
						if !has {
							t.Errorf("%s: %s %s has no port %s", where, kinds[kind], name, remote)
						}
					}
				}
				// "KIND NAME" (get endpoints X, patch hpa X).
				if kind := kinds[w]; kind != "" && i+1 < len(words) && !strings.HasPrefix(words[i+1], "-") {
					if _, found := objs[kind+"/"+words[i+1]]; !found {
						t.Errorf("%s: the chart renders no %s %s", where, kind, words[i+1])
					}
				}
				if strings.HasPrefix(w, "--overrides=") {
					checkRestrictedOverrides(t, where, cmd)
				}
				if w == "-l" && i+1 < len(words) {
					k, v, _ := strings.Cut(words[i+1], "=")
					if objs["Deployment/"+gw].Spec.Template.Metadata.Labels[k] != v {
						t.Errorf("%s: the pods are not labelled %s=%s: %v", where, k, v, objs["Deployment/"+gw].Spec.Template.Metadata.Labels)
					}
				}
				if w == "-n" && i+1 < len(words) && words[i+1] != ns && words[i+1] != "monitoring" {
					t.Errorf("%s: namespace %s", where, words[i+1])
				}
			}
		case "promtool":
			// promtool query instant URL EXPR: the expression as the shell passes it.
			sh := exec.Command("bash", "-c", "set -- "+strings.TrimPrefix(cmd, "promtool ")+`; printf %s "$4"`)
			sh.Env = []string{"NS=" + ns}
			q, err := sh.Output()
			if err != nil || words[1] != "query" || len(q) == 0 {
				t.Errorf("%s: not a promtool query with an expression: %v", where, err)
				continue
			}
			exprs = append(exprs, expr{where, string(q)})
		}
	}
	if checked < 10 {
		t.Errorf("checked only %d kubectl commands", checked)
	}
	if out, err := checkExprs(exprs); len(exprs) > 0 && err != nil {
		t.Errorf("promtool rejects the runbook's queries: %v\n%s", err, out)
	}
}

// checkRunbookMetrics: every metric the runbook names is one the gateway exposes (live
// is its /metrics) or one of helm/README.md's list (families created on first use),
// and every label value it selects on exists in live or in the list's line for that
// family: a renamed metric or label cannot linger in the runbook.
func checkRunbookMetrics(t *testing.T, live []byte) {
	t.Helper()
	families, _ := contractFamilies(t)
	exposed := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^# TYPE (\S+) `).FindAllSubmatch(live, -1) {
		exposed[string(m[1])] = true
	}
	text := readFileString(t, runbookPath)
	// Terraform's variables (gateway_image_tag) look like metrics.
	variables := readFileString(t, root+"/terraform/variables.tf")
	var missing []string
	seen := map[string]bool{}
	for _, n := range regexp.MustCompile(`\b(gateway|go|process)_[a-z0-9_]*[a-z0-9]\b`).FindAllString(text, -1) {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_count"), "_sum")
		if !seen[n] && !families[base] && !exposed[base] && !strings.Contains(variables, `variable "`+n+`"`) {
			missing = append(missing, n)
		}
		seen[n] = true
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("RUNBOOK.md names metrics the gateway does not expose: %v", missing)
	}
	contract := strings.Split(readFileString(t, contractPath), "\n")
	for _, m := range regexp.MustCompile(`\b(gateway_[a-z0-9_]+)\{([a-z_]+)="([^"$\n]+)"`).FindAllStringSubmatch(text, -1) {
		if regexp.MustCompile(`(?m)^` + m[1] + `\{[^}]*\b` + m[2] + `="` + regexp.QuoteMeta(m[3]) + `"`).Match(live) {
			continue
		}
		line := ""
		for _, l := range contract {
			if strings.HasPrefix(l, "- "+m[1]+"{") || strings.HasPrefix(l, "- "+m[1]+" ") {
				line = l
			}
		}
		if !strings.Contains(line, m[2]) || !strings.Contains(line, m[3]) {
			t.Errorf("RUNBOOK.md: %s: the gateway exposes no such series and helm/README.md's metric list gives %s no label %s with the value %q", m[0], m[1], m[2], m[3])
		}
	}
}

// checkRestrictedOverrides: a pod started with kubectl run --overrides in the
// gateway's namespace must pass Pod Security "restricted", which Terraform enforces
// there (else the API server refuses it).
func checkRestrictedOverrides(t *testing.T, where, cmd string) {
	t.Helper()
	// The JSON as the shell passes it.
	sh := exec.Command("bash", "-c", `for a in `+strings.TrimPrefix(cmd, "kubectl ")+`; do case "$a" in --overrides=*) printf %s "${a#--overrides=}";; esac; done`)
	out, err := sh.Output()
	if err != nil || len(out) == 0 {
		t.Errorf("%s: no --overrides JSON: %v", where, err)
		return
	}
	var pod corev1.Pod
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&pod); err != nil {
		t.Errorf("%s: --overrides is not a Pod: %v", where, err)
		return
	}
	psc := pod.Spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: the pod needs runAsNonRoot and the RuntimeDefault seccomp profile (Pod Security restricted)", where)
	}
	if len(pod.Spec.Containers) == 0 {
		t.Errorf("%s: --overrides replaces the containers: it must name one", where)
	}
	for _, c := range pod.Spec.Containers {
		sc := c.SecurityContext
		if c.Image == "" || sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.Capabilities == nil ||
			len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
			t.Errorf("%s: container %q needs an image, allowPrivilegeEscalation false and capabilities drop ALL (Pod Security restricted)", where, c.Name)
		}
	}
}
