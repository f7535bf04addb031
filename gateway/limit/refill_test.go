package limit

import (
	"math"
	"strings"
	"testing"
)

// A bucket whose burst takes longer than the bound to refill (burst / rate, in
// nanoseconds, past int64's range) is refused when it is made: its GCRA arithmetic
// overflowed, and such a bucket admitted one call and refused every other (burst 2^40
// at 1/s) or admitted every call (a rate below 1e-9/s, NaN).
func TestBucketWhoseRefillOverflowsIsRefused(t *testing.T) {
	l := newLocal(t, Config{})
	for _, tc := range []struct {
		name  string
		rate  float64
		burst int64
	}{
		{"burst 2^40 at 1/s", 1, 1 << 40},
		{"burst 2^39 at 0.5/s", 0.5, 1 << 39},
		{"burst 2e10 at 1/s", 1, 20_000_000_000},
		{"1e-10/s", 1e-10, 1},
		{"NaN", math.NaN(), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := l.NewBucket("k", tc.rate, tc.burst)
			if err == nil {
				admitted := 0
				for range 3 {
					if b.Take(1).OK {
						admitted++
					}
				}
				t.Fatalf("made (3 takes in a row: %d admitted), want refused", admitted)
			}
			if !strings.Contains(err.Error(), "limit: bucket k:") {
				t.Fatalf("error %q does not name the bucket", err)
			}
		})
	}
	// Within the bound: a burst of 2^30 at 1/s refills in 34 years, and is spent as a burst.
	b, err := l.NewBucket("ok", 1, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if !b.Take(1).OK {
			t.Fatalf("take %d of a burst of 2^30 refused", i)
		}
	}
}
