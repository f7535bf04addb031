//go:build e2e

// Package e2e runs real websocket clients nobody here wrote (wscat, ethers v6, from
// npm, pinned in package.json) against the gateway binary in front of a geth --dev
// node. It needs Node.js and `npm ci` in this directory; ./task test:e2e does both:
//
//	cd gateway/e2e && npm ci && go test -tags e2e -count=1 -v .
package e2e

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
)

func TestRealClients(t *testing.T) {
	if _, err := os.Stat(filepath.Join("node_modules", "wscat")); err != nil {
		t.Fatalf("npm packages missing: run `npm ci` in gateway/e2e/ first (./task test:e2e does) (%v)", err)
	}
	node := testnode.Start(t)
	bin := testnode.GatewayBinary(t)
	for _, mode := range []struct {
		name string
		args []string
	}{
		{"shared upstream sockets", nil},
		{"socket per client", []string{"-ws-per-client"}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			url := startGateway(t, bin, node, mode.args...) + "/socket2socket"
			run(t, "node", "wscat_smoke.js", url)
			run(t, "node", "ethers_blocks.js", url, "3")
		})
	}
}

// run executes a client script with a hard time limit; its output goes to the test log.
func run(t *testing.T, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	t.Logf("%s %v:\n%s", name, args, out)
	if err != nil {
		t.Fatalf("%s %v: %v", name, args, err)
	}
}

// startGateway runs the gateway binary on a free loopback port and waits
// until /readyz answers 200. It is stopped when the test ends.
func startGateway(t *testing.T, bin string, node *testnode.Node, extra ...string) string {
	t.Helper()
	addr := "127.0.0.1:" + strconv.Itoa(testnode.FreePort(t))
	args := append([]string{"-listen", addr, "-upstream-http", node.HTTPURL, "-upstream-ws", node.WSURL}, extra...)
	cmd := exec.Command(bin, args...)
	logf, err := os.Create(filepath.Join(t.TempDir(), "gateway.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("gateway log:\n%s", b)
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway not ready within 60s (last error %v)", err)
		}
		time.Sleep(50 * time.Millisecond) // polling an external process's readiness
	}
	return "ws://" + addr
}
