package gateway

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/config"
	"github.com/infura-gateway/infura-gateway/internal/syncbuf"
)

// testGateway is a gateway serving on a loopback port for one test.
type testGateway struct {
	URL      string
	WSURL    string // the /socket2socket endpoint
	AdminURL string // the admin listener: /metrics, /status, /debug/pprof/
	srv      *Server
	log      *syncbuf.Buffer
}

// startGateway loads a Config from args (as the binary would, with no environment),
// starts serving on a free loopback port and shuts down when the test ends.
func startGateway(t testing.TB, args ...string) *testGateway {
	t.Helper()
	return startGatewayEnv(t, nil, args...)
}

func startGatewayEnv(t testing.TB, env map[string]string, args ...string) *testGateway {
	t.Helper()
	return startGatewayBefore(t, env, nil, args...)
}

// newUnservedServer builds a Server from args as the binary would (no environment),
// logging nowhere, for a test that serves it itself.
func newUnservedServer(t testing.TB, args ...string) *Server {
	t.Helper()
	cfg, err := config.Load(append([]string{"-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0"}, args...),
		func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(cfg, Options{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)), Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// startGatewayBefore is startGatewayEnv with before (nil: none) called on the server
// before it serves.
func startGatewayBefore(t testing.TB, env map[string]string, before func(*Server), args ...string) *testGateway {
	t.Helper()
	cfg, err := config.Load(append([]string{"-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0"}, args...),
		func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	logs := &syncbuf.Buffer{}
	srv, err := New(cfg, Options{Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), Version: "test"})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if before != nil {
		before(srv)
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
	addr := ln.Addr().String()
	return &testGateway{URL: "http://" + addr, WSURL: "ws://" + addr + "/socket2socket", AdminURL: "http://" + srv.AdminAddr(),
		srv: srv, log: logs}
}

// waitUpstreams waits until every upstream's shared sockets are connected and its head
// is known.
func (gw *testGateway) waitUpstreams(t testing.TB) {
	t.Helper()
	for _, n := range gw.srv.nets.List() {
		for _, u := range n.Router.Upstreams() {
			if u.Spec().SendOnly {
				continue // a relay has no head the gateway follows
			}
			if m := u.Mux(); m != nil {
				if err := m.WaitReady(30 * time.Second); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, "the head of "+u.Name(), func() bool { return u.Health().HeadKnown() })
		}
	}
}

// metric returns the value of one series of the gateway's metrics (0 when absent).
func (gw *testGateway) metric(t testing.TB, series string) float64 {
	t.Helper()
	var b bytes.Buffer
	gw.srv.reg.WritePrometheus(&b)
	for _, line := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(defaultSeries(line), series+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("no series %s on /metrics", series) // a misspelt name must not read as 0
	return 0
}

var httpClient = &http.Client{
	Timeout:   60 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 512, MaxConnsPerHost: 0},
}

// do sends a request and returns status and body.
func do(t testing.TB, method, url, body string) (int, []byte) {
	t.Helper()
	code, b, err := tryDo(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return code, b
}

// tryDo is do for any goroutine: it reports errors instead of failing the test.
func tryDo(method, url, body string) (int, []byte, error) {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		return 0, nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: reading body: %w", method, url, err)
	}
	return resp.StatusCode, out, nil
}

// waitReady waits until /readyz answers 200: the first upstream probe has landed.
func waitReady(t testing.TB, gw *testGateway) {
	t.Helper()
	waitFor(t, "/readyz 200", func() bool {
		code, _, err := tryDo("GET", gw.URL+"/readyz", "")
		return err == nil && code == 200
	})
}

// rawRequest writes req on a fresh connection and returns the status line.
func rawRequest(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line)
}

// defaultSeries names a series of the default network as it was named before a gateway
// served several: without its network="default" label.
func defaultSeries(line string) string {
	line = strings.Replace(line, `{network="default"}`, "", 1)
	return strings.Replace(line, `{network="default",`, "{", 1)
}

// pacedLoad drives an open-loop load from start: workers goroutines share offered
// requests per second until length; worker w's i-th request is due at
// start + (i*workers + w)/offered, whatever the answers before it took. It returns
// when every worker has sent its last request.
func pacedLoad(start time.Time, workers, offered int, length time.Duration, send func(w int)) {
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				at := time.Duration(i*workers+w) * time.Second / time.Duration(offered)
				if at >= length {
					return
				}
				if d := time.Until(start.Add(at)); d > 0 {
					time.Sleep(d) // pacing an open-loop load, not synchronisation
				}
				send(w)
			}
		}()
	}
	wg.Wait()
}
