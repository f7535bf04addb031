package limit

import (
	"testing"
	"time"
)

// TestBucketLeaseSizing: a bucket's lease is sized on the take rate observed over the last
// rate window and on how late renewals land: enough for max(LeaseWindow, 3 renewals),
// between L and 4L (at most burst), with the prefetch point at half of it.
func TestBucketLeaseSizing(t *testing.T) {
	const ms = time.Millisecond
	cases := []struct {
		name         string
		rate         float64 // the plan
		burst        int64
		taken        int64 // units per second taken on this replica
		renewal      time.Duration
		wantSize     int64
		wantPrefetch int64
	}{
		{"idle key: L", 100, 100, 0, 0, 10, 5},
		{"a third of the plan, fast renewals: L", 100, 100, 33, 5 * ms, 10, 5},
		{"busy, renewals 50 ms late: 3 renewals' worth", 100, 100, 90, 50 * ms, 14, 7},
		{"busy, renewals 150 ms late: capped at 4L", 100, 100, 90, 150 * ms, 40, 20},
		{"large plan, renewals 100 ms late", 1000, 1000, 500, 100 * ms, 150, 75},
		{"4L capped at the burst", 100, 20, 90, 500 * ms, 20, 10},
		{"a batch-heavy key past the plan: still 4L at most", 100, 100, 5000, 10 * ms, 40, 20},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := newLocal(t, Config{})
			b, err := l.NewBucket("size", c.rate, c.burst)
			if err != nil {
				t.Fatal(err)
			}
			s := b.s
			s.renewal = int64(c.renewal)
			// One full rate window (10 lease windows, 1 s) with c.taken units taken.
			start := int64(time.Hour)
			s.winStart, s.mark = start, 1<<30
			s.observe(1<<30-c.taken, start+int64(time.Second))
			if s.size != c.wantSize || s.low.Load() != c.wantPrefetch {
				t.Errorf("lease %d, prefetch under %d; want %d and %d", s.size, s.low.Load(), c.wantSize, c.wantPrefetch)
			}
			if s.size < s.lease || s.size > maxLeaseSize(c.rate, c.burst, 100*ms) {
				t.Errorf("lease %d outside [L=%d, %d]", s.size, s.lease, maxLeaseSize(c.rate, c.burst, 100*ms))
			}
		})
	}
}
