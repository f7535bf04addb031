// Package admin is what operators and their tools talk to: the route metrics every
// handler is wrapped in, /metrics, /status, the probes (/health, /readyz) and pprof on
// the admin listener. It imports network/ (for /status), pipeline/ (answers in JSON),
// redact/ and upstream/ (the metrics registry).
package admin

import (
	"bytes"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/gateway/pipeline"
	"github.com/infura-gateway/infura-gateway/gateway/redact"
	"github.com/infura-gateway/infura-gateway/tracing"
	"github.com/infura-gateway/infura-gateway/upstream"
)

// Route metrics are created once per route at start and kept in the route's handler,
// so a request costs atomic increments and one histogram update, nothing looked up.

type routeMetrics struct {
	// Sharded by connection: every request writes them.
	codes    [len(pipeline.StatusCodes) + 1]*upstream.ShardedCounter
	duration *upstream.Histogram
}

// Request latency buckets: 100 µs to ~13 s. Cache hits answer in microseconds.
var requestBuckets = metrics.ExponentialBuckets(0.0001, 2, 18)

// newRouteMetrics returns the metrics of a route label.
func (s *Instrumenter) newRouteMetrics(route string) *routeMetrics {
	rm := &routeMetrics{
		duration: s.reg.ShardedHistogram(`gateway_request_duration_seconds{route="`+route+`"}`,
			"Time from request read to response written, by route.", requestBuckets),
	}
	const help = "Requests answered, by route and HTTP status code."
	for i, code := range pipeline.StatusCodes {
		rm.codes[i] = s.reg.ShardedCounter(`gateway_requests_total{route="`+route+`",code="`+strconv.Itoa(code)+`"}`, help)
	}
	rm.codes[len(pipeline.StatusCodes)] = s.reg.ShardedCounter(`gateway_requests_total{route="`+route+`",code="other"}`, help)
	return rm
}

func (rm *routeMetrics) observe(ctx *fasthttp.RequestCtx, code int, took time.Duration) {
	rm.codes[pipeline.StatusIndex(code)].Inc(ctx.ConnID())
	rm.duration.Update(ctx.ConnID(), took)
}

// Instrumenter wraps route handlers with their metrics, counts the requests in
// flight and, with -log-requests, logs each.
type Instrumenter struct {
	reg         *upstream.Registry
	log         *slog.Logger
	logRequests bool
	inFlight    *inFlight // shared by every view (With)
	// uncounted: the admin listener's routes (scrapes, probes) are not client
	// requests; a scrape counted itself (the gauge read 1 on an idle gateway).
	uncounted bool
	// panicked answers a request whose handler panicked (a bug), inside the wrapper so
	// the request still leaves the in-flight count and is counted with its 500.
	panicked func(ctx *fasthttp.RequestCtx, v any)
}

// inFlight counts the requests being handled in shards, each on a cache line of its
// own, picked by the request's connection: one counter every request writes twice
// would pass its cache line between the cores on every request. The gauge sums them.
type inFlight [inFlightShards]struct {
	n atomic.Int64
	_ [56]byte
}

const inFlightShards = 16

func (f *inFlight) add(ctx *fasthttp.RequestCtx, d int64) {
	f[ctx.ConnID()%inFlightShards].n.Add(d)
}

func (f *inFlight) load() (n int64) {
	for i := range f {
		n += f[i].n.Load()
	}
	return n
}

// NewInstrumenter makes the route metrics of a gateway, in reg. panicked answers a
// request whose handler panicked.
func NewInstrumenter(reg *upstream.Registry, log *slog.Logger, logRequests bool,
	panicked func(ctx *fasthttp.RequestCtx, v any)) *Instrumenter {
	return &Instrumenter{reg: reg, log: log, logRequests: logRequests, inFlight: new(inFlight), panicked: panicked}
}

// Operator is the instrumenter of the admin listener's routes: counted by route like
// any other, never in the requests in flight.
func (s *Instrumenter) Operator() *Instrumenter {
	v := *s
	v.uncounted = true
	return &v
}

// With is the instrumenter of routes whose metrics go to reg (a network's view), their
// requests in flight counted with every other route's.
func (s *Instrumenter) With(reg *upstream.Registry) *Instrumenter {
	v := *s
	v.reg = reg
	return &v
}

// InFlight is the number of requests being handled now.
func (s *Instrumenter) InFlight() int64 { return s.inFlight.load() }

// LogPath is the request path fit for a log line: everything after /v3/ is replaced.
func LogPath(ctx *fasthttp.RequestCtx) string { return redact.Path(string(ctx.Path())) }

// Wrap wraps a route's handler with its metrics, and with a log line per request
// when -log-requests is on. It runs once per route at start.
func (s *Instrumenter) Wrap(route string, h fasthttp.RequestHandler) fasthttp.RequestHandler {
	rm := s.newRouteMetrics(route)
	w := &wrapped{s: s, rm: rm, route: route, h: h, logPath: LogPath}
	if route == "other" { // no route matched: the path may hold any provider's key
		w.logPath = func(ctx *fasthttp.RequestCtx) string { return redact.UnknownPath(string(ctx.Path())) }
	}
	if s.uncounted {
		return w.serveUncounted
	}
	return w.serve
}

// wrapped is one route's handler with its metrics.
type wrapped struct {
	s       *Instrumenter
	rm      *routeMetrics
	route   string
	h       fasthttp.RequestHandler
	logPath func(*fasthttp.RequestCtx) string
}

func (w *wrapped) serve(ctx *fasthttp.RequestCtx) {
	w.s.inFlight.add(ctx, 1)
	defer w.done(ctx, ctx.Time(), true)
	setRequestID(ctx)
	w.h(ctx)
}

func (w *wrapped) serveUncounted(ctx *fasthttp.RequestCtx) {
	defer w.done(ctx, ctx.Time(), false)
	setRequestID(ctx)
	w.h(ctx)
}

// done ends a request, also one whose handler panicked: answered with the panic
// handler's 500, out of the requests in flight, counted and logged.
func (w *wrapped) done(ctx *fasthttp.RequestCtx, start time.Time, counted bool) {
	if v := recover(); v != nil {
		w.s.panicked(ctx, v)
	}
	if counted {
		w.s.inFlight.add(ctx, -1)
	}
	code, took := ctx.Response.StatusCode(), time.Since(start)
	w.rm.observe(ctx, code, took)
	if w.s.logRequests {
		w.s.log.Info("request", "route", w.route, "method", string(ctx.Method()), "path", w.logPath(ctx),
			"status", code, "duration", took, "remote", ctx.RemoteIP().String(),
			"cache", string(ctx.Response.Header.Peek("X-Cache")),
			"request_id", string(ctx.Response.Header.PeekCanonical(tracing.RequestIDHeader)))
	}
}

// Count returns a function that counts, under route, a request answered before any
// route ran (a CORS preflight, a request fasthttp refused), with its log line under
// -log-requests. It sets no X-Request-Id: no handler ran that could use one. A request
// not timed (fasthttp refused it before taking its time) is counted without a
// duration: it has none to observe.
func (s *Instrumenter) Count(route string) func(ctx *fasthttp.RequestCtx, timed bool) {
	rm := s.newRouteMetrics(route)
	return func(ctx *fasthttp.RequestCtx, timed bool) {
		code := ctx.Response.StatusCode()
		rm.codes[pipeline.StatusIndex(code)].Inc(ctx.ConnID())
		var took time.Duration
		if timed {
			took = time.Since(ctx.Time())
			rm.duration.Update(ctx.ConnID(), took)
		}
		if s.logRequests {
			attrs := []any{"route", route, "method", string(ctx.Method()), "path", redact.UnknownPath(string(ctx.Path())),
				"status", code, "remote", ctx.RemoteIP().String()}
			if timed {
				attrs = append(attrs, "duration", took)
			}
			s.log.Info("request", attrs...)
		}
	}
}

// setRequestID answers the request's X-Request-Id when it is valid (bounded, a safe
// charset) and a new one otherwise. The handler passes it on upstream and into the
// call's span. Neither path allocates: the id is built in a stack array.
func setRequestID(ctx *fasthttp.RequestCtx) {
	id := ctx.Request.Header.PeekCanonical(tracing.RequestIDHeader)
	if !tracing.ValidRequestID(id) {
		var buf [32]byte
		id = tracing.AppendRequestID(buf[:0])
	}
	ctx.Response.Header.SetCanonical(tracing.RequestIDHeader, id)
}

func init() { metrics.ExposeMetadata(true) }

// metricsHandler writes Prometheus text: this server's metrics plus Go and process
// metrics, with HELP texts. Scrapes are rare; the copies do not matter.
// MetricsHandler serves reg (and the process's metrics) in Prometheus text format.
func MetricsHandler(reg *upstream.Registry) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) { writeMetrics(ctx, reg) }
}

func writeMetrics(ctx *fasthttp.RequestCtx, reg *upstream.Registry) {
	var raw bytes.Buffer
	reg.WritePrometheus(&raw)
	metrics.WriteProcessMetrics(&raw)
	ctx.SetContentType("text/plain; version=0.0.4; charset=utf-8")
	out := make([]byte, 0, raw.Len()+raw.Len()/4)
	for line := range bytes.Lines(raw.Bytes()) {
		if bytes.HasPrefix(line, helpPrefix) {
			name := bytes.TrimSpace(line[len(helpPrefix):])
			if bytes.IndexByte(name, ' ') < 0 {
				out = append(out, helpPrefix...)
				out = append(out, renamed(name)...)
				out = append(out, ' ')
				out = append(out, helpFor(reg, renamed(name))...)
				out = append(out, '\n')
				continue
			}
		}
		out = fixLine(out, line)
	}
	ctx.SetBody(out)
}

// helpFor returns the HELP text of a family: the one written where the metric is
// declared, or a generic one for the Go and process metrics of the metrics library.
func helpFor(reg *upstream.Registry, name string) string {
	if h, ok := reg.Help(name); ok {
		return h
	}
	switch {
	case strings.HasPrefix(name, "go_"):
		return "Go runtime metric " + name + "."
	case strings.HasPrefix(name, "process_"):
		return "Process metric " + name + "."
	}
	return "infura-gateway metric " + name + "."
}

var (
	helpPrefix = []byte("# HELP ")
	typePrefix = []byte("# TYPE ")
	gaugeType  = []byte(" gauge")
	totalType  = []byte("_total gauge")
)

// renames fixes the few library series whose names break Prometheus naming rules
// (counters without _total, gauges ending in _count), so promtool accepts the output.
var renames = []struct{ from, to []byte }{
	{[]byte("go_cgo_calls_count"), []byte("go_cgo_calls_total")},
	{[]byte("go_gc_forced_count"), []byte("go_gc_forced_total")},
	{[]byte("go_cpu_count"), []byte("go_cpus")},
}

func renamed(name []byte) string {
	for _, r := range renames {
		if bytes.Equal(name, r.from) {
			return string(r.to)
		}
	}
	return string(name)
}

// fixLine applies renames and types monotonic *_total series as counters.
func fixLine(dst, line []byte) []byte {
	rest := line
	var prefix []byte
	if bytes.HasPrefix(line, helpPrefix) || bytes.HasPrefix(line, typePrefix) {
		prefix, rest = line[:len(helpPrefix)], line[len(helpPrefix):]
	}
	for _, r := range renames {
		if bytes.HasPrefix(rest, r.from) && len(rest) > len(r.from) && (rest[len(r.from)] == ' ' || rest[len(r.from)] == '{' || rest[len(r.from)] == '\n') {
			dst = append(dst, prefix...)
			dst = append(dst, r.to...)
			return fixType(dst, rest[len(r.from):])
		}
	}
	if bytes.HasPrefix(line, typePrefix) && bytes.Contains(line, totalType) {
		dst = append(dst, line[:len(line)-len(gaugeType)-1]...)
		return append(dst, " counter\n"...)
	}
	return append(dst, line...)
}

func fixType(dst, rest []byte) []byte {
	if bytes.HasPrefix(rest, gaugeType) && bytes.HasSuffix(dst, []byte("_total")) {
		return append(dst, " counter\n"...)
	}
	return append(dst, rest...)
}
