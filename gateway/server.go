// Package gateway is the fasthttp front end: routes, REST validation, JSON-RPC
// passthrough, limits, readiness and metrics. The route table is in routes.go; every
// route forwards through an upstream caller (upstream.Pool over HTTP or upstream.Mux
// over shared websockets).
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/proto"
	"github.com/infura-gateway/infura-gateway/upstream"
)

// caller is what a route forwards to: the HTTP pool or the websocket mux. Do sends a
// JSON-RPC request or batch and puts the upstream's answer, ids as the client sent them,
// into resp's body; errors are *proto.Error values.
type caller interface {
	Do(m upstream.Method, body []byte, resp *fasthttp.Response, deadline time.Time) error
}

// Options are the parts of a Server that do not come from flags.
type Options struct {
	Logger  *slog.Logger
	Version string
}

// Server is one gateway instance.
type Server struct {
	cfg     Config
	log     *slog.Logger
	version string

	pool *upstream.Pool
	mux  *upstream.Mux  // nil when no websocket upstream is configured
	ws   caller         // the Mux, or wsDisabled
	s2s  *Socket2Socket // nil when no websocket upstream is configured
	deny denyList

	heads heads
	cache *cache // nil when disabled

	handler  fasthttp.RequestHandler
	srv      *fasthttp.Server
	draining atomic.Bool

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
	closers  []func()
}

// New builds a server from a validated Config. It starts background work (readiness
// probe, websocket connections) but does not listen; call Serve or ListenAndServe.
func New(cfg Config, opts Options) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Version == "" {
		opts.Version = "dev"
	}
	registerBuildInfo(opts.Version)
	pool, err := upstream.NewPool(upstream.PoolConfig{
		URL:                 cfg.UpstreamHTTPURL,
		User:                cfg.UpstreamUser,
		Password:            cfg.UpstreamSecret,
		MaxConns:            cfg.UpstreamMaxConns,
		MaxConnWaitTimeout:  cfg.UpstreamTimeout,
		MaxResponseBodySize: cfg.MaxResponseBody,
		DialTimeout:         min(cfg.UpstreamTimeout, 3*time.Second),
	})
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:     cfg,
		log:     opts.Logger,
		version: opts.Version,
		pool:    pool,
		ws:      wsDisabled{},
		deny:    newDenyList(cfg.DenyMethods),
		stop:    make(chan struct{}),
	}
	if err := s.startWebsocket(); err != nil {
		return nil, err
	}
	if err := s.startPprof(); err != nil {
		s.Close()
		return nil, fmt.Errorf("cannot serve pprof: %w", err)
	}
	if cfg.CacheEnabled {
		s.cache = newCache(cfg, &s.heads)
		s.closers = append(s.closers, s.cache.close)
	}
	s.handler = s.withCORS(s.routes().Handler)
	s.srv = &fasthttp.Server{
		Handler:                       s.handler,
		Name:                          "infura-gateway",
		MaxRequestBodySize:            cfg.MaxRequestBody,
		ReadTimeout:                   cfg.ReadTimeout,
		WriteTimeout:                  cfg.WriteTimeout,
		IdleTimeout:                   cfg.IdleTimeout,
		ReadBufferSize:                8 << 10,
		NoDefaultServerHeader:         true,
		NoDefaultDate:                 true,
		DisableHeaderNamesNormalizing: false,
		CloseOnShutdown:               true,
		ErrorHandler:                  s.transportError,
		Logger:                        fasthttpLogger{s.log},
	}
	readyGaugeOnce.Do(registerReadyGauge)
	current.Store(s)
	s.wg.Add(2)
	go s.probeLoop()
	go s.trackHeads()
	return s, nil
}

// Handler returns the gateway's request handler (routes, CORS, metrics), for tests and
// embedding.
func (s *Server) Handler() fasthttp.RequestHandler { return s.handler }

// Serve answers requests on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.log.Info("serving", "addr", ln.Addr().String(), "version", s.version, "config", s.cfg)
	return s.srv.Serve(ln)
}

// ListenAndServe listens on the configured address and serves until Shutdown.
func (s *Server) ListenAndServe() error {
	ln, err := net.Listen("tcp", s.cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w", s.cfg.ListenAddr, err)
	}
	return s.Serve(ln)
}

// Shutdown drains: /readyz turns 503 at once, the listener closes after DrainDelay,
// in-flight requests get until ctx ends (or ShutdownTimeout), then websocket clients
// and upstream connections are closed.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	s.log.Info("draining", "drain_delay", s.cfg.DrainDelay, "timeout", s.cfg.ShutdownTimeout)
	if s.cfg.DrainDelay > 0 {
		t := time.NewTimer(s.cfg.DrainDelay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ShutdownTimeout)
	defer cancel()
	err := s.srv.ShutdownWithContext(ctx)
	s.Close()
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("cannot shut down cleanly: %w", err)
	}
	return nil
}

// Close stops background work and upstream connections without draining.
func (s *Server) Close() {
	s.stopOnce.Do(func() {
		s.draining.Store(true)
		close(s.stop)
		for i := len(s.closers) - 1; i >= 0; i-- {
			s.closers[i]()
		}
		s.wg.Wait()
		s.pool.Close()
		current.CompareAndSwap(s, nil)
	})
}

// transportError answers requests fasthttp could not parse (too large, malformed) with JSON.
func (s *Server) transportError(ctx *fasthttp.RequestCtx, err error) {
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		writeError(ctx, nil, proto.ErrBodyTooLarge)
	default:
		writeError(ctx, nil, proto.NewError(proto.CodeInvalidRequest, fasthttp.StatusBadRequest, "malformed HTTP request"))
	}
}

// wsDisabled answers the /ws routes when no websocket upstream is configured.
type wsDisabled struct{}

var errWSDisabled = proto.NewError(proto.CodeServer, fasthttp.StatusServiceUnavailable,
	"websocket upstream disabled (-upstream-ws off)")

func (wsDisabled) Do(upstream.Method, []byte, *fasthttp.Response, time.Time) error {
	return errWSDisabled
}

type fasthttpLogger struct{ l *slog.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) {
	f.l.Debug("fasthttp", "msg", fmt.Sprintf(format, args...))
}
