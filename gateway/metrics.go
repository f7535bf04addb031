package gateway

import (
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"
)

// Route metrics are created once per route at start and kept in the route's handler,
// so a request costs atomic increments and one histogram update, nothing looked up.

// statusCodes are the codes the gateway answers with; any other lands in "other".
var statusCodes = [...]int{200, 204, 400, 404, 405, 413, 415, 429, 500, 502, 503, 504}

type routeMetrics struct {
	codes    [len(statusCodes) + 1]*metrics.Counter
	duration *metrics.PrometheusHistogram
}

// Request latency buckets: 100 µs to ~13 s. Cache hits answer in microseconds.
var requestBuckets = metrics.ExponentialBuckets(0.0001, 2, 18)

var (
	inFlight       atomic.Int64
	routeRegistry  = map[string]*routeMetrics{}
	buildInfoOnce  sync.Once
	readyGaugeOnce sync.Once
)

func init() {
	metrics.NewGauge("gateway_requests_in_flight", func() float64 { return float64(inFlight.Load()) })
}

// registerBuildInfo exports gateway_build_info once; the version comes from main's ldflags.
func registerBuildInfo(version string) {
	buildInfoOnce.Do(func() {
		metrics.NewGauge(`gateway_build_info{version="`+version+`",goversion="`+runtime.Version()+`"}`, func() float64 { return 1 })
	})
}

// newRouteMetrics returns the metrics of a route label, creating them once.
func newRouteMetrics(route string) *routeMetrics {
	if rm, ok := routeRegistry[route]; ok {
		return rm
	}
	rm := &routeMetrics{
		duration: metrics.NewPrometheusHistogramExt(`gateway_request_duration_seconds{route="`+route+`"}`, requestBuckets),
	}
	for i, code := range statusCodes {
		rm.codes[i] = metrics.NewCounter(`gateway_requests_total{route="` + route + `",code="` + strconv.Itoa(code) + `"}`)
	}
	rm.codes[len(statusCodes)] = metrics.NewCounter(`gateway_requests_total{route="` + route + `",code="other"}`)
	routeRegistry[route] = rm
	return rm
}

func (rm *routeMetrics) observe(code int, start time.Time) {
	i := len(statusCodes)
	for j, c := range statusCodes {
		if c == code {
			i = j
			break
		}
	}
	rm.codes[i].Inc()
	rm.duration.Update(time.Since(start).Seconds())
}

// instrument wraps a route's handler with its metrics, and with a log line per request
// when -log-requests is on. It runs once per route at start.
func (s *Server) instrument(route string, h fasthttp.RequestHandler) fasthttp.RequestHandler {
	rm := newRouteMetrics(route)
	if s.cfg.LogRequests {
		return func(ctx *fasthttp.RequestCtx) {
			start := ctx.Time()
			inFlight.Add(1)
			h(ctx)
			inFlight.Add(-1)
			code := ctx.Response.StatusCode()
			rm.observe(code, start)
			s.log.Info("request", "route", route, "method", string(ctx.Method()), "path", string(ctx.Path()),
				"status", code, "duration", time.Since(start), "remote", ctx.RemoteIP().String(),
				"cache", string(ctx.Response.Header.Peek("X-Cache")))
		}
	}
	return func(ctx *fasthttp.RequestCtx) {
		start := ctx.Time()
		inFlight.Add(1)
		h(ctx)
		inFlight.Add(-1)
		rm.observe(ctx.Response.StatusCode(), start)
	}
}
