//go:build perf || soak

package failover_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
	"github.com/infura-gateway/infura-gateway/internal/syncbuf"
)

// The measurements (perf, soak) run the gateway as its own process, so that its CPU
// and memory are its own and not the test's.

// process is a gateway running as its own process.
type process struct {
	url, wsURL, admin string // http://listen, ws://listen/socket2socket, http://admin-listen
	cmd               *exec.Cmd
	log               syncbuf.Buffer
	done              chan struct{}
}

// startProcess starts bin on free loopback ports with yaml as its configuration file
// and args, and waits until its admin listener answers. It is stopped when the test
// ends; a failed test logs its warnings.
func startProcess(t *testing.T, bin, yaml string, args ...string) *process {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	listen := "127.0.0.1:" + strconv.Itoa(testnode.FreePort(t))
	admin := "127.0.0.1:" + strconv.Itoa(testnode.FreePort(t))
	p := &process{url: "http://" + listen, wsURL: "ws://" + listen + "/socket2socket", admin: "http://" + admin,
		done: make(chan struct{})}
	p.cmd = exec.Command(bin, append([]string{"-listen", listen, "-admin-listen", admin, "-config", path}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = &p.log, &p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("gateway log (warnings):\n%s", p.log.Filter(`"level":"WARN"`, `"level":"ERROR"`))
		}
	})
	waitFor(t, "the gateway process answering", time.Minute, func() bool {
		p.exited(t)
		_, err := get(p.admin + "/status")
		return err == nil
	})
	return p
}

// exited fails the test when the process has ended.
func (p *process) exited(t *testing.T) {
	t.Helper()
	select {
	case <-p.done:
		t.Fatalf("the gateway exited:\n%s", p.log.Filter(""))
	default:
	}
}

// stop sends SIGINT and waits for the process to end (a minute at most, then kills it).
func (p *process) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("the gateway did not stop within a minute of SIGINT")
	}
}

// cpu is the process's CPU time so far (utime+stime of /proc/<pid>/stat).
func (p *process) cpu(t *testing.T) time.Duration {
	t.Helper()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / time.Duration(clockTicks)
}

// rssKiB is the process's resident memory (VmRSS of /proc/<pid>/status).
func (p *process) rssKiB(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			if f := strings.Fields(rest); len(f) == 2 {
				if v, err := strconv.ParseInt(f[0], 10, 64); err == nil {
					return v
				}
			}
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", p.cmd.Process.Pid)
	return 0
}

// clockTicks is the unit of /proc/<pid>/stat's times (getconf CLK_TCK).
var clockTicks = func() int64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if v, perr := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil && perr == nil && v > 0 {
		return v
	}
	return 100
}()
