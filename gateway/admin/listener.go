package admin

import (
	"fmt"
	"log/slog"
	"net"
	"net/http/pprof"
	runtimepprof "runtime/pprof"
	"sync/atomic"
	"time"

	"github.com/fasthttp/router"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/infura-gateway/infura-gateway/gateway/clientip"
	"github.com/infura-gateway/infura-gateway/gateway/network"
	"github.com/infura-gateway/infura-gateway/gateway/pipeline"
	"github.com/infura-gateway/infura-gateway/gateway/redact"
	"github.com/infura-gateway/infura-gateway/proto"
	"github.com/infura-gateway/infura-gateway/upstream"
)

// The admin listener serves what operators and Prometheus need and clients must never
// reach: /metrics, /status, /health and /readyz again (for probes that cannot reach the
// public port) and, with -pprof, Go's profiler. It stays up while the public listener
// drains, so the last scrapes of a terminating pod still land.
//
// Listen starts it on cfg.Addr; Close ends it.
func Listen(cfg Config, inst *Instrumenter, reg *upstream.Registry, probe *Probe, nets *network.Set) (*Listener, error) {
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("cannot listen on the admin address %s: %w", cfg.Addr, err)
	}
	r := router.New()
	inst = inst.Operator()
	r.GET("/metrics", inst.Wrap("metrics", MetricsHandler(reg)))
	r.GET("/status", inst.Wrap("status", StatusHandler(probe, nets)))
	if cfg.Cordons != nil {
		cfg.Cordons.routes(r)
	}
	// Probes may use HEAD, as on the public listener.
	health, readyz := inst.Wrap("admin_health", probe.Health), inst.Wrap("admin_readyz", probe.Readyz)
	r.GET("/health", health)
	r.HEAD("/health", health)
	r.GET("/readyz", readyz)
	r.HEAD("/readyz", readyz)
	if cfg.Pprof {
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
	// In JSON like every other answer (the router's own is plain text); Allow is set.
	r.MethodNotAllowed = func(ctx *fasthttp.RequestCtx) { pipeline.WriteError(ctx, nil, proto.ErrMethodNotAllowed) }
	srv := &fasthttp.Server{Handler: r.Handler, Name: "infura-gateway-admin", NoDefaultServerHeader: true,
		ReadTimeout: cfg.ReadTimeout, WriteTimeout: cfg.WriteTimeout, IdleTimeout: cfg.IdleTimeout,
		Logger: redact.Logger{L: cfg.Log}}
	l := &Listener{Addr: ln.Addr().String(), srv: srv, ln: ln, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		// Out of descriptors, the probes and scrapes wait rather than end for good.
		if err := srv.Serve(clientip.Persistent(ln, cfg.AcceptFailed)); err != nil && !l.closing.Load() {
			cfg.Log.Error("admin listener stopped", "err", err)
		}
	}()
	cfg.Log.Info("admin listening", "addr", l.Addr, "pprof", cfg.Pprof)
	return l, nil
}

// Config is the admin listener's: its address, pprof, timeouts, logger.
type Config struct {
	Addr  string
	Pprof bool
	// Cordons serves POST /admin/cordon, /admin/uncordon, /admin/drain (cordon.go).
	Cordons                                *Cordons
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	Log                                    *slog.Logger
	// AcceptFailed is told of each Accept that found no descriptor free (retried).
	AcceptFailed func(error)
}

// Listener is a running admin listener.
type Listener struct {
	Addr    string // the address it listens on
	srv     *fasthttp.Server
	ln      net.Listener
	closing atomic.Bool
	done    chan struct{}
}

// Close stops the listener and waits for its server to end.
func (l *Listener) Close() {
	l.closing.Store(true)
	_ = l.srv.Shutdown()
	// fasthttp closes the listeners Serve has registered; one closed before its
	// goroutine got that far would accept for ever.
	_ = l.ln.Close()
	<-l.done
}

var errNoProfile = proto.NewError(proto.CodeMethodNotFound, fasthttp.StatusNotFound,
	"no such profile (the list is at /debug/pprof/)")

var errNotOnAdmin = proto.NewError(proto.CodeMethodNotFound, fasthttp.StatusNotFound,
	"no such route on the admin listener (/metrics, /status, /health, /readyz, /debug/pprof/, POST /admin/cordon, /admin/uncordon, /admin/drain)")
