package hist

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketBounds(t *testing.T) {
	for _, v := range []uint64{0, 1, 63, 64, 65, 127, 128, 129, 1000, 1 << 20, 123456789, 1 << 39} {
		i := index(v)
		if lo, hi := lowerBound(i), upperBound(i); v < lo || v > hi {
			t.Fatalf("value %d in bucket %d [%d,%d]", v, i, lo, hi)
		}
		if i > 0 && upperBound(i-1)+1 != lowerBound(i) {
			t.Fatalf("gap before bucket %d", i)
		}
	}
}

func TestQuantiles(t *testing.T) {
	f := func(name string, values []time.Duration) {
		t.Helper()
		h := New()
		for _, v := range values {
			h.Record(v)
		}
		sorted := slices.Clone(values)
		slices.Sort(sorted)
		for _, q := range []float64{0.5, 0.9, 0.95, 0.99, 1} {
			rank := int(float64(len(sorted))*q+0.999999) - 1
			want := sorted[max(rank, 0)]
			got := h.Quantile(q)
			// Reported values are bucket upper bounds: never below the
			// truth, at most 1/64 above it.
			if got < want || float64(got) > float64(want)*(1+1.0/64)+1 {
				t.Fatalf("%s: q%.2f = %v, want %v (within 1/64 above)", name, q, got, want)
			}
		}
		if h.Max() != sorted[len(sorted)-1] || h.Count() != uint64(len(values)) {
			t.Fatalf("%s: max %v count %d", name, h.Max(), h.Count())
		}
	}
	var uniform, bimodal []time.Duration
	r := rand.New(rand.NewPCG(1, 2))
	for i := 1; i <= 10000; i++ {
		uniform = append(uniform, time.Duration(i)*time.Microsecond)
		if r.IntN(100) == 0 {
			bimodal = append(bimodal, 50*time.Millisecond+time.Duration(r.IntN(1e6)))
		} else {
			bimodal = append(bimodal, 200*time.Microsecond+time.Duration(r.IntN(1e5)))
		}
	}
	f("uniform", uniform)
	f("bimodal", bimodal)
	f("single", []time.Duration{42 * time.Millisecond})
	f("tiny", []time.Duration{1, 2, 3})
}

func TestQuantileExamples(t *testing.T) {
	h := New()
	for i := 1; i <= 100; i++ {
		h.Record(time.Duration(i) * time.Millisecond)
	}
	f := func(q float64, want time.Duration) {
		t.Helper()
		got := h.Quantile(q)
		if got < want || got > want+want/64 {
			t.Fatalf("q%v = %v, want ~%v", q, got, want)
		}
	}
	f(0.5, 50*time.Millisecond)
	f(0.99, 99*time.Millisecond)
	f(1, 100*time.Millisecond)
	if got := h.Mean(); got != 50500*time.Microsecond {
		t.Fatalf("mean %v", got)
	}
	o := New()
	o.Record(time.Second)
	h.Merge(o)
	if h.Count() != 101 || h.Max() != time.Second || h.Quantile(1) != time.Second {
		t.Fatalf("merge: count %d max %v", h.Count(), h.Max())
	}
	if New().Quantile(0.99) != 0 {
		t.Fatal("empty histogram must report 0")
	}
}
