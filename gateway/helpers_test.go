package gateway

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// testGateway is a gateway serving on a loopback port for one test.
type testGateway struct {
	URL string
	srv *Server
	log *lockedBuffer
}

// startGateway loads a Config from args (as the binary would, with no environment),
// starts serving on a free loopback port and shuts down when the test ends.
func startGateway(t testing.TB, args ...string) *testGateway {
	t.Helper()
	return startGatewayEnv(t, nil, args...)
}

func startGatewayEnv(t testing.TB, env map[string]string, args ...string) *testGateway {
	t.Helper()
	cfg, err := Load(append([]string{"-listen", "127.0.0.1:0"}, args...), func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	logs := &lockedBuffer{}
	srv, err := New(cfg, Options{Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), Version: "test"})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(done) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	})
	return &testGateway{URL: "http://" + ln.Addr().String(), srv: srv, log: logs}
}

var httpClient = &http.Client{
	Timeout:   60 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 512, MaxConnsPerHost: 0},
}

// do sends a request and returns status and body.
func do(t testing.TB, method, url, body string) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return resp.StatusCode, out
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitReady waits until /readyz answers 200: the first upstream probe has landed.
func waitReady(t testing.TB, gw *testGateway) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, _ := do(t, "GET", gw.URL+"/readyz", "")
		if code == 200 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway not ready after 30s: /readyz %d", code)
		}
		time.Sleep(20 * time.Millisecond) // polling an external condition, bounded
	}
}
