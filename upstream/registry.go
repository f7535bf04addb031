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

	mu   sync.Mutex
	help map[string]string // by family name
}

// NewRegistry returns an empty registry; register its Set with metrics.RegisterSet to
// have it exported by the process-wide writer, or write it with WritePrometheus.
func NewRegistry() *Registry {
	return &Registry{Set: metrics.NewSet(), help: make(map[string]string)}
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

// Counter returns the counter called name (labels included), creating it once.
func (r *Registry) Counter(name, help string) *metrics.Counter {
	r.Describe(name, help)
	return r.Set.GetOrCreateCounter(name)
}

// Gauge registers a gauge whose value f reads when scraped.
func (r *Registry) Gauge(name, help string, f func() float64) *metrics.Gauge {
	r.Describe(name, help)
	return r.Set.GetOrCreateGauge(name, f)
}

// Histogram returns the Prometheus histogram (le buckets) called name, creating it once.
func (r *Registry) Histogram(name, help string, buckets []float64) *metrics.PrometheusHistogram {
	r.Describe(name, help)
	return r.Set.GetOrCreatePrometheusHistogramExt(name, buckets)
}

// WritePrometheus writes the registry's metrics in the Prometheus text format.
func (r *Registry) WritePrometheus(w io.Writer) { r.Set.WritePrometheus(w) }
