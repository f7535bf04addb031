package limit

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/infura-gateway/infura-gateway/gateway/internal/redistest"
	"github.com/infura-gateway/infura-gateway/gateway/redisconn"
)

// replica is one gateway process's view: its own Redis client and limiter.
type replica struct {
	conn *redisconn.Conn
	lim  *Limiter
	ms   *metrics.Set
}

func newReplica(t testing.TB, srv *redistest.Server, cfg Config) *replica {
	t.Helper()
	ms := metrics.NewSet()
	conn, err := redisconn.New(redisconn.Config{Addr: srv.Addr}, ms)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "t:" + t.Name() + ":"
	}
	lim, err := New(cfg, conn, ms)
	if err != nil {
		t.Fatal(err)
	}
	// The test's own looks at Redis go through a client of their own: not bound by the
	// limiter's 50 ms deadline, which a loaded machine can pass (DoWithin caps a longer
	// one at CallTimeout), and never counted against the limiter's breaker.
	look, err := redisconn.New(redisconn.Config{Addr: srv.Addr, Name: "look", CallTimeout: 5 * time.Second,
		ConnTimeout: 5 * time.Second, FailureThreshold: 1000}, metrics.NewSet())
	if err != nil {
		t.Fatal(err)
	}
	lookers.Store(conn, look)
	r := &replica{conn: conn, lim: lim, ms: ms}
	t.Cleanup(func() { lim.Close(); conn.Close(); lookers.Delete(conn); look.Close() })
	return r
}

// lookers maps each replica's Redis client to the test's own client of that Redis.
var lookers sync.Map

// looker is the test's own client beside c (c itself for a Conn newReplica did not make).
func looker(c *redisconn.Conn) *redisconn.Conn {
	if l, ok := lookers.Load(c); ok {
		return l.(*redisconn.Conn)
	}
	return c
}

func newReplicaB(b *testing.B, srv *redistest.Server) *replica { return newReplica(b, srv, Config{}) }

func newLocalB(b *testing.B) *Limiter { return newLocal(b, Config{}) }

func newLocal(t testing.TB, cfg Config) *Limiter {
	t.Helper()
	l, err := New(cfg, nil, metrics.NewSet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

// waitFor polls cond (an external condition: Redis, a background goroutine, the
// collector) until it holds, failing after timeout. It returns how long it took.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(start)
}

// redisInt runs a command on the test's own client of c's Redis and returns its
// integer answer.
func redisInt(t *testing.T, c *redisconn.Conn, args ...string) int64 {
	t.Helper()
	l := looker(c)
	v, err := l.Do(context.Background(), l.B().Arbitrary(args...).Build()).AsInt64()
	if err != nil {
		t.Fatalf("redis %v: %v", args, err)
	}
	return v
}

// redisIntIs reports whether a command of the test's own answers want; an error is a
// no (for a poll: the connection may be coming back).
func redisIntIs(c *redisconn.Conn, want int64, args ...string) bool {
	l := looker(c)
	v, err := l.Do(context.Background(), l.B().Arbitrary(args...).Build()).AsInt64()
	return err == nil && v == want
}

// counterValue reads a counter of a limiter's metrics set.
func counterValue(ms *metrics.Set, name string) uint64 {
	return ms.GetOrCreateCounter(name).Get()
}

// heapAndGoroutines measures after a collection.
func heapAndGoroutines() (heap uint64, goroutines int) {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc, runtime.NumGoroutine()
}

// fakeClock is a settable wall clock for local daily quotas.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time      { return time.Unix(0, c.ns.Load()).UTC() }
func (c *fakeClock) set(t time.Time)     { c.ns.Store(t.UnixNano()) }
func (c *fakeClock) add(d time.Duration) { c.ns.Add(int64(d)) }
