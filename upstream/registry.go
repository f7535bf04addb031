package upstream

import (
	"io"
	"strings"
	"sync"

	"github.com/VictoriaMetrics/metrics"
)

// Registry is a metrics.Set together with the HELP text of every family registered in
// it. A gateway Server owns one and hands it to its upstream clients, so the metrics of
// one Server live and die with it (two Servers in one process never share a series), and
// every metric's name and description are written where the metric is declared.
type Registry struct {
	Set *metrics.Set

	mu    *sync.Mutex
	help  map[string]string // by family name
	hists *histograms       // the Set's sharded metrics (Histogram, ShardedCounter)

	// A view (With) adds labels to every name it registers, and remembers the names so
	// that Close can take them all out (a network removed by a reload).
	labels string
	owned  *map[string]struct{} // a set: a series looked up again (Counter on a hot path) is not added twice
}

// NewRegistry returns an empty registry; register its Set with metrics.RegisterSet to
// have it exported by the process-wide writer, or write it with WritePrometheus.
func NewRegistry() *Registry {
	r := &Registry{Set: metrics.NewSet(), mu: new(sync.Mutex), help: make(map[string]string),
		hists: &histograms{m: make(map[string]shardedMetric)}}
	r.Set.RegisterMetricsWriter(r.hists.write)
	return r
}

func family(name string) string {
	if i := strings.IndexByte(name, '{'); i >= 0 {
		return name[:i]
	}
	return name
}

// Describe records the HELP text of name's family (the first description wins).
func (r *Registry) Describe(name, help string) {
	r.mu.Lock()
	if _, ok := r.help[family(name)]; !ok {
		r.help[family(name)] = help
	}
	r.mu.Unlock()
}

// Help returns the HELP text of a family.
func (r *Registry) Help(family string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h, ok := r.help[family]
	return h, ok
}

// With returns a view of r that registers every metric with labels (`network="x"`)
// before its own: the metrics of one network among several. The view shares r's set.
func (r *Registry) With(labels string) *Registry {
	v := *r
	if r.labels != "" {
		labels = r.labels + "," + labels
	}
	owned := make(map[string]struct{})
	v.labels, v.owned = labels, &owned
	return &v
}

// labelled is name with this view's labels first.
func (r *Registry) labelled(name string) string {
	if r.labels == "" {
		return name
	}
	if i := strings.IndexByte(name, '{'); i >= 0 {
		return name[:i+1] + r.labels + "," + name[i+1:]
	}
	return name + "{" + r.labels + "}"
}

// name is the series name of name in this view, remembered for Close.
func (r *Registry) name(name string) string {
	if r.labels == "" {
		return name
	}
	name = r.labelled(name)
	r.mu.Lock()
	(*r.owned)[name] = struct{}{}
	r.mu.Unlock()
	return name
}

// Counter returns the counter called name (labels included), creating it once.
func (r *Registry) Counter(name, help string) *metrics.Counter {
	r.Describe(name, help)
	return r.Set.GetOrCreateCounter(r.name(name))
}

// Gauge registers a gauge whose value f reads when scraped.
func (r *Registry) Gauge(name, help string, f func() float64) *metrics.Gauge {
	r.Describe(name, help)
	return r.Set.GetOrCreateGauge(r.name(name), f)
}

// Histogram returns the Prometheus histogram (le buckets) called name, creating it once.
func (r *Registry) Histogram(name, help string, buckets []float64) *metrics.PrometheusHistogram {
	r.Describe(name, help)
	return r.Set.GetOrCreatePrometheusHistogramExt(r.name(name), buckets)
}

// ShardedHistogram returns the lock-free Prometheus histogram called name, creating it
// once: for the histograms every request updates (Histogram). It is written as
// Histogram writes the others.
func (r *Registry) ShardedHistogram(name, help string, buckets []float64) *Histogram {
	r.Describe(name, help)
	return r.hists.getOrCreate(r.name(name), buckets)
}

// ShardedCounter returns the sharded counter called name, creating it once: for the
// counters every request increments (ShardedCounter).
func (r *Registry) ShardedCounter(name, help string) *ShardedCounter {
	r.Describe(name, help)
	return r.hists.counter(r.name(name))
}

// Unregister removes the series name (as registered through this view).
func (r *Registry) Unregister(name string) {
	if !r.hists.remove(r.labelled(name)) {
		r.Set.UnregisterMetric(r.labelled(name))
	}
}

// Close removes every series registered through this view (With); on r itself it does
// nothing.
func (r *Registry) Close() {
	if r.owned == nil {
		return
	}
	r.mu.Lock()
	names := *r.owned
	*r.owned = make(map[string]struct{})
	r.mu.Unlock()
	for n := range names {
		if !r.hists.remove(n) {
			r.Set.UnregisterMetric(n)
		}
	}
}

// WritePrometheus writes the registry's metrics in the Prometheus text format.
func (r *Registry) WritePrometheus(w io.Writer) { r.Set.WritePrometheus(w) }
