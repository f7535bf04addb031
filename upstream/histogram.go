package upstream

import (
	"bytes"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/VictoriaMetrics/metrics"
)

// Histogram is a Prometheus histogram of durations (le buckets in seconds, _sum,
// _count) updated without a
// lock: metrics.PrometheusHistogram takes a mutex per Update, and the mutex's cache
// line passes between the cores on every request. Its counts live in histShards
// shards, each on cache lines of its own, picked by a hint the caller keeps on one
// core (a connection, a pooled request); a scrape sums them. It is written exactly as
// metrics.PrometheusHistogram writes itself (same names, le values and formats).
type Histogram struct {
	name   string
	bounds []float64
	shards [histShards]histShard
}

const histShards = 8

// histShard is one shard's words, on cache lines of their own (its slice header is
// only read): counts[i] counts the durations in bucket i (i == len(bounds): above the
// last bound, +Inf); the word after them sums them in nanoseconds (an add, where a
// float sum needs a compare-and-swap loop; written in seconds).
type histShard struct {
	counts []atomic.Uint64
	sum    *atomic.Uint64
}

func newHistogram(name string, bounds []float64) *Histogram {
	if err := metrics.ValidateBuckets(bounds); err != nil {
		panic(fmt.Errorf("histogram %s: %w", name, err))
	}
	h := &Histogram{name: name, bounds: bounds}
	for i := range h.shards {
		// A multiple of 8 words: the allocator places it on whole cache lines.
		words := make([]atomic.Uint64, (len(bounds)+2+7)&^7)
		h.shards[i] = histShard{counts: words[:len(bounds)+1], sum: &words[len(bounds)+1]}
	}
	return h
}

// Update records the duration d in the shard of hint, in the bucket that
// metrics.PrometheusHistogram.Update(d.Seconds()) would pick; negative durations are
// ignored, as it ignores negative values. Two atomic adds on the shard's own lines.
func (h *Histogram) Update(hint uint64, d time.Duration) {
	if d < 0 {
		return
	}
	v := d.Seconds()
	i := 0
	for i < len(h.bounds) && v > h.bounds[i] {
		i++
	}
	s := &h.shards[hint%histShards]
	s.counts[i].Add(1)
	s.sum.Add(uint64(d))
}

// snapshot sums the shards: per-bucket counts (the last is +Inf), the count and sum.
func (h *Histogram) snapshot() (counts []uint64, count uint64, sum float64) {
	counts = make([]uint64, len(h.bounds)+1)
	var ns uint64
	for s := range h.shards {
		sh := &h.shards[s]
		for i := range sh.counts {
			n := sh.counts[i].Load()
			counts[i] += n
			count += n
		}
		ns += sh.sum.Load()
	}
	return counts, count, time.Duration(ns).Seconds()
}

// marshalTo writes h as metrics.PrometheusHistogram.marshalTo does.
func (h *Histogram) marshalTo(w io.Writer) {
	counts, count, sum := h.snapshot()
	var cum uint64
	for i, ub := range h.bounds {
		cum += counts[i]
		name, labels := splitName(addLabel(h.name, fmt.Sprintf(`le="%v"`, ub)))
		fmt.Fprintf(w, "%s_bucket%s %d\n", name, labels, cum)
	}
	name, labels := splitName(addLabel(h.name, fmt.Sprintf("le=%q", "+Inf")))
	fmt.Fprintf(w, "%s_bucket%s %d\n", name, labels, count)
	name, labels = splitName(h.name)
	if float64(int64(sum)) == sum {
		fmt.Fprintf(w, "%s_sum%s %d\n", name, labels, int64(sum))
	} else {
		fmt.Fprintf(w, "%s_sum%s %g\n", name, labels, sum)
	}
	fmt.Fprintf(w, "%s_count%s %d\n", name, labels, count)
}

func splitName(name string) (string, string) {
	if i := strings.IndexByte(name, '{'); i >= 0 {
		return name[:i], name[i:]
	}
	return name, ""
}

func addLabel(name, label string) string {
	if name == "" || name[len(name)-1] != '}' {
		return name + "{" + label + "}"
	}
	if name = name[:len(name)-1]; name[len(name)-1] == '{' {
		return name + label + "}"
	}
	return name + "," + label + "}"
}

// ShardedCounter is a counter every request increments, in histShards words on cache
// lines of their own picked by a hint (as Histogram's shards): one word every request
// writes passes between the cores. It is written as a metrics.Counter.
type ShardedCounter struct {
	name   string
	shards [histShards]struct {
		n atomic.Uint64
		_ [56]byte
	}
}

// Inc adds one in the shard of hint.
func (c *ShardedCounter) Inc(hint uint64) { c.shards[hint%histShards].n.Add(1) }

// Get returns the sum of the shards.
func (c *ShardedCounter) Get() (n uint64) {
	for i := range c.shards {
		n += c.shards[i].n.Load()
	}
	return n
}

func (c *ShardedCounter) marshalTo(w io.Writer) { fmt.Fprintf(w, "%s %d\n", c.name, c.Get()) }

// shardedMetric is a Histogram or a ShardedCounter.
type shardedMetric interface {
	marshalTo(w io.Writer)
}

// histograms are a Set's sharded metrics (Histogram, ShardedCounter), written after
// the Set's own metrics by a metrics writer of the Set: metrics has no way to register
// a metric type of ours.
type histograms struct {
	mu sync.Mutex
	m  map[string]shardedMetric
}

func (hs *histograms) getOrCreate(name string, bounds []float64) *Histogram {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if h, ok := hs.m[name].(*Histogram); ok {
		return h
	}
	h := newHistogram(name, bounds)
	hs.m[name] = h
	return h
}

func (hs *histograms) counter(name string) *ShardedCounter {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if c, ok := hs.m[name].(*ShardedCounter); ok {
		return c
	}
	c := &ShardedCounter{name: name}
	hs.m[name] = c
	return c
}

// remove drops name; it reports whether it was there.
func (hs *histograms) remove(name string) bool {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	_, ok := hs.m[name]
	delete(hs.m, name)
	return ok
}

// write writes every metric, sorted by family then name as metrics.Set sorts its own,
// with a HELP and TYPE line per family when the metrics library writes them.
func (hs *histograms) write(w io.Writer) {
	type named struct {
		name string
		m    shardedMetric
	}
	hs.mu.Lock()
	all := make([]named, 0, len(hs.m))
	for n, m := range hs.m {
		all = append(all, named{n, m})
	}
	hs.mu.Unlock()
	if len(all) == 0 {
		return
	}
	sort.Slice(all, func(i, j int) bool {
		if fi, fj := family(all[i].name), family(all[j].name); fi != fj {
			return fi < fj
		}
		return all[i].name < all[j].name
	})
	meta := metadataExposed()
	var b bytes.Buffer
	prev := ""
	for _, nm := range all {
		if f := family(nm.name); meta && f != prev {
			typ := "histogram"
			if _, ok := nm.m.(*ShardedCounter); ok {
				typ = "counter"
			}
			fmt.Fprintf(&b, "# HELP %s\n# TYPE %s %s\n", f, f, typ)
			prev = f
		}
		nm.m.marshalTo(&b)
	}
	w.Write(b.Bytes())
}

// metadataExposed reports whether the metrics library writes HELP and TYPE lines
// (metrics.ExposeMetadata), which it does not say otherwise: scrapes are rare.
func metadataExposed() bool {
	s := metrics.NewSet()
	s.NewCounter("probe")
	var b bytes.Buffer
	s.WritePrometheus(&b)
	return bytes.HasPrefix(b.Bytes(), []byte("#"))
}

// ptrHint is a shard hint from a pooled object's address: sync.Pool hands an object
// back mostly on the P that put it, so a call's request keeps its shard on one core.
func ptrHint[T any](p *T) uint64 { return uint64(uintptr(unsafe.Pointer(p)) >> 8) }
