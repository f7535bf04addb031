package upstream

import (
	"bytes"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// The lock-free histogram is written as the metrics library's Prometheus histogram
// fed d.Seconds(): same series, le values, cumulative counts, _count, and _sum (to the
// float rounding of a sum of seconds: the histogram sums nanoseconds).
func TestHistogramExpositionMatchesPrometheusHistogram(t *testing.T) {
	for _, tc := range []struct {
		name   string
		series string
		values []time.Duration
	}{
		{"empty", `x_seconds{route="a"}`, nil},
		{"no labels", `x_seconds`, []time.Duration{100 * time.Microsecond, 500 * time.Microsecond, 2 * time.Millisecond}},
		{"integer sum", `x_seconds{a="b",c="d"}`, []time.Duration{time.Second, 2 * time.Second, 3 * time.Second}},
		{"on and past the bounds", `x_seconds{route="a"}`, []time.Duration{0, 1, 500 * time.Microsecond, 510 * time.Microsecond,
			300 * time.Millisecond, 16384 * time.Microsecond, 33 * time.Second, time.Hour}},
		{"negative ignored", `x_seconds{route="a"}`, []time.Duration{-time.Second, 10 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := metrics.NewSet()
			rh := ref.NewPrometheusHistogramExt(tc.series, latencyBuckets)
			reg := NewRegistry()
			h := reg.ShardedHistogram(tc.series, "help", latencyBuckets)
			for i, d := range tc.values {
				rh.Update(d.Seconds())
				h.Update(uint64(i), d)
			}
			var want, got bytes.Buffer
			ref.WritePrometheus(&want)
			reg.WritePrometheus(&got)
			gl, wl := strings.Split(got.String(), "\n"), strings.Split(want.String(), "\n")
			if len(gl) != len(wl) {
				t.Fatalf("exposition differs:\ngot:\n%s\nwant:\n%s", got.String(), want.String())
			}
			for i := range gl {
				if gl[i] == wl[i] {
					continue
				}
				gn, gv, _ := strings.Cut(gl[i], " ")
				wn, wv, _ := strings.Cut(wl[i], " ")
				g, err1 := strconv.ParseFloat(gv, 64)
				w, err2 := strconv.ParseFloat(wv, 64)
				if gn != wn || !strings.Contains(gn, "_sum") || err1 != nil || err2 != nil || math.Abs(g-w) > 1e-12*math.Abs(w) {
					t.Fatalf("line %d: got %q, want %q", i, gl[i], wl[i])
				}
			}
		})
	}
}

// A registry's views remove their lock-free histograms on Close, as the others.
func TestHistogramUnregistered(t *testing.T) {
	reg := NewRegistry()
	v := reg.With(`network="a"`)
	v.ShardedHistogram(`y_seconds{route="r"}`, "help", latencyBuckets).Update(0, 100*time.Millisecond)
	reg.ShardedHistogram(`z_seconds`, "help", latencyBuckets).Update(0, 100*time.Millisecond)
	var b bytes.Buffer
	reg.WritePrometheus(&b)
	if !bytes.Contains(b.Bytes(), []byte(`y_seconds_count{network="a",route="r"} 1`)) {
		t.Fatalf("no view series in:\n%s", b.String())
	}
	v.Close()
	reg.Unregister("z_seconds")
	b.Reset()
	reg.WritePrometheus(&b)
	if b.Len() != 0 {
		t.Fatalf("series left after Close and Unregister:\n%s", b.String())
	}
}

func TestHistogramUpdateAllocatesNothing(t *testing.T) {
	h := NewRegistry().ShardedHistogram("a_seconds", "help", latencyBuckets)
	if n := testing.AllocsPerRun(100, func() { h.Update(3, time.Millisecond) }); n != 0 {
		t.Fatalf("Update allocates %.1f", n)
	}
}

// go test -bench Histogram -cpu 2: the per-request duration update, from every core.
func BenchmarkHistogramUpdate(b *testing.B) {
	b.Run("prometheus", func(b *testing.B) {
		h := metrics.NewSet().NewPrometheusHistogramExt("a_seconds", latencyBuckets)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				h.Update(0.0007)
			}
		})
	})
	b.Run("sharded", func(b *testing.B) {
		h := NewRegistry().ShardedHistogram("a_seconds", "help", latencyBuckets)
		var next atomic.Uint64
		b.RunParallel(func(pb *testing.PB) {
			hint := next.Add(1) // one shard per goroutine, as one per core
			for pb.Next() {
				h.Update(hint, 700*time.Microsecond)
			}
		})
	})
}

// The sharded counter is written as a metrics.Counter, and sums its shards.
func TestShardedCounterExpositionMatchesCounter(t *testing.T) {
	for _, n := range []int{0, 1, 17} {
		ref := metrics.NewSet()
		rc := ref.NewCounter(`x_total{route="a",code="200"}`)
		reg := NewRegistry()
		c := reg.ShardedCounter(`x_total{route="a",code="200"}`, "help")
		for i := range n {
			rc.Inc()
			c.Inc(uint64(i))
		}
		var want, got bytes.Buffer
		ref.WritePrometheus(&want)
		reg.WritePrometheus(&got)
		if got.String() != want.String() || c.Get() != uint64(n) {
			t.Fatalf("%d increments: got %q (Get %d), want %q", n, got.String(), c.Get(), want.String())
		}
	}
}

func TestShardedCounterIncAllocatesNothing(t *testing.T) {
	c := NewRegistry().ShardedCounter("a_total", "help")
	if n := testing.AllocsPerRun(100, func() { c.Inc(5) }); n != 0 {
		t.Fatalf("Inc allocates %.1f", n)
	}
}
