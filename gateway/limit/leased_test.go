package limit

import (
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/internal/redistest"
)

// TakeLeased spends only what Redis leased: while the leases fail it refuses once the
// allowance is spent, where Take falls back to the full rate per process.
func TestTakeLeasedNeverFallsBack(t *testing.T) {
	srv := redistest.Start(t)
	r := newReplica(t, srv, Config{})
	waitFor(t, 30*time.Second, "Redis usable", r.conn.Up)
	srv.Pause()
	t.Cleanup(srv.Resume)
	for _, tc := range []struct {
		name  string
		take  func(b *Bucket) Decision
		check func(passed int) bool
		want  string
	}{
		{"TakeLeased: the cold-start credit only", func(b *Bucket) Decision { return b.TakeLeased(1) },
			func(n int) bool { return n <= 100 }, "at most the credit of one lease (100)"},
		{"Take: the per-process fallback", func(b *Bucket) Decision { return b.Take(1) },
			func(n int) bool { return n > 100 }, "more than the credit (the fallback's burst)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := r.lim.NewBucket("leased:"+tc.name[:4], 1000, 1000) // a lease (and the credit) of 100
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			// Spend the credit so the shard asks Redis, which does not answer.
			for range 100 {
				tc.take(b)
			}
			errs := counterValue(r.ms, "gateway_limit_lease_errors_total")
			waitFor(t, 30*time.Second, "a lease failed", func() bool {
				tc.take(b)
				return counterValue(r.ms, "gateway_limit_lease_errors_total") > errs
			})
			passed := 0
			for range 2000 {
				if tc.take(b).OK {
					passed++
				}
			}
			if !tc.check(passed) {
				t.Fatalf("%d of 2000 takes passed while Redis is paused, want %s", passed, tc.want)
			}
		})
	}
}
