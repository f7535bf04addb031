package gateway

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/infura-gateway/infura-gateway/gateway/config"
	"github.com/infura-gateway/infura-gateway/gateway/socket"
)

// /metrics and the profiler are on the admin listener only, never on the public port.
func TestAdminListener(t *testing.T) {
	fake := startFakeUpstream(t)
	gw := startGateway(t, fake.args()...)
	gw.waitUpstreams(t)
	if code, body := do(t, "GET", gw.AdminURL+"/metrics", ""); code != 200 || !strings.Contains(string(body), "gateway_requests_total") {
		t.Fatalf("admin /metrics: %d", code)
	}
	for _, path := range []string{"/metrics", "/debug/pprof/"} {
		if code, _ := do(t, "GET", gw.URL+path, ""); code != 404 {
			t.Errorf("public %s: %d, want 404", path, code)
		}
	}
	if code, _ := do(t, "GET", gw.AdminURL+"/debug/pprof/", ""); code != 404 {
		t.Errorf("pprof without -pprof: %d", code)
	}
	for _, path := range []string{"/status", "/health", "/readyz"} {
		if code, _ := do(t, "GET", gw.AdminURL+path, ""); code != 200 {
			t.Errorf("admin %s: %d", path, code)
		}
	}

	prof := startGateway(t, fake.args("-pprof")...)
	if code, body := do(t, "GET", prof.AdminURL+"/debug/pprof/", ""); code != 200 || !strings.Contains(string(body), "goroutine") {
		t.Fatalf("admin pprof index: %d", code)
	}
	if code, _ := do(t, "GET", prof.AdminURL+"/debug/pprof/cmdline", ""); code != 404 {
		t.Fatalf("admin pprof cmdline (the flags): %d, want 404", code)
	}
	if code, _ := do(t, "GET", prof.URL+"/debug/pprof/", ""); code != 404 {
		t.Fatalf("public pprof with -pprof: %d", code)
	}
	if _, err := config.Load([]string{"-admin-listen", "", "-pprof"}, func(string) string { return "" }, io.Discard); err == nil {
		t.Fatal("-pprof without an admin listener accepted")
	}
	for _, args := range [][]string{{"-admin-listen", ":8000"}, {"-listen", ":9090"}, {"-listen", "127.0.0.1:7000", "-admin-listen", "0.0.0.0:7000"}} {
		if _, err := config.Load(args, func(string) string { return "" }, io.Discard); err == nil {
			t.Fatalf("%v: the admin listener on the public port accepted", args)
		}
	}
}

// Readiness says whether this pod serves, not whether the upstream does: every pod
// shares the upstream, so an outage must not take them all out of rotation.
func TestReadinessIgnoresTheUpstream(t *testing.T) {
	fake := startFakeUpstream(t)
	gw := startGateway(t, append(fake.args(), fastHealth...)...)
	gw.waitUpstreams(t)
	fake.setDown(true)
	waitFor(t, "the upstream banned", func() bool { return gw.state(t, "default").State == "banned" })
	if code, body := do(t, "GET", gw.URL+"/readyz", ""); code != 200 {
		t.Fatalf("/readyz with the upstream down: %d %s", code, body)
	}
	if gw.metric(t, "gateway_ready") != 1 {
		t.Fatal("gateway_ready 0 with the upstream down")
	}
	// The upstream's state is where it belongs: metrics and /status.
	if gw.metric(t, `gateway_upstream_state{upstream="default"}`) != 2 {
		t.Fatal("gateway_upstream_state does not show the ban")
	}
}

// On shutdown, websocket clients are told to reconnect a few at a time over the drain
// window, not all at once; new clients are refused meanwhile.
func TestDrainSpreadsWebsocketCloses(t *testing.T) {
	fake := startFakeUpstream(t)
	gw := startGateway(t, fake.args("-drain-delay", "1500ms")...)
	gw.waitUpstreams(t)
	const n = 12
	var conns []*websocket.Conn
	for range n {
		c, _, err := websocket.DefaultDialer.Dial(gw.WSURL, nil)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	waitFor(t, "every client served", func() bool { return gw.metric(t, "gateway_ws_client_connections") == n })
	closes := make([]time.Time, n)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.SetReadDeadline(time.Now().Add(wsWait))
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					var ce *websocket.CloseError
					if ok := asCloseError(err, &ce); ok && ce.Code == websocket.CloseGoingAway && ce.Text == socket.DrainReason {
						closes[i] = time.Now()
					}
					_ = c.Close()
					return
				}
			}
		}()
	}
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- gw.srv.Shutdown(context.Background()) }()
	waitFor(t, "draining", func() bool { return gw.srv.probe.Draining() })
	_, resp, err := websocket.DefaultDialer.Dial(gw.WSURL, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a new client during the drain: %v %v", err, resp)
	}
	wg.Wait()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	first, last := closes[0], closes[0]
	for i, at := range closes {
		if at.IsZero() {
			t.Fatalf("client %d not closed with 1001 %q", i, socket.DrainReason)
		}
		if at.Before(first) {
			first = at
		}
		if at.After(last) {
			last = at
		}
	}
	t.Logf("%d clients closed from %v to %v after the drain began", n, first.Sub(start), last.Sub(start))
	if spread := last.Sub(first); spread < 700*time.Millisecond {
		t.Fatalf("closes spread over %v of a 1.5s window: not spread", spread)
	}
}

func asCloseError(err error, target **websocket.CloseError) bool {
	ce, ok := err.(*websocket.CloseError)
	if ok {
		*target = ce
	}
	return ok
}
