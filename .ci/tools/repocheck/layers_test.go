package repocheck

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/infura-gateway/infura-gateway"

// layers ranks every package of the gateway's binary: a package may import only
// packages of a lower rank (dependencies point down: main → gateway → gateway/* →
// upstream → proto). A package not listed fails the test, so a new package is placed
// in the order when it is added. Internal test helpers are outside the order.
var layers = map[string]int{
	"tracing":  -1, // OpenTelemetry at the edges; proto.Request carries a call's state
	"proto":    0,
	"upstream": 1,
	// Leaf parts of the front end: none imports another of the gateway but these.
	"gateway/clientip":    2,
	"gateway/redisconn":   2,
	"gateway/redact":      2,
	"gateway/failover":    2,
	"gateway/config":      3, // clientip, upstream
	"gateway/limit":       3, // redisconn
	"gateway/sharedcache": 3, // redisconn
	"gateway/head":        3,
	"gateway/filters":     3, // redisconn, upstream: filters the gateway keeps itself
	"gateway/cache":       4, // head, sharedcache, config
	"gateway/access":      4, // limit, clientip, sharedcache, config
	"gateway/broadcast":   4, // config, redisconn: a network's sends to several upstreams
	"gateway/logs":        4, // config, upstream: eth_getLogs split into chunks
	"gateway/network":     5, // cache, head, logs: one chain
	"gateway/pipeline":    6, // network, access, cache
	"gateway/httpapi":     7, // the transports
	"gateway/socket":      7,
	"gateway/admin":       7,
	"gateway":             8,
	"":                    9, // main
}

// TestLayers: go list shows no package importing one of its own rank or above.
func TestLayers(t *testing.T) {
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "./...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	checked := 0
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		pkg := rel(f[0])
		if testHelper(pkg) || strings.HasPrefix(pkg, "bench") || strings.HasPrefix(pkg, "gateway/e2e") {
			continue
		}
		rank, ok := layers[pkg]
		if !ok {
			t.Errorf("package %q has no place in the layers (repocheck/layers_test.go): add it", pkg)
			continue
		}
		checked++
		for _, imp := range f[1:] {
			if !strings.HasPrefix(imp, module) {
				continue
			}
			dep := rel(imp)
			if testHelper(dep) {
				t.Errorf("%s imports the test helper %s", pkg, dep)
				continue
			}
			if r, ok := layers[dep]; ok && r >= rank {
				t.Errorf("%s (layer %d) imports %s (layer %d): dependencies must point down", pkg, rank, dep, r)
			}
		}
	}
	if checked < 15 {
		t.Fatalf("only %d packages checked: go list output not understood", checked)
	}
}

// TestFileSize: no non-test Go file of gateway/, upstream/ or proto/ is over 550 lines,
// what a reader can hold.
func TestFileSize(t *testing.T) {
	for _, dir := range []string{"gateway", "upstream", "proto"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if n := bytes.Count(b, []byte("\n")); n > 550 {
				r, _ := filepath.Rel(root, path)
				t.Errorf("%s: %d lines, over 550: split it along its seams", r, n)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// testHelper: an internal package, which only tests import (the module's own
// internal/ or one of a package's).
func testHelper(pkg string) bool {
	return strings.HasPrefix(pkg, "internal/") || strings.Contains(pkg, "/internal/")
}

func rel(imp string) string {
	return strings.TrimPrefix(strings.TrimPrefix(imp, module), "/")
}
