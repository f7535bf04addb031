// Package repocheck holds the checks of the repository as a whole: every tool is pinned
// in one place (pins_test.go), and every command the READMEs show works (docs_test.go).
package repocheck

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// root is the repository root, seen from this package's directory (.ci/tools/repocheck).
const root = "../../.."

func read(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// tracked lists the repository's files, committed or not (git ignores the rest), relative to root.
func tracked(t *testing.T, patterns ...string) []string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"ls-files", "--cached", "--others", "--exclude-standard", "--"}, patterns...)...)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	return strings.Fields(string(out))
}

var goLine = regexp.MustCompile(`(?m)^go (\S+)\s*$`)

// One Go release everywhere: the go line of the root go.mod. Every other module names
// the same one and none asks for another toolchain; the Dockerfile's image follows it
// (dockerlint checks ARG GO_VERSION against it too, with the rest of the image policy).
func TestPinGoVersion(t *testing.T) {
	m := goLine.FindStringSubmatch(read(t, "go.mod"))
	if m == nil {
		t.Fatal("go.mod has no go line")
	}
	want := m[1]
	mods := tracked(t, "go.mod", "*/go.mod")
	if len(mods) < 2 {
		t.Fatalf("found only %v", mods)
	}
	for _, mod := range mods {
		s := read(t, mod)
		if m := goLine.FindStringSubmatch(s); m == nil || m[1] != want {
			t.Errorf("%s: go line %v, want go %s (the root go.mod's)", mod, m, want)
		}
		if regexp.MustCompile(`(?m)^toolchain `).MatchString(s) {
			t.Errorf("%s: a toolchain line names a second Go version; remove it", mod)
		}
	}
	if d := regexp.MustCompile(`(?m)^ARG GO_VERSION=(\S+)$`).FindStringSubmatch(read(t, "Dockerfile")); d == nil || d[1] != want {
		t.Errorf("Dockerfile: ARG GO_VERSION %v, want %s", d, want)
	}
}

// geth's version is the testnode package's GethVersion; nothing else spells it out.
func TestPinGeth(t *testing.T) {
	const home = "gateway/internal/testnode/testnode.go"
	m := regexp.MustCompile(`(?m)^const GethVersion = "v([0-9.]+)"$`).FindStringSubmatch(read(t, home))
	if m == nil {
		t.Fatalf("%s: no GethVersion constant", home)
	}
	for _, f := range tracked(t) {
		if f == home || strings.HasSuffix(f, ".png") {
			continue
		}
		if strings.Contains(read(t, f), m[1]) {
			t.Errorf("%s spells out geth's version %s: use testnode.GethVersion (go run ./gateway/internal/testnode/devnode version)", f, m[1])
		}
	}
}

// toxiproxy's version is the toxiproxy test package's Version; nothing else spells it
// out, nothing installs it another way, and no module depends on the toxiproxy module
// (the tests talk to its HTTP API with the standard library).
func TestPinToxiproxy(t *testing.T) {
	const home = "gateway/internal/toxiproxy/install.go"
	m := regexp.MustCompile(`(?m)^const Version = "v([0-9.]+)"$`).FindStringSubmatch(read(t, home))
	if m == nil {
		t.Fatalf("%s: no Version constant", home)
	}
	if n := strings.Count(read(t, home), m[1]); n != 1 {
		t.Errorf("%s spells out toxiproxy's version %d times: once, in the Version constant", home, n)
	}
	for _, f := range tracked(t) {
		if f == home || strings.HasSuffix(f, ".png") {
			continue
		}
		s := read(t, f)
		base := filepath.Base(f)
		if (base == "go.mod" || base == "go.sum") && strings.Contains(s, "github.com/Shopify/toxiproxy") {
			t.Errorf("%s depends on the toxiproxy module: talk to its HTTP API (gateway/internal/toxiproxy)", f)
		}
		for _, line := range strings.Split(s, "\n") {
			// Lockfiles record third-party versions, which may coincide: there only a
			// line that names toxiproxy counts.
			if strings.Contains(line, m[1]) && (base != "go.sum" && base != "package-lock.json" ||
				strings.Contains(strings.ToLower(line), "toxiproxy")) {
				t.Errorf("%s spells out toxiproxy's version %s: use toxiproxy.Version (go run ./gateway/internal/toxiproxy/install version): %q",
					f, m[1], strings.TrimSpace(line))
			}
		}
	}
}

// Go-built tools (go-task, helm, tflint) are tool directives of .ci/tools/go.mod, and no
// Taskfile or script installs a versioned copy of its own.
func TestPinGoTools(t *testing.T) {
	mod := read(t, ".ci/tools/go.mod")
	for _, tool := range []string{"github.com/go-task/task/v3/cmd/task", "helm.sh/helm/v3/cmd/helm", "github.com/terraform-linters/tflint"} {
		if !regexp.MustCompile(`(?m)^\s*(tool\s+)?` + regexp.QuoteMeta(tool) + `\s*$`).MatchString(mod) {
			t.Errorf(".ci/tools/go.mod: no tool directive for %s", tool)
		}
	}
	pinned := regexp.MustCompile(`go (install|run) [^\s]+@v?[0-9]`)
	for _, f := range tracked(t, "Taskfile.yml", "*/Taskfile.yml", "task", ".ci/run") {
		if loc := pinned.FindString(read(t, f)); loc != "" {
			t.Errorf("%s: %q pins a tool outside .ci/tools/go.mod", f, loc)
		}
	}
}

// Every npm package is pinned once: an exact version, in one package.json of the
// repository (package-lock.json records what that version resolved to).
func TestPinNodePackages(t *testing.T) {
	exact := regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+$`)
	seen := map[string]string{}
	for _, f := range tracked(t, "package.json", "*/package.json") {
		var pkg struct {
			Dependencies, DevDependencies map[string]string
		}
		if err := json.Unmarshal([]byte(read(t, f)), &pkg); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, deps := range []map[string]string{pkg.Dependencies, pkg.DevDependencies} {
			for name, v := range deps {
				if !exact.MatchString(v) {
					t.Errorf("%s: %s %q is a range, pin an exact version", f, name, v)
				}
				if other, ok := seen[name]; ok {
					t.Errorf("%s is pinned in %s and in %s: keep one", name, other, f)
				}
				seen[name] = f
			}
		}
		if _, err := os.Stat(filepath.Join(root, filepath.Dir(f), "package-lock.json")); err != nil {
			t.Errorf("%s has no package-lock.json beside it: npm ci needs one", f)
		}
	}
	if len(seen) == 0 {
		t.Fatal("no npm packages found")
	}
}
