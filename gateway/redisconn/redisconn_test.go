package redisconn

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/infura-gateway/infura-gateway/gateway/internal/redistest"
	"github.com/infura-gateway/infura-gateway/internal/syncbuf"
)

// waitFor polls cond until it holds or timeout passes (an external condition: Redis).
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// The breaker opens when Redis goes and closes when it is back, each transition said
// in the log (before, only the metrics said it: an operator reading the logs saw
// nothing of an outage that put every limit on its fallback).
func TestUpDownAndBack(t *testing.T) {
	srv := redistest.Start(t)
	var logs syncbuf.Buffer
	c, err := New(Config{Addr: srv.Addr, Password: "", Log: slog.New(slog.NewJSONHandler(&logs, nil))}, metrics.NewSet())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !c.Up() {
		t.Fatal("conn is down with Redis running")
	}
	ctx := context.Background()
	if err := c.Do(ctx, c.B().Set().Key("k").Value("v").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	watch := c.Watch()
	srv.Kill()
	// Calls fail (connection refused) until the breaker opens; each within the deadline.
	waitFor(t, 5*time.Second, "breaker opens", func() bool {
		start := time.Now()
		_ = c.Do(ctx, c.B().Get().Key("k").Build()).Error()
		if d := time.Since(start); d > 200*time.Millisecond {
			t.Fatalf("a call took %v while Redis is down", d)
		}
		return !c.Up()
	})
	select {
	case <-watch:
	default:
		t.Fatal("Watch channel not closed on the down transition")
	}
	start := time.Now()
	if err := c.Do(ctx, c.B().Get().Key("k").Build()).Error(); !errors.Is(err, ErrDown) {
		t.Fatalf("call while down: %v, want ErrDown", err)
	}
	if d := time.Since(start); d > 5*time.Millisecond {
		t.Fatalf("a call while the breaker is open took %v", d)
	}
	srv.Restart(t)
	d := waitFor(t, 5*time.Second, "breaker closes after Redis returns", c.Up)
	t.Logf("up again %v after restart", d)
	if err := c.Do(ctx, c.B().Set().Key("k").Value("v").Build()).Error(); err != nil {
		t.Fatalf("call after recovery: %v", err)
	}
	// In order (a loaded machine may flap the breaker once more: not counted).
	out := logs.String()
	down := strings.Index(out, `"msg":"redis unreachable: circuit breaker open","client":"redis"`)
	if back := strings.Index(out, `"msg":"redis reachable again: circuit breaker closed","client":"redis"`); down < 0 || back < down {
		t.Fatalf("want a line for each transition, the outage first, got:\n%s", out)
	}
}

func TestStartsWhileRedisIsDown(t *testing.T) {
	srv := redistest.Start(t)
	srv.Kill()
	var logs syncbuf.Buffer
	c, err := New(Config{Addr: srv.Addr, Log: slog.New(slog.NewJSONHandler(&logs, nil))}, metrics.NewSet())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Up() {
		t.Fatal("conn is up with Redis down")
	}
	if !strings.Contains(logs.String(), `"msg":"redis unreachable at start: circuit breaker open"`) {
		t.Fatalf("no line says Redis is unreachable at start:\n%s", logs.String())
	}
	srv.Restart(t)
	waitFor(t, 5*time.Second, "conn comes up", c.Up)
	waitFor(t, 5*time.Second, "the line saying Redis is back", func() bool {
		return strings.Contains(logs.String(), `"msg":"redis reachable again: circuit breaker closed"`)
	})
	if err := c.Do(context.Background(), c.B().Ping().Build()).Error(); err != nil {
		t.Fatal(err)
	}
}

func TestFrozenRedisOpensBreakerWithinDeadlines(t *testing.T) {
	srv := redistest.Start(t)
	// ConnTimeout 5 s: a call that waited for the connection's timeout rather than its
	// own 50 ms deadline takes 5 s, far past the 2 s bound below; 150 ms (with the
	// default 500 ms) was crossed by a loaded CI machine's scheduling alone (1.2 s).
	c, err := New(Config{Addr: srv.Addr, ConnTimeout: 5 * time.Second}, metrics.NewSet())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	srv.Pause()
	ctx := context.Background()
	waitFor(t, 5*time.Second, "breaker opens on a frozen Redis", func() bool {
		start := time.Now()
		_ = c.Do(ctx, c.B().Get().Key("k").Build())
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("a call took %v against a frozen Redis (deadline 50ms)", d)
		}
		return !c.Up()
	})
	srv.Resume()
	waitFor(t, 5*time.Second, "conn comes back after resume", c.Up)
}

func TestScriptReloadAfterRestart(t *testing.T) {
	srv := redistest.Start(t)
	c, err := New(Config{Addr: srv.Addr}, metrics.NewSet())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := NewScript(`return tonumber(ARGV[1]) + 1`)
	for round := 0; round < 2; round++ {
		rs := c.EvalMulti(context.Background(), s, []Exec{{Args: []string{"1"}}, {Args: []string{"41"}}})
		for i, want := range []int64{2, 42} {
			got, err := rs[i].AsInt64()
			if err != nil || got != want {
				t.Fatalf("round %d exec %d: %d, %v; want %d", round, i, got, err, want)
			}
		}
		if round == 0 {
			srv.Restart(t)
			waitFor(t, 5*time.Second, "up after restart", func() bool {
				return c.Do(context.Background(), c.B().Ping().Build()).Error() == nil && c.Up()
			})
		}
	}
}

func TestBadConfig(t *testing.T) {
	if _, err := New(Config{Addr: "nohostport"}, metrics.NewSet()); err == nil {
		t.Fatal("want an error for an address without a port")
	}
	if _, err := New(Config{Addr: "127.0.0.1:1"}, nil); err == nil {
		t.Fatal("want an error without a metrics set")
	}
}

// TestPasswordNeverInErrors: with AUTH required, the right password works (client and
// probe), and no error or metric ever carries the password, right or wrong.
func TestPasswordNeverInErrors(t *testing.T) {
	const secret = "s3cr3t-Pa55word"
	srv := redistest.Start(t, "--requirepass", secret)
	ms := metrics.NewSet()
	good, err := New(Config{Addr: srv.Addr, Password: secret}, ms)
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	if !good.Up() {
		t.Fatal("down with the right password")
	}
	if err := probe(good.cfg); err != nil {
		t.Fatalf("probe with the right password: %v", err)
	}
	const wrong = "wr0ng-Pa55word"
	if _, err := New(Config{Addr: srv.Addr, Password: secret}, ms); err == nil {
		t.Fatal("two Conns of one name in one metrics set")
	}
	var logs syncbuf.Buffer
	bad, err := New(Config{Addr: srv.Addr, Password: wrong, Name: "bad", Log: slog.New(slog.NewJSONHandler(&logs, nil))}, ms)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	var errs []string
	if err := probe(bad.cfg); err != nil {
		errs = append(errs, err.Error())
	} else {
		t.Fatal("probe with a wrong password succeeded")
	}
	if err := bad.Do(context.Background(), bad.B().Ping().Build()).Error(); err != nil {
		errs = append(errs, err.Error())
	}
	if err := bad.Ping(context.Background()); err != nil {
		errs = append(errs, err.Error())
	}
	var buf bytes.Buffer
	ms.WritePrometheus(&buf)
	errs = append(errs, buf.String(), logs.String())
	for _, e := range errs {
		if strings.Contains(e, secret) || strings.Contains(e, wrong) {
			t.Fatalf("a password leaked: %s", e)
		}
	}
	t.Logf("errors: %q; log: %s", errs[:len(errs)-2], logs.String())
}

// With the credentials wrong, missing or not wanted, the breaker's error says so (and still is
// ErrDown), so the operator is told what to fix rather than only that Redis is down.
func TestDownSaysWhyCredentials(t *testing.T) {
	withPassword, without := redistest.Start(t, "--requirepass", "s3cr3t-Pa55word"), redistest.Start(t)
	for _, c := range []struct {
		name, password string
		srv            *redistest.Server
		want           error
	}{
		{"wrong", "wr0ng-Pa55word", withPassword, ErrAuth},
		{"missing", "", withPassword, ErrNoAuth},
		// Redis serves a client whose password it does not ask for: so must the probe
		// that closes the breaker, or one outage would keep it open for good.
		{"given, none set", "unused-Pa55word", without, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn, err := New(Config{Addr: c.srv.Addr, Password: c.password}, metrics.NewSet())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if c.want == nil {
				if err := probe(conn.cfg); err != nil {
					t.Fatalf("probe: %v, want Redis's answer taken", err)
				}
				if err := conn.Do(context.Background(), conn.B().Get().Key("k").Build()).NonRedisError(); err != nil {
					t.Fatalf("a call: %v", err)
				}
				return
			}
			if err := probe(conn.cfg); !errors.Is(err, c.want) {
				t.Fatalf("probe: %v, want %v", err, c.want)
			}
			var last error
			deadline := time.Now().Add(10 * time.Second)
			for {
				last = conn.Do(context.Background(), conn.B().Get().Key("k").Build()).Error()
				if errors.Is(last, ErrDown) && errors.Is(last, c.want) || time.Now().After(deadline) {
					break
				}
				time.Sleep(10 * time.Millisecond) // the probe loop runs on its own goroutine
			}
			if !errors.Is(last, ErrDown) || !errors.Is(last, c.want) || strings.Contains(last.Error(), "Pa55word") {
				t.Fatalf("a call with the credentials %s: %v, want ErrDown saying %q", c.name, last, c.want)
			}
			t.Logf("%v", last)
		})
	}
}

// One failure leaves the Conn up but not clean: calls a request waits on stay away from
// Redis (the client is redialling, and a request would wait for the dial), until the
// probe, or any answer, makes it clean again. A shorter DoWithin deadline counts against
// Redis like CallTimeout does.
func TestCleanAfterAFailure(t *testing.T) {
	srv := redistest.Start(t)
	// CallTimeout and ConnTimeout 5 s against the bound of 2 s on DoWithin(20ms) below:
	// a DoWithin that waited for either fails (with the defaults, 50 and 500 ms, the
	// bound of 150 ms could not tell CallTimeout), and a loaded machine's scheduling
	// delay does not.
	c, err := New(Config{Addr: srv.Addr, FailureThreshold: 100, CallTimeout: 5 * time.Second, ConnTimeout: 5 * time.Second},
		metrics.NewSet())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if err := c.Ping(ctx); err != nil || !c.Clean() {
		t.Fatalf("a fresh Conn: ping %v, clean %v", err, c.Clean())
	}
	srv.Pause()
	start := time.Now()
	if err := c.DoWithin(ctx, 20*time.Millisecond, c.B().Get().Key("k").Build()).Error(); err == nil {
		t.Fatal("a frozen Redis answered")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("DoWithin 20ms took %v (CallTimeout 5s)", d)
	}
	if c.Clean() || !c.Up() {
		t.Fatalf("after one failure: clean %v, up %v; want up and not clean", c.Clean(), c.Up())
	}
	srv.Resume()
	waitFor(t, 5*time.Second, "the probe makes the Conn clean again", c.Clean)
}

// TestEvalMultiWithinOutlastsCallTimeout: a background caller's deadline may be longer
// than CallTimeout. With Redis frozen, EvalMulti fails after CallTimeout (50 ms);
// EvalMultiWithin with 5 s gets its answer when Redis resumes 200 ms later.
func TestEvalMultiWithinOutlastsCallTimeout(t *testing.T) {
	srv := redistest.Start(t)
	t.Cleanup(srv.Resume)
	c, err := New(Config{Addr: srv.Addr, FailureThreshold: 100}, metrics.NewSet())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := NewScript(`return tonumber(ARGV[1]) + 1`)
	ctx := context.Background()
	one := []Exec{{Args: []string{"1"}}}
	if _, err := c.EvalMulti(ctx, s, one)[0].AsInt64(); err != nil {
		t.Fatalf("with Redis up: %v", err)
	}

	srv.Pause()
	if _, err := c.EvalMulti(ctx, s, one)[0].AsInt64(); err == nil {
		t.Fatal("EvalMulti answered by a frozen Redis")
	}
	srv.Resume()
	waitFor(t, 5*time.Second, "Redis answers after resume", func() bool {
		return c.Do(ctx, c.B().Ping().Build()).Error() == nil
	})

	srv.Pause()
	started := make(chan struct{})
	type answer struct {
		v   int64
		err error
	}
	got := make(chan answer, 1)
	go func() {
		close(started)
		v, err := c.EvalMultiWithin(ctx, 5*time.Second, s, one)[0].AsInt64()
		got <- answer{v, err}
	}()
	<-started
	time.Sleep(200 * time.Millisecond) // the freeze's length, not synchronisation
	srv.Resume()
	if a := <-got; a.err != nil || a.v != 2 {
		t.Fatalf("EvalMultiWithin 5s across a 200 ms freeze: %d, %v; want 2", a.v, a.err)
	}
}
