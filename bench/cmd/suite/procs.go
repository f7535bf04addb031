package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// server is a child process under measurement.
type server struct {
	name string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
}

func (s *server) pid() int { return s.cmd.Process.Pid }

// alive reports whether the process has not exited.
func (s *server) alive() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM, then SIGKILL after a grace period, and waits.
func (s *server) stop() {
	if s == nil || !s.alive() {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	_ = s.log.Close()
}

// start runs bin with args, its output going to logPath. Every child gets
// Pdeathsig so that nothing outlives an interrupted suite.
func start(name, logPath, bin string, args ...string) (*server, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("cannot start %s: %w", name, err)
	}
	s := &server{name: name, cmd: cmd, log: f, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.done) }()
	return s, nil
}

// startFixedNode starts the fixed node on two free loopback ports and
// returns it with its HTTP and websocket addresses, read from its
// "listening on" lines.
func startFixedNode(bin, dir string, headInterval time.Duration) (*server, string, string, error) {
	logPath := filepath.Join(dir, "fixednode.log")
	s, err := start("fixednode", logPath, bin, "-http", "127.0.0.1:0", "-ws", "127.0.0.1:0",
		"-head-interval", headInterval.String())
	if err != nil {
		return nil, "", "", err
	}
	deadline := time.Now().Add(10 * time.Second)
	var httpAddr, wsAddr string
	for time.Now().Before(deadline) && (httpAddr == "" || wsAddr == "") {
		if !s.alive() {
			return nil, "", "", fmt.Errorf("fixednode exited; see %s", logPath)
		}
		b, _ := os.ReadFile(logPath)
		sc := bufio.NewScanner(strings.NewReader(string(b)))
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "fixednode http listening on "); ok {
				httpAddr = rest
			}
			if rest, ok := strings.CutPrefix(sc.Text(), "fixednode ws listening on "); ok {
				wsAddr = rest
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if httpAddr == "" || wsAddr == "" {
		s.stop()
		return nil, "", "", fmt.Errorf("fixednode did not report its ports; see %s", logPath)
	}
	return s, httpAddr, wsAddr, nil
}

// freePort returns a loopback port that was free a moment ago. The gateway
// takes its address as a flag, so the port is picked here; a collision is
// possible but then the gateway fails to start and the suite says so.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr, nil
}

// startGateway starts the gateway against the fixed node and waits until
// /readyz answers 200.
func startGateway(ctx context.Context, bin, dir, logName, nodeHTTP, nodeWS string, extra ...string) (*server, string, error) {
	addr, err := freePort()
	if err != nil {
		return nil, "", err
	}
	args := append([]string{
		"-listen", addr,
		"-upstream-http", "http://" + nodeHTTP,
		"-upstream-ws", "ws://" + nodeWS,
		"-log-level", "warn",
	}, extra...)
	// Gateways with an admin listener serve /metrics there: give it a free port (the
	// default, :9090, may be taken) unless the caller chose one (-pprof does).
	if gatewayFlags(bin)["admin-listen"] && !slices.Contains(args, "-admin-listen") {
		admin, err := freePort()
		if err != nil {
			return nil, "", err
		}
		args = append(args, "-admin-listen", admin)
	}
	if i := slices.Index(args, "-admin-listen"); i >= 0 {
		adminAddrs.Store(addr, args[i+1])
	}
	logPath := filepath.Join(dir, logName)
	s, err := start("gateway", logPath, bin, args...)
	if err != nil {
		return nil, "", err
	}
	if err := awaitOK(ctx, s, "gateway", "http://"+addr+"/readyz", logPath); err != nil {
		return nil, "", err
	}
	return s, addr, nil
}

// awaitOK polls url until it answers 200, for at most 30 s; s is stopped when it never does.
func awaitOK(ctx context.Context, s *server, name, url, logPath string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		if !s.alive() {
			return fmt.Errorf("%s exited during start-up; see %s", name, logPath)
		}
		code, _, _ := fasthttp.GetTimeout(nil, url, time.Second)
		if code == fasthttp.StatusOK {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			s.stop()
			return fmt.Errorf("%s not ready after 30s (last status %d from %s); see %s", name, code, url, logPath)
		}
		time.Sleep(100 * time.Millisecond) // readiness poll of an external process
	}
}

// startRelay starts the reference relay (bench/cmd/minrelay) against the fixed node and
// waits until it answers.
// pprofAddr, when not empty, turns on the relay's profiler there (-pprof), so gateway and
// relay profiles of one run can be compared.
func startRelay(ctx context.Context, bin, dir, nodeHTTP, nodeWS, pprofAddr string) (*server, string, error) {
	addr, err := freePort()
	if err != nil {
		return nil, "", err
	}
	logPath := filepath.Join(dir, "minrelay.log")
	args := []string{"-listen", addr, "-upstream-http", "http://" + nodeHTTP, "-upstream-ws", "ws://" + nodeWS}
	if pprofAddr != "" {
		args = append(args, "-pprof", pprofAddr)
	}
	s, err := start("minrelay", logPath, bin, args...)
	if err != nil {
		return nil, "", err
	}
	if err := awaitOK(ctx, s, "minrelay", "http://"+addr+"/health", logPath); err != nil {
		return nil, "", err
	}
	return s, addr, nil
}

// adminAddrs maps a gateway's address to its admin listener's, where /metrics is.
var adminAddrs sync.Map

// metricsAddr returns where the gateway at addr serves /metrics.
func metricsAddr(addr string) string {
	if a, ok := adminAddrs.Load(addr); ok {
		return a.(string)
	}
	return addr
}

// gatewayFlags returns the flag names the gateway binary documents in its
// -h output, so the suite can mark rows of unsupported modes n/a.
func gatewayFlags(bin string) map[string]bool {
	out, _ := exec.Command(bin, "-h").CombinedOutput()
	flags := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && strings.HasPrefix(f[0], "-") {
			flags[strings.TrimPrefix(f[0], "-")] = true
		}
	}
	return flags
}

// build runs go build in dir, streaming the compiler's output.
func build(dir, out, pkg string, stderr io.Writer) error {
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s in %s: %w", pkg, dir, err)
	}
	return nil
}

// findRepo walks up from the working directory to the gateway module root.
func findRepo() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/infura-gateway/infura-gateway\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("cannot find the infura-gateway module root above the working directory; pass -repo")
		}
		dir = parent
	}
}
