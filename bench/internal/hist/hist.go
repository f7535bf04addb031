// Package hist is a log-bucketed latency histogram in the spirit of
// HdrHistogram: each power of two is split into 64 linear sub-buckets, so any
// recorded value is reported within 1/64 (~1.6%) of its true value, with a
// fixed 2,240-bucket footprint covering 1 ns to ~18 minutes.
//
// Record is safe for concurrent use (atomic adds): the load driver records
// from thousands of goroutines into one histogram per path, and on 2 cores a
// shared atomic array is cheaper than merging per-worker histograms every
// second for the progress line.
package hist

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

const (
	subBits    = 6
	subBuckets = 1 << subBits // 64
	// maxExp bounds values at 2^(maxExp+subBits) ns ≈ 1.1e12 ns ≈ 18 min.
	maxExp     = 34
	numBuckets = (maxExp + 1) * subBuckets
)

// Hist counts durations in nanoseconds.
type Hist struct {
	counts [numBuckets]atomic.Uint64
	n      atomic.Uint64
	sum    atomic.Uint64
	max    atomic.Uint64
}

// New returns an empty histogram.
func New() *Hist { return &Hist{} }

// index maps a value to its bucket. Values below 64 get one bucket each;
// above, the top 7 significant bits select the bucket.
func index(v uint64) int {
	if v < subBuckets {
		return int(v)
	}
	exp := bits.Len64(v) - subBits - 1 // v>>exp is in [64,128)
	idx := (exp+1)*subBuckets + int(v>>uint(exp)) - subBuckets
	if idx >= numBuckets {
		return numBuckets - 1
	}
	return idx
}

// lowerBound is the smallest value that maps to bucket idx.
func lowerBound(idx int) uint64 {
	if idx < subBuckets {
		return uint64(idx)
	}
	exp := idx/subBuckets - 1
	return uint64(idx%subBuckets+subBuckets) << uint(exp)
}

// upperBound is the largest value that maps to bucket idx.
func upperBound(idx int) uint64 {
	if idx < subBuckets {
		return uint64(idx)
	}
	exp := idx/subBuckets - 1
	return lowerBound(idx) + (1 << uint(exp)) - 1
}

// Record adds one observation.
func (h *Hist) Record(d time.Duration) {
	v := uint64(0)
	if d > 0 {
		v = uint64(d)
	}
	h.counts[index(v)].Add(1)
	h.n.Add(1)
	h.sum.Add(v)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			break
		}
	}
}

// Count is the number of observations.
func (h *Hist) Count() uint64 { return h.n.Load() }

// Max is the largest observation.
func (h *Hist) Max() time.Duration { return time.Duration(h.max.Load()) }

// Mean is the average observation, 0 when empty.
func (h *Hist) Mean() time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	return time.Duration(h.sum.Load() / n)
}

// Quantile returns the value at quantile q (0..1): the upper bound of the
// bucket holding the ceil(q*n)-th observation, capped at the exact maximum,
// so a reported p99 is never below the true one by more than a bucket width.
func (h *Hist) Quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			v := upperBound(i)
			if m := h.max.Load(); v > m {
				v = m
			}
			return time.Duration(v)
		}
	}
	return h.Max()
}

// Merge adds the observations of o into h.
func (h *Hist) Merge(o *Hist) {
	for i := range o.counts {
		if c := o.counts[i].Load(); c != 0 {
			h.counts[i].Add(c)
		}
	}
	h.n.Add(o.n.Load())
	h.sum.Add(o.sum.Load())
	for {
		m, om := h.max.Load(), o.max.Load()
		if om <= m || h.max.CompareAndSwap(m, om) {
			break
		}
	}
}

// Bucket is one non-empty histogram bucket, for export.
type Bucket struct {
	LowNS  uint64 `json:"low_ns"`
	HighNS uint64 `json:"high_ns"`
	Count  uint64 `json:"count"`
}

// Buckets returns the non-empty buckets in increasing order.
func (h *Hist) Buckets() []Bucket {
	var out []Bucket
	for i := range h.counts {
		if c := h.counts[i].Load(); c != 0 {
			out = append(out, Bucket{LowNS: lowerBound(i), HighNS: upperBound(i), Count: c})
		}
	}
	return out
}
