package redisconn

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/infura-gateway/infura-gateway/gateway/internal/redistest"
)

// TestReadOnlyAfterFailoverRedials: after a failover (the primary A becomes a replica of
// B, B is promoted, the endpoint now leads to B) the client's open connection to A gets
// READONLY on every write. The Conn must redial to the endpoint and write to B again.
func TestReadOnlyAfterFailoverRedials(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		write func(c *Conn) error
	}{
		{"Do", func(c *Conn) error { return c.Do(ctx, c.B().Incr().Key("n").Build()).Error() }},
		{"DoMulti", func(c *Conn) error {
			for _, r := range c.DoMulti(ctx, c.B().Incr().Key("n").Build(), c.B().Get().Key("n").Build()) {
				if err := r.Error(); err != nil {
					return err
				}
			}
			return nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// No 5 s wait before a full sync (Redis 7 default) when a replica links.
			a, b := redistest.Start(t, "--repl-diskless-sync-delay", "0"), redistest.Start(t, "--repl-diskless-sync-delay", "0")
			b.ReplicaOf(t, a)
			p := redistest.StartProxy(t, a.Addr)
			ms := metrics.NewSet()
			c, err := New(Config{Addr: p.Addr}, ms)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// Its 50 ms deadline can pass on a loaded machine (CI did): asked again.
			waitFor(t, 10*time.Second, "a write before the failover", func() bool { return tc.write(c) == nil })
			// A steady load of writes from a few goroutines, as the limiter's leases are.
			var stop atomic.Bool
			var wg sync.WaitGroup
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for !stop.Load() {
						_ = tc.write(c)
						time.Sleep(time.Millisecond) // pacing of the load
					}
				}()
			}
			defer func() { stop.Store(true); wg.Wait() }()

			b.Promote(t)
			a.ReplicaOf(t, b)
			if _, err := a.Do("SET", "probe", "x"); err == nil {
				t.Fatal("A still takes writes after becoming a replica")
			}
			p.SetTarget(b.Addr) // the DNS flip; the Conn's open connection stays on A
			if _, err := b.Do("DEL", "n"); err != nil {
				t.Fatal(err)
			}
			el := waitFor(t, 10*time.Second, "writes reach B again", func() bool {
				v, err := b.Do("GET", "n")
				n, _ := strconv.Atoi(v)
				return err == nil && n > 0 && c.Up()
			})
			t.Logf("writes reached the new primary %v after the endpoint flip", el)
			if n := ms.GetOrCreateCounter(`gateway_redis_readonly_reconnects_total{client="redis"}`).Get(); n < 1 {
				t.Errorf("gateway_redis_readonly_reconnects_total = %d, want >= 1", n)
			}
			waitFor(t, 10*time.Second, "a write after recovery", func() bool { return tc.write(c) == nil })
		})
	}
}
