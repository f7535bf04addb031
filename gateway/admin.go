package gateway

import (
	"fmt"
	"net"
	"net/http/pprof"
	runtimepprof "runtime/pprof"

	"github.com/fasthttp/router"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/infura-gateway/infura-gateway/gateway/pipeline"
	"github.com/infura-gateway/infura-gateway/proto"
)

// The admin listener serves what operators and Prometheus need and clients must never
// reach: /metrics, /status, /health and /readyz again (for probes that cannot reach the
// public port) and, with -pprof, Go's profiler. It stays up while the public listener
// drains, so the last scrapes of a terminating pod still land.
func (s *Server) startAdmin() error {
	if s.cfg.AdminListen == "" {
		return nil
	}
	ln, err := net.Listen("tcp", s.cfg.AdminListen)
	if err != nil {
		return fmt.Errorf("cannot listen on the admin address %s: %w", s.cfg.AdminListen, err)
	}
	r := router.New()
	r.GET("/metrics", s.instrument("metrics", s.metricsHandler))
	r.GET("/status", s.instrument("status", s.status))
	// Probes may use HEAD, as on the public listener.
	health, readyz := s.instrument("admin_health", s.health), s.instrument("admin_readyz", s.readyz)
	r.GET("/health", health)
	r.HEAD("/health", health)
	r.GET("/readyz", readyz)
	r.HEAD("/readyz", readyz)
	if s.cfg.Pprof {
		index := fasthttpadaptor.NewFastHTTPHandlerFunc(pprof.Index)
		// No cmdline: the command line holds the flags, and a flag may hold a secret.
		named := map[string]fasthttp.RequestHandler{
			"profile": fasthttpadaptor.NewFastHTTPHandlerFunc(pprof.Profile),
			"symbol":  fasthttpadaptor.NewFastHTTPHandlerFunc(pprof.Symbol),
			"trace":   fasthttpadaptor.NewFastHTTPHandlerFunc(pprof.Trace),
		}
		r.GET("/debug/pprof/{name:*}", func(ctx *fasthttp.RequestCtx) {
			name := fmt.Sprint(ctx.UserValue("name"))
			if h := named[name]; h != nil {
				h(ctx)
				return
			}
			if name != "" && runtimepprof.Lookup(name) == nil {
				pipeline.WriteError(ctx, nil, errNoProfile) // cmdline among them
				return
			}
			index(ctx) // the list, and every named profile (heap, goroutine, ...)
		})
	}
	r.NotFound = func(ctx *fasthttp.RequestCtx) { pipeline.WriteError(ctx, nil, errNotOnAdmin) }
	srv := &fasthttp.Server{Handler: r.Handler, Name: "infura-gateway-admin", NoDefaultServerHeader: true,
		ReadTimeout: s.cfg.ReadTimeout, WriteTimeout: s.cfg.WriteTimeout, IdleTimeout: s.cfg.IdleTimeout,
		Logger: fasthttpLogger{s.log}}
	s.adminAddr = ln.Addr().String()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := srv.Serve(ln); err != nil {
			s.log.Error("admin listener stopped", "err", err)
		}
	}()
	s.closers = append(s.closers, func() { _ = srv.Shutdown() })
	s.log.Info("admin listening", "addr", s.adminAddr, "pprof", s.cfg.Pprof)
	return nil
}

var errNoProfile = proto.NewError(proto.CodeMethodNotFound, fasthttp.StatusNotFound,
	"no such profile (the list is at /debug/pprof/)")

var errNotOnAdmin = proto.NewError(proto.CodeMethodNotFound, fasthttp.StatusNotFound,
	"no such route on the admin listener (/metrics, /status, /health, /readyz, /debug/pprof/)")
