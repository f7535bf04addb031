package repocheck

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mvdan.cc/sh/v3/syntax"
)

// TestDocs reads every ```sh block of every README and accounts for each command in it:
// the safe ones run (./task --list, -h, the quick start's curl and wscat commands against
// the dev node and gateway that ./task dev starts), and the others are checked for what
// can be checked here: tasks, flags, packages, files, chart values, Terraform outputs,
// k6 variables. A command nobody knows how to check fails the test, so a new README
// command needs a handler here. Commands run from the repository root unless the block
// says `cd`.
func TestDocs(t *testing.T) {
	d := &docs{t: t}
	readmes := tracked(t, "README.md", "*/README.md")
	if len(readmes) < 5 {
		t.Fatalf("found only %v", readmes)
	}
	// The dev node and gateway take a few seconds to come up: start them now, while the
	// static checks run (the test waits for them below).
	go func() { _, _ = d.quickstart() }()
	for _, readme := range readmes {
		text := read(t, readme)
		checkLinks(t, readme, text)
		for _, b := range shellBlocks(text) {
			f, err := syntax.NewParser().Parse(strings.NewReader(b.code), readme)
			if err != nil {
				t.Errorf("%s:%d: not a shell block: %v", readme, b.line, err)
				continue
			}
			cwd := ""
			syntax.Walk(f, func(n syntax.Node) bool {
				if n == nil {
					return true // Walk's end-of-children call
				}
				where := fmt.Sprintf("%s:%d", readme, b.line+int(n.Pos().Line()))
				switch n := n.(type) {
				case *syntax.DeclClause:
					if n.Variant.Value == "export" {
						for _, a := range n.Args {
							d.env(where, cwd, a.Name.Value)
						}
					}
				case *syntax.CallExpr:
					if len(n.Args) == 0 {
						return true // an assignment; its $(...) is walked on its own
					}
					args := make([]string, len(n.Args))
					for i, w := range n.Args {
						args[i] = word(w)
					}
					for _, a := range n.Assigns {
						if !strings.HasPrefix(a.Name.Value, "K6_") {
							t.Errorf("%s: %s=... before %s: only k6's own K6_* settings are expected", where, a.Name.Value, args[0])
						}
					}
					if args[0] == "cd" {
						cwd = filepath.Join(cwd, args[1])
						d.exists(where, cwd)
						return true
					}
					d.command(where, cwd, args)
				}
				return true
			})
		}
	}
	d.configTable(read(t, "README.md"))
	for _, readme := range []string{"README.md", "gateway/README.md", "upstream/README.md"} {
		d.prose(readme, read(t, readme))
	}
	if _, err := d.quickstart(); err != nil {
		t.Error(err)
	}
	if d.commands < 40 {
		t.Errorf("checked only %d commands: is the README parser broken?", d.commands)
	}
	t.Logf("%d README commands checked, %d of them run", d.commands, d.ran)
}

type block struct {
	line int // of the opening fence
	code string
}

var fence = regexp.MustCompile("^```(\\w*)\\s*$")

// shellBlocks returns the fenced blocks marked sh, bash or shell.
func shellBlocks(text string) []block {
	var out []block
	var cur *block
	for i, line := range strings.Split(text, "\n") {
		m := fence.FindStringSubmatch(line)
		switch {
		case m != nil && cur == nil && m[1] != "":
			if m[1] == "sh" || m[1] == "bash" || m[1] == "shell" {
				cur = &block{line: i + 1}
			} else {
				cur = &block{line: -1}
			}
		case m != nil && cur == nil:
			cur = &block{line: -1}
		case m != nil && m[1] == "":
			if cur.line > 0 {
				out = append(out, *cur)
			}
			cur = nil
		case cur != nil:
			cur.code += line + "\n"
		}
	}
	return out
}

var mdLink = regexp.MustCompile(`\]\(([^)#\s]+)(#[^)]*)?\)`)

// checkLinks: every relative link of a README names a file or folder that exists.
func checkLinks(t *testing.T, readme, text string) {
	for _, m := range mdLink.FindAllStringSubmatch(text, -1) {
		if strings.Contains(m[1], "://") {
			continue
		}
		p := filepath.Join(filepath.Dir(readme), m[1])
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			t.Errorf("%s: link to %s: no such file", readme, m[1])
		}
	}
}

// word is a shell word with its quotes removed; expansions stay as written ($X, $(...)).
func word(w *syntax.Word) string {
	var b strings.Builder
	var walk func(parts []syntax.WordPart)
	walk = func(parts []syntax.WordPart) {
		for _, p := range parts {
			switch p := p.(type) {
			case *syntax.Lit:
				b.WriteString(p.Value)
			case *syntax.SglQuoted:
				b.WriteString(p.Value)
			case *syntax.DblQuoted:
				walk(p.Parts)
			default:
				var buf bytes.Buffer
				_ = syntax.NewPrinter().Print(&buf, p)
				b.Write(buf.Bytes())
			}
		}
	}
	walk(w.Parts)
	return b.String()
}

// placeholder replaces what the reader supplies, $VARIABLES and $(commands), with x.
var placeholder = regexp.MustCompile(`\$\([^)]*\)|\$\{?[A-Za-z_][A-Za-z0-9_%/*]*\}?`)

type docs struct {
	t               *testing.T
	commands, ran   int
	once            sync.Map // name -> *onceValue
	quickstartAddr  string
	quickstartError error
	quickstartOnce  sync.Once
	// The quick start's dev node, which the README's networks example is served from.
	devHTTP, devWS string
}

type onceValue struct {
	once sync.Once
	val  any
	err  error
}

// memo computes f once per name for the whole test.
func (d *docs) memo(name string, f func() (any, error)) (any, error) {
	v, _ := d.once.LoadOrStore(name, &onceValue{})
	o := v.(*onceValue)
	o.once.Do(func() { o.val, o.err = f() })
	return o.val, o.err
}

func (d *docs) errorf(where, format string, args ...any) {
	d.t.Helper()
	d.t.Errorf(where+": "+format, args...)
}

func (d *docs) exists(where, rel string) {
	if _, err := os.Stat(filepath.Join(root, rel)); err != nil {
		d.errorf(where, "%s does not exist", rel)
	}
}

// run runs a command at the repository root (or dir) with a time limit.
func run(dir string, timeout time.Duration, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	abs, err := filepath.Abs(filepath.Join(root, dir))
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(name, "./") {
		name = filepath.Join(abs, name)
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = abs
	return cmd.CombinedOutput()
}

func (d *docs) command(where, cwd string, args []string) {
	d.commands++
	name, rest := args[0], args[1:]
	switch {
	case name == "./task" || name == "task":
		d.task(where, rest)
	case name == "curl":
		d.curl(where, rest)
	case name == "npx" && len(rest) > 0 && rest[0] == "wscat":
		d.wscat(where, rest[1:])
	case name == "go":
		d.goCmd(where, cwd, rest)
	case name == "cp":
		d.exists(where, filepath.Join(cwd, rest[0]))
	case name == "docker":
		d.docker(where, cwd, rest)
	case name == "aws":
		// The AWS CLI's own login helper: nothing of this repository to check.
	case name == "helm":
		d.helm(where, cwd, rest)
	case name == "kubectl":
		d.kubectl(where, rest)
	case name == "terraform":
		d.terraform(where, cwd, rest)
	case name == "k6":
		d.k6(where, cwd, rest)
	case name == "git" || name == "date":
		// Plain tools inside $(...), e.g. the image version.
	case strings.HasPrefix(name, "$("):
		// $(terraform output -raw kubeconfig_command): the inner command is checked.
	default:
		d.errorf(where, "no check knows the command %q: add one to .ci/tools/repocheck/docs_test.go", strings.Join(args, " "))
	}
}

// tasks lists the task names and aliases ./task knows.
func (d *docs) tasks() (map[string]bool, error) {
	v, err := d.memo("tasks", func() (any, error) {
		out, err := run("", 2*time.Minute, "go", "tool", "-modfile=.ci/tools/go.mod", "task", "--list-all", "--json")
		if err != nil {
			return nil, fmt.Errorf("task --list-all: %v\n%s", err, out)
		}
		var list struct {
			Tasks []struct {
				Name    string   `json:"name"`
				Aliases []string `json:"aliases"`
			} `json:"tasks"`
		}
		if err := json.Unmarshal(out, &list); err != nil {
			return nil, err
		}
		names := map[string]bool{}
		for _, tk := range list.Tasks {
			names[tk.Name] = true
			for _, a := range tk.Aliases {
				names[a] = true
			}
		}
		return names, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(map[string]bool), nil
}

// The commands whose flags a task passes on after --.
var cliArgsOf = map[string]string{
	"dev": "gateway", "run": "gateway",
	"perf:suite": "bench/cmd/suite", "perf:fixednode": "bench/cmd/fixednode", "perf:loadgen": "bench/cmd/loadgen",
}

func (d *docs) task(where string, args []string) {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		out, err := run("", 2*time.Minute, "./task", args...)
		d.ran++
		if err != nil {
			d.errorf(where, "./task %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return
	}
	names, err := d.tasks()
	if err != nil {
		d.t.Fatal(err)
	}
	if !names[args[0]] {
		d.errorf(where, "./task %s: no such task", args[0])
	}
	for i, a := range args {
		if a != "--" {
			continue
		}
		cmd, ok := cliArgsOf[args[0]]
		if !ok {
			d.errorf(where, "./task %s passes %v to nothing this check knows", args[0], args[i+1:])
			return
		}
		d.flags(where, cmd, args[i+1:])
	}
}

// usage returns the flags a command's -h lists: the gateway, or a bench command.
func (d *docs) usage(cmd string) (map[string]bool, []byte, error) {
	v, err := d.memo("usage "+cmd, func() (any, error) {
		var bin string
		if cmd == "gateway" {
			bin = d.gatewayBin()
		} else {
			bin = filepath.Join(d.tmp(), filepath.Base(cmd))
			if out, err := run("bench", 5*time.Minute, "go", "build", "-o", bin, "./"+strings.TrimPrefix(cmd, "bench/")); err != nil {
				return nil, fmt.Errorf("go build %s: %v\n%s", cmd, err, out)
			}
		}
		out, _ := run("", time.Minute, bin, "-h") // the flag package exits 0 or 2 on -h
		flags := map[string]bool{}
		for _, m := range regexp.MustCompile(`(?m)^\s+-([\w.-]+)`).FindAllSubmatch(out, -1) {
			flags[string(m[1])] = true
		}
		if len(flags) < 3 {
			return nil, fmt.Errorf("%s -h lists only %d flags:\n%s", cmd, len(flags), out)
		}
		return [2]any{flags, out}, nil
	})
	if err != nil {
		return nil, nil, err
	}
	p := v.([2]any)
	return p[0].(map[string]bool), p[1].([]byte), nil
}

// flags checks that every -flag in args is one cmd's -h lists.
func (d *docs) flags(where, cmd string, args []string) {
	known, _, err := d.usage(cmd)
	if err != nil {
		d.t.Fatal(err)
	}
	for _, a := range args {
		if !strings.HasPrefix(a, "-") || a == "-" {
			continue
		}
		name := strings.SplitN(strings.TrimLeft(a, "-"), "=", 2)[0]
		if name != "h" && !known[name] {
			d.errorf(where, "%s has no flag -%s (see its -h)", cmd, name)
		}
	}
}

func (d *docs) tmp() string {
	v, _ := d.memo("tmp", func() (any, error) { return d.t.TempDir(), nil })
	return v.(string)
}

// gatewayBin is $GATEWAY_BIN (./task lint:docs passes the one ./task build made), or a
// fresh build.
func (d *docs) gatewayBin() string {
	bin, err := d.gatewayBinErr()
	if err != nil {
		d.t.Fatal(err)
	}
	return bin
}

func (d *docs) gatewayBinErr() (string, error) {
	v, err := d.memo("gateway", func() (any, error) {
		if b := os.Getenv("GATEWAY_BIN"); b != "" {
			return b, nil
		}
		bin := filepath.Join(d.tmp(), "infura-gateway")
		if out, err := run("", 5*time.Minute, "go", "build", "-o", bin, "."); err != nil {
			return nil, fmt.Errorf("go build: %v\n%s", err, out)
		}
		return bin, nil
	})
	if err != nil {
		return "", err
	}
	return v.(string), nil
}

// env checks that the gateway reads an environment variable: its -h names it, or (for
// the secret, which has no flag) the binary holds the name. TF_VAR_x must be a
// variable of the Terraform configuration in cwd.
func (d *docs) env(where, cwd, name string) {
	d.commands++
	if v, ok := strings.CutPrefix(name, "TF_VAR_"); ok {
		if !tfDeclares(cwd, "variable", v) {
			d.errorf(where, "%s: no variable %q in %s", name, v, cwd)
		}
		return
	}
	_, help, err := d.usage("gateway")
	if err != nil {
		d.t.Fatal(err)
	}
	if bytes.Contains(help, []byte("env "+name+")")) {
		return
	}
	bin, err := os.ReadFile(d.gatewayBin())
	if err != nil || !bytes.Contains(bin, []byte(name)) {
		d.errorf(where, "the gateway does not read %s", name)
	}
}

// quickstart starts what ./task dev starts, the devnode command (geth --dev) with the
// gateway as its child, on free ports instead of the standard ones, and returns the
// gateway's address.
func (d *docs) quickstart() (string, error) {
	d.quickstartOnce.Do(func() {
		d.quickstartAddr, d.quickstartError = d.startQuickstart()
	})
	return d.quickstartAddr, d.quickstartError
}

// freePorts returns n loopback TCP ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func (d *docs) startQuickstart() (string, error) {
	t := d.t
	devnode := filepath.Join(d.tmp(), "devnode")
	out, err := run("", 5*time.Minute, "go", "build", "-o", devnode, "./gateway/internal/testnode/devnode")
	if err != nil {
		return "", fmt.Errorf("go build devnode: %v\n%s", err, out)
	}
	gateway, err := d.gatewayBinErr()
	if err != nil {
		return "", err
	}
	ports, err := freePorts(4)
	if err != nil {
		return "", err
	}
	httpPort, wsPort, authPort, gwPort := ports[0], ports[1], ports[2], ports[3]
	addr := "127.0.0.1:" + strconv.Itoa(gwPort)
	d.devHTTP, d.devWS = "http://127.0.0.1:"+strconv.Itoa(httpPort), "ws://127.0.0.1:"+strconv.Itoa(wsPort)
	cmd := exec.Command(devnode, "-http-port", strconv.Itoa(httpPort), "-ws-port", strconv.Itoa(wsPort),
		"-authrpc-port", strconv.Itoa(authPort), "-log", filepath.Join(d.tmp(), "geth.log"), "--",
		gateway, "-listen", addr, "-log-level", "warn",
		"-upstream-http", "http://127.0.0.1:"+strconv.Itoa(httpPort), "-upstream-ws", "ws://127.0.0.1:"+strconv.Itoa(wsPort))
	if cmd.Dir, err = filepath.Abs(root); err != nil {
		return "", err
	}
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		return "", err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		// Ctrl-C, as a person stops ./task dev: devnode stops the gateway, then geth.
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("devnode did not stop within 30s of SIGINT:\n%s", logs.String())
		}
	})
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr, nil
			}
		}
		select {
		case <-exited:
			return "", fmt.Errorf("devnode exited before the gateway was ready:\n%s", logs.String())
		default:
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("gateway not ready within 2 minutes:\n%s", logs.String())
		}
		time.Sleep(100 * time.Millisecond) // readiness poll of external processes
	}
}

// curlValueFlags are curl options that take a value.
var curlValueFlags = map[string]bool{"-X": true, "-d": true, "--data": true, "-H": true, "-o": true, "-w": true}

func (d *docs) curl(where string, args []string) {
	var opts []string
	var target string
	for i := 0; i < len(args); i++ {
		if curlValueFlags[args[i]] && i+1 < len(args) {
			opts = append(opts, args[i], args[i+1])
			i++
		} else if strings.HasPrefix(args[i], "-") {
			opts = append(opts, args[i])
		} else {
			target = args[i]
		}
	}
	if !strings.Contains(target, "://") {
		target = "http://" + target
	}
	u, err := url.Parse(placeholder.ReplaceAllString(target, "x"))
	if err != nil {
		d.errorf(where, "curl %s: %v", target, err)
		return
	}
	switch {
	case u.Port() == "8545":
		// fixednode (bench): the path must be one it serves.
		src, _ := os.ReadFile(filepath.Join(root, "bench/internal/fixednode/node.go"))
		if !bytes.Contains(src, []byte(`"`+u.Path+`"`)) {
			d.errorf(where, "bench's fixednode does not serve %s", u.Path)
		}
		return
	case u.Port() == "8000" || u.Host == "x":
		// The quick-start gateway (or a deployed one: the same binary serves the path).
	default:
		d.errorf(where, "curl to %s: no check knows this host", u.Host)
		return
	}
	addr, err := d.quickstart()
	if err != nil {
		d.t.Fatal(err)
	}
	// A path or Host of the README's networks example goes to a gateway serving it.
	if d.forNetworks(u.Path, opts) {
		if addr, err = d.networksGateway(); err != nil {
			d.t.Fatal(err)
		}
	}
	u.Scheme, u.Host = "http", addr
	out, err := run("", time.Minute, "curl", append(opts, "-sS", "--fail-with-body", u.String())...)
	d.ran++
	if err != nil {
		d.errorf(where, "curl %s: %v\n%s", strings.Join(args, " "), err, out)
		return
	}
	if !json.Valid(out) {
		d.errorf(where, "curl %s: the answer is not JSON: %.300s", strings.Join(args, " "), out)
	}
}

// wscat runs the pinned wscat (gateway/e2e's package.json) against the quick-start
// gateway; an interactive session becomes one eth_chainId call.
func (d *docs) wscat(where string, args []string) {
	addr, err := d.quickstart()
	if err != nil {
		d.t.Fatal(err)
	}
	interactive := true
	for i, a := range args {
		if a == "-c" && i+1 < len(args) {
			args[i+1] = strings.Replace(strings.Replace(args[i+1], "localhost:8000", addr, 1), "127.0.0.1:8000", addr, 1)
		}
		if a == "-x" {
			interactive = false
		}
	}
	if interactive {
		args = append(args, "-x", `{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}`, "-w", "1")
	}
	bin, _ := filepath.Abs(filepath.Join(root, "gateway/e2e/node_modules/.bin/wscat"))
	if _, err := os.Stat(bin); err != nil {
		d.t.Fatalf("wscat is not installed: run ./task lint:docs (npm ci in gateway/e2e): %v", err)
	}
	// wscat ends the session when its standard input closes, before the answer comes;
	// a terminal stays open, and so does this pipe until wscat exits.
	stdin, hold, err := os.Pipe()
	if err != nil {
		d.t.Fatal(err)
	}
	defer hold.Close()
	defer stdin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = stdin
	out, err := cmd.CombinedOutput()
	d.ran++
	if err != nil || !bytes.Contains(out, []byte(`"result"`)) {
		d.errorf(where, "wscat %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (d *docs) goCmd(where, cwd string, args []string) {
	dir := cwd
	if len(args) > 1 && args[0] == "-C" {
		dir, args = filepath.Join(cwd, args[1]), args[2:]
	}
	if len(args) == 0 {
		d.errorf(where, "go without a command")
		return
	}
	sub, rest := args[0], args[1:]
	var pkgs, tags []string
	var fuzz, bench string
	for i := 0; i < len(rest); i++ {
		switch a := rest[i]; {
		case a == "-o" || a == "-run" || a == "-fuzztime" || a == "-count" || a == "-timeout":
			i++
		case a == "-tags":
			tags = append(tags, "-tags", rest[i+1])
			i++
		case a == "-fuzz":
			fuzz = rest[i+1]
			i++
		case a == "-bench":
			bench = rest[i+1]
			i++
		case strings.HasPrefix(a, "-"):
		case sub == "run" && len(pkgs) == 1:
			// Arguments of the program itself.
		default:
			pkgs = append(pkgs, a)
		}
	}
	switch sub {
	case "tool":
		return // go tool pprof: part of Go
	case "run", "build", "test", "vet":
	default:
		d.errorf(where, "go %s: no check knows this go command", sub)
		return
	}
	dirs, err := d.memo(fmt.Sprint("go list", dir, tags, pkgs), func() (any, error) {
		out, err := run(dir, 5*time.Minute, "go", append(append([]string{"list", "-f", "{{.Dir}}"}, tags...), pkgs...)...)
		if err != nil {
			return nil, fmt.Errorf("%v\n%s", err, out)
		}
		return strings.Fields(string(out)), nil
	})
	if err != nil {
		d.errorf(where, "go %s: the packages %v do not load: %v", sub, pkgs, err)
		return
	}
	if sub == "run" {
		// `go run . -h` and the like: run the gateway's or the command's help.
		cmdArgs := rest[len(rest)-1:]
		if pkgs[0] == "." && dir == "" {
			d.flags(where, "gateway", rest[1:])
			if cmdArgs[0] == "-h" {
				if _, help, err := d.usage("gateway"); err != nil || len(help) == 0 {
					d.errorf(where, "infura-gateway -h: %v", err)
				}
				d.ran++
			}
			return
		}
		if cmdArgs[0] == "-h" {
			if _, _, err := d.usage(filepath.Join(dir, strings.TrimPrefix(pkgs[0], "./"))); err != nil {
				d.errorf(where, "%v", err)
			}
			d.ran++
			return
		}
		d.errorf(where, "go run %v: only -h is run by this check", rest)
		return
	}
	// Fuzz targets and benchmarks, read from the packages' test files.
	var targets []string
	for _, pkgDir := range dirs.([]string) {
		files, _ := filepath.Glob(filepath.Join(pkgDir, "*_test.go"))
		for _, f := range files {
			src, _ := os.ReadFile(f)
			for _, m := range testFunc.FindAllSubmatch(src, -1) {
				targets = append(targets, string(m[1]))
			}
		}
	}
	for _, name := range []string{fuzz, bench} {
		if name == "" {
			continue
		}
		for _, alt := range strings.Split(name, "|") {
			found := false
			for _, target := range targets {
				found = found || strings.Contains(target, alt)
			}
			if !found {
				d.errorf(where, "no fuzz target or benchmark matches %q in %v", alt, pkgs)
			}
		}
	}
}

var testFunc = regexp.MustCompile(`(?m)^func ((Fuzz|Benchmark)\w*)\(`)

// dockerfile returns the Dockerfile of a build context.
func dockerfile(cwd, context string) string {
	b, _ := os.ReadFile(filepath.Join(root, cwd, context, "Dockerfile"))
	return string(b)
}

func (d *docs) docker(where, cwd string, args []string) {
	if len(args) == 0 {
		d.errorf(where, "docker without a command")
		return
	}
	switch {
	case args[0] == "buildx" && len(args) > 1 && args[1] == "build":
		context := args[len(args)-1]
		df := dockerfile(cwd, context)
		if df == "" {
			d.errorf(where, "no Dockerfile in the build context %s", filepath.Join(cwd, context))
			return
		}
		for i, a := range args {
			if a == "--build-arg" {
				name := strings.SplitN(args[i+1], "=", 2)[0]
				if !regexp.MustCompile(`(?m)^ARG (.* )?` + name + `(=|\s|$)`).MatchString(df) {
					d.errorf(where, "the Dockerfile has no ARG %s", name)
				}
			}
		}
	case args[0] == "run":
		df := dockerfile(cwd, ".")
		for i, a := range args {
			switch a {
			case "-e":
				d.env(where, cwd, strings.SplitN(args[i+1], "=", 2)[0])
			case "-p":
				port := args[i+1][strings.LastIndex(args[i+1], ":")+1:]
				if !regexp.MustCompile(`(?m)^EXPOSE ` + port + `\b`).MatchString(df) {
					d.errorf(where, "the image does not EXPOSE %s", port)
				}
			}
		}
	case args[0] == "login":
	default:
		d.errorf(where, "docker %s: no check knows this", args[0])
	}
}

// helm upgrade --install renders: the chart exists and takes every --set (its schema
// rejects unknown keys and bad values); helm test needs the chart's test hook.
func (d *docs) helm(where, cwd string, args []string) {
	switch {
	case len(args) > 2 && args[0] == "upgrade" && args[1] == "--install":
		chart := filepath.Join(cwd, args[3])
		d.exists(where, chart)
		// The Kubernetes version the chart tests render for (one definition, in Go).
		kube := regexp.MustCompile(`kubeVersion\s*=\s*"([^"]+)"`).FindStringSubmatch(read(d.t, "helm/tests/chart/render_test.go"))
		if kube == nil {
			d.t.Fatal("no kubeVersion constant in helm/tests/chart/render_test.go")
		}
		tmpl := []string{"template", args[2], chart, "--kube-version", kube[1]}
		for i, a := range args {
			if a == "--set" || a == "-f" || a == "--values" {
				v := placeholder.ReplaceAllString(args[i+1], "x")
				// A digest placeholder ($DIGEST) stands for a digest: the schema wants its form.
				if strings.HasPrefix(args[i+1], "image.digest=$") {
					v = "image.digest=sha256:" + strings.Repeat("0", 64)
				}
				tmpl = append(tmpl, a, v)
			}
		}
		bin, err := d.memo("helm", func() (any, error) {
			out, err := run(".ci/tools", 10*time.Minute, "go", "tool", "-n", "helm")
			return strings.TrimSpace(string(out)), err
		})
		if err != nil {
			d.t.Fatalf("go tool -n helm: %v", err)
		}
		out, err := run("", time.Minute, bin.(string), tmpl...)
		d.ran++
		if err != nil {
			d.errorf(where, "helm %s: %v\n%s", strings.Join(tmpl, " "), err, out)
		}
	case len(args) > 0 && args[0] == "test":
		d.exists(where, "helm/infura-gateway/templates/tests")
	default:
		d.errorf(where, "helm %s: no check knows this", strings.Join(args, " "))
	}
}

// kubectl create secret: the keys are the ones the chart reads by default. kubectl
// label namespace: the label is the one Terraform sets and the chart's NOTES name (the
// AWS Load Balancer Controller's readiness-gate label). kubectl create namespace: fine.
func (d *docs) kubectl(where string, args []string) {
	if len(args) == 3 && args[0] == "create" && args[1] == "namespace" {
		return
	}
	if len(args) == 4 && args[0] == "label" && args[1] == "namespace" {
		key, value, _ := strings.Cut(args[3], "=")
		tf := ""
		files, _ := filepath.Glob(filepath.Join(root, "terraform", "*.tf"))
		for _, f := range files {
			b, _ := os.ReadFile(f)
			tf += string(b)
		}
		if !regexp.MustCompile(regexp.QuoteMeta(strconv.Quote(key)) + `\s*=\s*` + regexp.QuoteMeta(strconv.Quote(value))).MatchString(tf) {
			d.errorf(where, "terraform/*.tf does not set the namespace label %s=%s", key, value)
		}
		if !strings.Contains(read(d.t, "helm/infura-gateway/templates/NOTES.txt"), args[3]) {
			d.errorf(where, "the chart's NOTES.txt does not name the namespace label %s", args[3])
		}
		return
	}
	if len(args) < 3 || args[0] != "create" || args[1] != "secret" {
		d.errorf(where, "kubectl %s: no check knows this", strings.Join(args, " "))
		return
	}
	values := read(d.t, "helm/infura-gateway/values.yaml")
	for _, a := range args {
		if lit, ok := strings.CutPrefix(a, "--from-literal="); ok {
			key := strings.SplitN(lit, "=", 2)[0]
			if !regexp.MustCompile(`(?m)^\s+existingSecret\w*Key: ` + regexp.QuoteMeta(key) + `\s*$`).MatchString(values) {
				d.errorf(where, "the chart does not read the secret key %s by default", key)
			}
		}
	}
}

// tfDeclares reports whether the Terraform configuration in dir declares kind "name"
// (or, for resources, kind "type" "name").
func tfDeclares(dir, kind, name string) bool {
	files, _ := filepath.Glob(filepath.Join(root, dir, "*.tf"))
	decl := kind + ` "` + name + `"`
	if kind == "resource" {
		typ, n, _ := strings.Cut(name, ".")
		decl = `resource "` + typ + `" "` + n + `"`
	}
	for _, f := range files {
		if b, _ := os.ReadFile(f); bytes.Contains(b, []byte(decl)) {
			return true
		}
	}
	return false
}

func (d *docs) terraform(where, cwd string, args []string) {
	if len(args) == 0 {
		d.errorf(where, "terraform without a command")
		return
	}
	switch args[0] {
	case "init", "validate", "plan", "refresh", "apply":
		for _, a := range args[1:] {
			if target, ok := strings.CutPrefix(a, "-target="); ok && !tfDeclares(cwd, "resource", target) {
				d.errorf(where, "no resource %s in %s", target, cwd)
			}
		}
	case "output":
		if name := args[len(args)-1]; !tfDeclares(cwd, "output", name) {
			d.errorf(where, "no output %q in %s", name, cwd)
		}
	default:
		d.errorf(where, "terraform %s: no check knows this", args[0])
	}
}

// k6 run: the script exists and reads every -e variable.
func (d *docs) k6(where, cwd string, args []string) {
	if len(args) < 2 || args[0] != "run" {
		d.errorf(where, "k6 %s: no check knows this", strings.Join(args, " "))
		return
	}
	script := filepath.Join(cwd, args[len(args)-1])
	d.exists(where, script)
	var src []byte
	for _, f := range []string{script, "k6/lib/common.js"} {
		b, _ := os.ReadFile(filepath.Join(root, f))
		src = append(src, b...)
	}
	for i, a := range args {
		if a == "-e" {
			name := strings.SplitN(args[i+1], "=", 2)[0]
			// Read as __ENV.NAME or through lib/common.js's env('NAME', default).
			if !bytes.Contains(src, []byte("__ENV."+name)) && !bytes.Contains(src, []byte("'"+name+"'")) {
				d.errorf(where, "%s does not read the variable %s", script, name)
			}
		}
	}
}

var (
	tableFlag = regexp.MustCompile("`(-[a-z][a-z0-9-]*)`")
	tableEnv  = regexp.MustCompile("`([A-Z][A-Z0-9_]+)`")
)

// configTable checks the main README's configuration table: every flag in its first
// column is one `infura-gateway -h` lists, every variable in its second one the gateway
// reads.
func (d *docs) configTable(text string) {
	rows := 0
	for i, line := range strings.Split(text, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 || !strings.HasPrefix(line, "| `-") && !strings.HasPrefix(line, "| |") {
			continue
		}
		rows++
		where := fmt.Sprintf("README.md:%d", i+1)
		for _, m := range tableFlag.FindAllStringSubmatch(cells[1], -1) {
			d.flags(where, "gateway", []string{m[1]})
		}
		for _, m := range tableEnv.FindAllStringSubmatch(cells[2], -1) {
			d.env(where, "", m[1])
		}
	}
	if rows < 5 {
		d.t.Errorf("README.md: found only %d rows of the configuration table", rows)
	}
}

var (
	proseFlag = regexp.MustCompile("`(-[a-z][a-z0-9-]*)[ =`]")
	proseEnv  = regexp.MustCompile("`([A-Z][A-Z0-9]*_[A-Z0-9_]+)`")
	goFlags   = map[string]bool{"-race": true, "-benchmem": true, "-run": true, "-fuzz": true, "-bench": true, "-count": true, "-tags": true}
)

// prose checks the flags and variables a README names outside its commands: each is
// one the gateway has (or, for a variable, one a Taskfile or the test node reads), so
// a renamed flag cannot linger in the text.
func (d *docs) prose(readme, text string) {
	var outside strings.Builder
	in := false
	for _, line := range strings.Split(text, "\n") {
		if fence.MatchString(line) {
			in = !in
			continue
		}
		if !in {
			outside.WriteString(line + "\n")
		}
	}
	elsewhere := read(d.t, "Taskfile.yml") + read(d.t, "gateway/internal/testnode/testnode.go")
	for _, m := range proseFlag.FindAllStringSubmatch(outside.String(), -1) {
		if !goFlags[m[1]] {
			d.flags(readme, "gateway", []string{m[1]})
		}
	}
	for _, m := range proseEnv.FindAllStringSubmatch(outside.String(), -1) {
		if strings.Contains(elsewhere, m[1]) {
			continue
		}
		d.env(readme, "", m[1])
	}
}

// networksExample is the README's "Several networks" configuration file: the yaml block
// that has networks:.
func networksExample(t *testing.T) string {
	text := read(t, "README.md")
	for _, b := range strings.Split(text, "```yaml\n")[1:] {
		if y, _, _ := strings.Cut(b, "```"); strings.Contains(y, "\nnetworks:") || strings.HasPrefix(y, "networks:") {
			return y
		}
	}
	t.Fatal("README.md has no yaml block with networks:")
	return ""
}

var (
	exampleName = regexp.MustCompile(`(?m)^  - name: ([a-z0-9-]+)$`)
	exampleHost = regexp.MustCompile(`(?m)^    hosts: \[(.*)\]$`)
)

// forNetworks reports whether a curl of path with opts (its -H headers) is addressed to
// a network of the README's example: by a path prefix or a Host it names.
func (d *docs) forNetworks(path string, opts []string) bool {
	y := networksExample(d.t)
	seg, _, _ := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	for _, m := range exampleName.FindAllStringSubmatch(y, -1) {
		if seg == m[1] {
			return true
		}
	}
	for i := 0; i+1 < len(opts); i++ {
		if opts[i] != "-H" || !strings.HasPrefix(strings.ToLower(opts[i+1]), "host:") {
			continue
		}
		host := strings.TrimSpace(opts[i+1][len("host:"):])
		for _, m := range exampleHost.FindAllStringSubmatch(y, -1) {
			for _, h := range strings.Split(m[1], ",") {
				h = strings.Trim(strings.TrimSpace(h), `"`)
				if h == host || strings.HasPrefix(h, "*") && strings.HasSuffix(host, h[1:]) {
					return true
				}
			}
		}
	}
	return false
}

// networksGateway serves the README's networks example, every upstream replaced by the
// quick start's dev node and every chain id by the dev chain's (1337): the addressing
// is the example's own.
func (d *docs) networksGateway() (string, error) {
	v, err := d.memo("networks gateway", func() (any, error) {
		y := networksExample(d.t)
		y = regexp.MustCompile(`(?m)^(\s+)http: .*$`).ReplaceAllString(y, "${1}http: "+d.devHTTP)
		y = regexp.MustCompile(`(?m)^(\s+)ws: .*$`).ReplaceAllString(y, "${1}ws: "+d.devWS)
		y = regexp.MustCompile(`(?m)chain_id: [0-9]+`).ReplaceAllString(y, "chain_id: 1337")
		file := filepath.Join(d.tmp(), "networks.yaml")
		if err := os.WriteFile(file, []byte(y), 0o600); err != nil {
			return nil, err
		}
		gateway, err := d.gatewayBinErr()
		if err != nil {
			return nil, err
		}
		ports, err := freePorts(1)
		if err != nil {
			return nil, err
		}
		addr := "127.0.0.1:" + strconv.Itoa(ports[0])
		cmd := exec.Command(gateway, "-listen", addr, "-admin-listen", "", "-log-level", "warn", "-config", file)
		var logs bytes.Buffer
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		d.t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() })
		deadline := time.Now().Add(time.Minute)
		for {
			if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return addr, nil
				}
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("the README's networks example did not serve within a minute:\n%s", logs.String())
			}
			time.Sleep(100 * time.Millisecond) // readiness poll of an external process
		}
	})
	if err != nil {
		return "", err
	}
	return v.(string), nil
}
