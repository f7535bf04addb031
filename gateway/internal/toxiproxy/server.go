package toxiproxy

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// StartTimeout bounds how long a server may take to answer its API; generous for a
// loaded 2-core CI machine (it answers in ~50 ms when idle).
const StartTimeout = 60 * time.Second

// apiTimeout bounds one call of the HTTP API. Adding or removing a toxic waits for
// every connection of the proxy to take it up, which is quick but not instant.
const apiTimeout = 30 * time.Second

// Server is a running toxiproxy server, killed when the test that started it ends.
type Server struct {
	// URL is the HTTP API's base URL, e.g. http://127.0.0.1:41234.
	URL string

	client *http.Client
	cmd    *exec.Cmd
	done   chan struct{}
	log    *tailBuffer
}

// Start runs a toxiproxy server (the pinned Version, found by Find) with its API on a
// free loopback port and waits until it answers. It is killed when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := Find()
	if err != nil {
		t.Fatal(err)
	}
	if v, err := BinaryVersion(bin); err != nil || v != Version {
		t.Fatalf("%s is toxiproxy %q (%v), want %s: run `./task toxiproxy`", bin, v, err, Version)
	}
	// A port free a moment ago can be taken before the server binds it, and the server
	// then keeps running without its API (it only logs the error). A sentinel proxy
	// created from a config file identifies our server: another server on the port
	// would not have it. Three attempts make a double collision negligible.
	var errs []error
	for attempt := 0; attempt < 3; attempt++ {
		s, err := start(t, bin)
		if err == nil {
			return s
		}
		errs = append(errs, err)
	}
	t.Fatalf("toxiproxy did not start: %v", errors.Join(errs...))
	return nil
}

func start(t testing.TB, bin string) (*Server, error) {
	token := make([]byte, 8)
	_, _ = rand.Read(token)
	sentinel := "sentinel-" + hex.EncodeToString(token)
	config := filepath.Join(t.TempDir(), "toxiproxy.json")
	cfg, _ := json.Marshal([]map[string]any{{"name": sentinel, "listen": "127.0.0.1:0", "upstream": "127.0.0.1:9", "enabled": false}})
	if err := os.WriteFile(config, cfg, 0o600); err != nil {
		return nil, err
	}
	port := freePort(t)
	s := &Server{
		URL:    "http://127.0.0.1:" + strconv.Itoa(port),
		client: &http.Client{Timeout: apiTimeout},
		done:   make(chan struct{}),
		log:    &tailBuffer{max: 1 << 20},
	}
	s.cmd = exec.Command(bin, "-host", "127.0.0.1", "-port", strconv.Itoa(port), "-config", config)
	// Warnings and errors only: at info it logs every accepted connection.
	s.cmd.Env = append(os.Environ(), "LOG_LEVEL=warn")
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(s.kill)

	deadline := time.Now().Add(StartTimeout)
	for {
		status, _, err := s.do(http.MethodGet, "/proxies/"+sentinel, nil)
		if err == nil && status == http.StatusOK {
			break
		}
		if err == nil {
			s.kill()
			return nil, fmt.Errorf("another server holds port %d (GET sentinel: HTTP %d)", port, status)
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("toxiproxy exited during start:\n%s", s.log)
		default:
		}
		if strings.Contains(s.log.String(), "address already in use") {
			s.kill()
			return nil, fmt.Errorf("port %d taken:\n%s", port, s.log)
		}
		if time.Now().After(deadline) {
			s.kill()
			return nil, fmt.Errorf("toxiproxy did not answer within %v:\n%s", StartTimeout, s.log)
		}
		time.Sleep(20 * time.Millisecond) // readiness poll of an external process
	}
	if status, body, err := s.do(http.MethodDelete, "/proxies/"+sentinel, nil); err != nil || status != http.StatusNoContent {
		s.kill()
		return nil, fmt.Errorf("delete sentinel: HTTP %d %s %v", status, body, err)
	}
	return s, nil
}

func (s *Server) kill() {
	if s.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
}

// Log returns the end of what the server printed (warnings and errors).
func (s *Server) Log() string { return s.log.String() }

// do calls the API and returns the status and body; err is a transport error only.
func (s *Server) do(method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.URL+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, out, err
}

// call is do that wants one of the statuses.
func (s *Server) call(method, path string, body any, want ...int) ([]byte, error) {
	status, out, err := s.do(method, path, body)
	if err != nil {
		return nil, fmt.Errorf("toxiproxy %s %s: %w", method, path, err)
	}
	for _, w := range want {
		if status == w {
			return out, nil
		}
	}
	return out, &APIError{Method: method, Path: path, Status: status, Body: strings.TrimSpace(string(out))}
}

// APIError is an answer of the toxiproxy API with an unexpected status.
type APIError struct {
	Method, Path string
	Status       int
	Body         string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("toxiproxy %s %s: HTTP %d: %s", e.Method, e.Path, e.Status, e.Body)
}

// NewProxy creates a proxy named name (unique on the server) that listens on a free
// loopback port (Proxy.Addr) and forwards every connection to upstream (host:port, or
// a URL whose host:port is taken). It is enabled, without toxics.
func (s *Server) NewProxy(t testing.TB, name, upstream string) *Proxy {
	t.Helper()
	upstream = HostPort(upstream)
	out, err := s.call(http.MethodPost, "/proxies", map[string]any{
		"name": name, "listen": "127.0.0.1:0", "upstream": upstream, "enabled": true,
	}, http.StatusCreated)
	if err != nil {
		t.Fatal(err)
	}
	var p struct{ Listen string }
	if err := json.Unmarshal(out, &p); err != nil || p.Listen == "" {
		t.Fatalf("toxiproxy create %s: %s (%v)", name, out, err)
	}
	return &Proxy{Name: name, Addr: p.Listen, Upstream: upstream, s: s, t: t}
}

// Reset enables every proxy of the server and removes all their toxics.
func (s *Server) Reset(t testing.TB) {
	t.Helper()
	if _, err := s.call(http.MethodPost, "/reset", nil, http.StatusNoContent); err != nil {
		t.Fatal(err)
	}
}

// HostPort returns the host:port of a URL (http://127.0.0.1:8545 → 127.0.0.1:8545),
// or s itself when it is not a URL with a host.
func HostPort(s string) string {
	if u, err := url.Parse(s); err == nil && u.Host != "" {
		return u.Host
	}
	return s
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("cannot find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// tailBuffer keeps the last max bytes written to it (at least; it trims in halves).
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > b.max {
		b.buf = append(b.buf[:0], b.buf[len(b.buf)-b.max/2:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
