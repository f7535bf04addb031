package upstream

import (
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

// refusingProvider is a websocket provider that lets nobody in: it refuses the upgrade
// with status (and Retry-After retryAfter, if set), or, with status 0, accepts it and
// closes the socket at once with closeCode and reason. dials hears the time of each
// attempt.
func refusingProvider(t *testing.T, status int, retryAfter string, closeCode int, reason string) (string, chan time.Time) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dials := make(chan time.Time, 4096)
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case dials <- time.Now():
		default:
		}
		if status != 0 {
			if retryAfter != "" {
				w.Header().Set("Retry-After", retryAfter)
			}
			w.WriteHeader(status)
			return
		}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(closeCode, reason))
		_ = c.Close()
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "ws://" + ln.Addr().String() + "/v3/SECRETKEY", dials
}

// gapAfter waits for n dials and returns the time between the last two. Load only
// lengthens the gaps (each is a sleep and a dial), so a lower bound on them holds on a
// busy machine.
func gapAfter(t *testing.T, dials chan time.Time, n int) time.Duration {
	t.Helper()
	var prev, last time.Time
	for i := 0; i < n; i++ {
		prev, last = last, within(t, dials, "a dial")
	}
	return last.Sub(prev)
}

// A provider that accepts the upgrade and closes the socket at once (1013 try again
// later, 1011, 4429 over its rate) is dialled again with the growing backoff, not at
// once: before, each such socket counted as one that had served, the backoff started
// over at BackoffMin, and the gateway dialled it hundreds of times a second.
func TestMuxBacksOffFromASocketClosedAtOnce(t *testing.T) {
	for _, c := range []struct {
		code   int
		reason string
	}{{1013, "try again later"}, {1011, "internal error"}, {4429, "rate limit exceeded"}} {
		t.Run(c.reason, func(t *testing.T) {
			url, dials := refusingProvider(t, 0, "", c.code, c.reason)
			cfg := testMuxConfig(url)
			cfg.Conns = 1
			cfg.BackoffMin, cfg.BackoffMax = time.Millisecond, 400*time.Millisecond
			m, err := NewMux(cfg)
			if err != nil {
				t.Fatal(err)
			}
			m.Start()
			t.Cleanup(m.Close)
			// By the 12th dial the backoff is at its cap: the wait is at least half of it.
			if gap := gapAfter(t, dials, 12); gap < cfg.BackoffMax/2 {
				t.Fatalf("dialled again %v after the socket closed at once, want >= %v", gap, cfg.BackoffMax/2)
			}
		})
	}
}

// An upgrade refused with 429 and Retry-After is dialled again no sooner than the
// provider asked (also past BackoffMax). The router does not hear it: a provider may
// limit websocket connections alone, and closing the upstream's gate would refuse its
// HTTP calls too. Before, Retry-After was ignored: dialled again 3 ms after.
func TestMuxHonoursARefusedUpgrade(t *testing.T) {
	url, dials := refusingProvider(t, http.StatusTooManyRequests, "1", 0, "")
	cfg := testMuxConfig(url)
	cfg.Conns = 1
	cfg.BackoffMin, cfg.BackoffMax = time.Millisecond, 20*time.Millisecond
	var heard atomic.Int64
	cfg.OnClosed = func(AnswerClass, time.Duration) { heard.Add(1) }
	m, err := NewMux(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m.Start()
	t.Cleanup(m.Close)
	if gap := gapAfter(t, dials, 3); gap < time.Second {
		t.Fatalf("dialled again %v after a 429 with Retry-After: 1, want >= 1s", gap)
	}
	if n := heard.Load(); n != 0 {
		t.Fatalf("OnClosed heard %d refused upgrades, want none", n)
	}
}
