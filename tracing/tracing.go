// Package tracing is the gateway's OpenTelemetry tracing: a span per client call (batch
// elements as children of the batch's) and per upstream attempt, W3C traceparent in and
// out, and the X-Request-Id of a call. The sampling decision is made here, at the edge,
// before anything of OpenTelemetry runs: an unsampled call (and every call while tracing
// is off) touches no span, context or attribute, so it allocates nothing.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Exporters the gateway speaks.
const (
	ExporterOff      = ""
	ExporterOTLPGRPC = "otlp-grpc"
	ExporterOTLPHTTP = "otlp-http"
)

// Config is the tracing part of the gateway's configuration.
type Config struct {
	Exporter string  // ExporterOff, ExporterOTLPGRPC or ExporterOTLPHTTP
	Endpoint string  // http(s)://host:port[/path] of the collector; http:// means no TLS
	Ratio    float64 // share of calls without a sampled parent that are traced, 0..1
	// ParentBased follows the caller's sampled flag when a valid traceparent came in.
	ParentBased bool
	// ParentRate bounds the calls a second sampled because the caller's flag asked
	// (0: no bound): the flag is the client's to set, and a span costs microseconds
	// and allocations an unsampled call does not.
	ParentRate int
	Service    string // service.name of the spans
	Version    string // service.version
	// Log gets the exporter's errors (nil: slog.Default()): the gateway's logger, so
	// they keep its format and level.
	Log *slog.Logger
}

// exportLogEvery spaces the log lines of failing exports.
const exportLogEvery = 30 * time.Second

// Validate reports a configuration the tracer cannot start with. Its messages name
// the flags; they never quote the endpoint (it may carry credentials).
func (c Config) Validate() error {
	switch c.Exporter {
	case ExporterOff:
		return nil
	case ExporterOTLPGRPC, ExporterOTLPHTTP:
	default:
		return fmt.Errorf("-trace-exporter must be %s or %s (empty: tracing off), got %q", ExporterOTLPGRPC, ExporterOTLPHTTP, c.Exporter)
	}
	if c.Endpoint == "" {
		return errors.New("-trace-exporter needs -trace-endpoint (http://collector:4317 for otlp-grpc, http://collector:4318 for otlp-http)")
	}
	u, err := url.Parse(c.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("-trace-endpoint must be an http:// or https:// URL with a host")
	}
	if math.IsNaN(c.Ratio) || c.Ratio < 0 || c.Ratio > 1 {
		return errors.New("-trace-sample-ratio must be between 0 and 1")
	}
	if c.ParentRate < 0 {
		return errors.New("-trace-parent-rate must be 0 (no bound) or more")
	}
	return nil
}

// Tracer starts the spans of one gateway. A nil *Tracer is tracing off.
type Tracer struct {
	tp          *sdktrace.TracerProvider
	tr          trace.Tracer
	threshold   uint64 // a call is sampled when a random uint64 is below it
	always      bool   // ratio 1
	parentBased bool
	parents     window // the calls sampled by their caller's flag this second
}

// window counts events in the current second, up to max (0: no bound). Two calls
// at the turn of a second may both restart it: the bound is a rate, not an exact count.
type window struct {
	max int64
	sec atomic.Int64
	n   atomic.Int64
}

// allow counts one event at now (Unix nanoseconds) and reports whether it is within max.
func (w *window) allow(now int64) bool {
	if w.max == 0 {
		return true
	}
	sec := now / int64(time.Second)
	if cur := w.sec.Load(); cur != sec && w.sec.CompareAndSwap(cur, sec) {
		w.n.Store(0)
	}
	return w.n.Add(1) <= w.max
}

// New starts the exporter of cfg; nil when tracing is off. The exporter connects
// lazily: a collector that is down costs dropped spans, never a refused start.
func New(ctx context.Context, cfg Config) (*Tracer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Exporter == ExporterOff {
		return nil, nil
	}
	var exp sdktrace.SpanExporter
	var err error
	u, _ := url.Parse(cfg.Endpoint) // validated
	if cfg.Exporter == ExporterOTLPGRPC {
		exp, err = otlptracegrpc.New(ctx, otlptracegrpc.WithEndpointURL(cfg.Endpoint))
	} else {
		if u.Path == "" || u.Path == "/" {
			u.Path = "/v1/traces" // the OTLP/HTTP default, as a collector's address is usually given
		}
		exp, err = otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(u.String()))
	}
	if err != nil {
		return nil, fmt.Errorf("tracing: starting the %s exporter: %w", cfg.Exporter, err)
	}
	service := cfg.Service
	if service == "" {
		service = "infura-gateway"
	}
	// Export errors quote the endpoint: logged with it reduced to scheme and host, so
	// credentials in it never reach a log line.
	bare := u.Scheme + "://" + u.Host
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	// A collector that is down fails every export (about one a second): one line per
	// exportLogEvery, with how many failed since the last one.
	var last, failed atomic.Int64
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		n := failed.Add(1)
		now, prev := time.Now().UnixNano(), last.Load()
		if prev != 0 && now-prev < int64(exportLogEvery) || !last.CompareAndSwap(prev, now) {
			return
		}
		failed.Add(-n)
		msg := strings.ReplaceAll(strings.ReplaceAll(err.Error(), u.String(), bare), cfg.Endpoint, bare)
		log.Warn("tracing: span export failed", "err", msg, "failures", n)
	}))
	res := resource.NewSchemaless(attribute.String("service.name", service), attribute.String("service.version", cfg.Version))
	// The decision is ours (Begin): the SDK records every span it is asked for.
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(time.Second)),
		sdktrace.WithResource(res), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	t := NewWithProvider(tp, cfg.Ratio, cfg.ParentBased)
	t.parents.max = int64(cfg.ParentRate)
	return t, nil
}

// NewWithProvider makes a tracer over tp (tests give one with their own exporter).
func NewWithProvider(tp *sdktrace.TracerProvider, ratio float64, parentBased bool) *Tracer {
	t := &Tracer{tp: tp, tr: tp.Tracer("github.com/infura-gateway/infura-gateway"), parentBased: parentBased}
	switch {
	case ratio >= 1:
		t.always = true
	case ratio > 0:
		t.threshold = uint64(ratio * math.MaxUint64)
	}
	return t
}

// Shutdown flushes the spans still buffered and stops the exporter.
func (t *Tracer) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.tp.Shutdown(ctx)
}

// sample is the edge's decision for a call whose caller sent parent (valid or not).
func (t *Tracer) sample(parent *parsedParent) bool {
	if parent.ok && t.parentBased {
		if !parent.sampled {
			return false
		}
		if t.parents.allow(time.Now().UnixNano()) {
			return true
		}
		// Past the bound: the caller's flag no longer decides; the ratio does.
	}
	return t.always || (t.threshold > 0 && rand.Uint64() < t.threshold)
}
