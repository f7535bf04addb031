// Package gateway is the fasthttp front end: the route table (routes.go), the
// transports (rpc.go for POST /, rest.go, socket2socket*.go) and the request pipeline
// they share (pipeline.go: policy, cache, forwarding), readiness and metrics. Every call
// reaches the upstream through upstream.Pool over HTTP or upstream.Mux over shared
// websockets.
package gateway

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/gateway/access"
	"github.com/infura-gateway/infura-gateway/gateway/admin"
	"github.com/infura-gateway/infura-gateway/gateway/clientip"
	"github.com/infura-gateway/infura-gateway/gateway/config"
	"github.com/infura-gateway/infura-gateway/gateway/httpapi"
	"github.com/infura-gateway/infura-gateway/gateway/limit"
	"github.com/infura-gateway/infura-gateway/gateway/network"
	"github.com/infura-gateway/infura-gateway/gateway/pipeline"
	"github.com/infura-gateway/infura-gateway/gateway/redact"
	"github.com/infura-gateway/infura-gateway/gateway/redisconn"
	"github.com/infura-gateway/infura-gateway/gateway/sharedcache"
	"github.com/infura-gateway/infura-gateway/proto"
	"github.com/infura-gateway/infura-gateway/tracing"
	"github.com/infura-gateway/infura-gateway/upstream"
)

// Options are the parts of a Server that do not come from flags.
type Options struct {
	Logger  *slog.Logger
	Version string
	// Getenv resolves ${VAR} in the configuration file on reloads (default os.Getenv).
	Getenv func(string) string
}

// Server is one gateway instance. It owns its metrics (a Registry registered with the
// process-wide set while the Server lives), its upstream clients and its cache.
type Server struct {
	cfg     config.Config
	log     *slog.Logger
	version string
	reg     *upstream.Registry
	// answers bounds the upstream answer bytes held at once, every network together.
	answers *upstream.AnswerBudget
	// bodies bounds the request bodies being read from clients (bodybudget.go).
	bodies *bodyBudget
	conns  *clientip.Limiter // the public listener's client connections (connlimit.go)

	// The listeners Serve was given, closed by Shutdown itself: a Serve that starts as
	// Shutdown runs (fasthttp has not registered its listener yet) would otherwise
	// accept for ever. shut: Shutdown began; a later Serve returns at once.
	lnMu sync.Mutex
	lns  []net.Listener
	shut bool

	// nets are the networks (chains) served and how a request picks one; fronts, what
	// serves each (networks.go). pipe runs every transport's calls.
	nets   network.Set
	fronts atomic.Pointer[fronts]
	pipe   *pipeline.Pipeline
	httpH  *httpapi.Handlers

	// Keys and limits (access.go); Redis shares them and the immutable answers
	// (sharedcache) across replicas. redis, shared are nil without -redis-addr.
	acc     *access.Access
	limiter *limit.Limiter
	// budgetLocal meters each upstream budget's per-replica share while Redis is down.
	budgetLocal     *limit.Limiter
	budgetLocalErr  error
	budgetLocalOnce sync.Once
	redis           *redisconn.Conn
	shared          *sharedcache.Cache
	sharedRedis     *redisconn.Conn // the shared tier's own connection and breaker, apart from the limiter's (redis)
	proxyProtocol   bool            // fixed at start: it wraps the listener

	m struct {
		reloads        [2]*metrics.Counter // ok, refused
		unknownNetwork *metrics.Counter
	}
	handler     fasthttp.RequestHandler
	corsAllow   []byte   // -cors-origins "*", fixed at start; nil: see corsOrigins
	corsOrigins [][]byte // -cors-origins as a list of origins; both nil: CORS off
	srv         *fasthttp.Server
	adminAddr   string
	probe       *admin.Probe
	cordons     *admin.Cordons // nil without the admin listener
	inst        *admin.Instrumenter

	getenv   func(string) string
	reloadMu sync.Mutex
	fileSum  [32]byte
	// configInfo is the gateway_config_info series exported now (under reloadMu): the
	// fingerprint of the running configuration, replaced on a successful reload only.
	configInfo string

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
	closers  []func()
	tracer   *tracing.Tracer // nil: tracing off
}

// New builds a server from a validated Config. It starts background work (readiness
// probe, websocket connections) but does not listen; call Serve or ListenAndServe.
func New(cfg config.Config, opts Options) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Version == "" {
		opts.Version = "dev"
	}
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	s := &Server{
		cfg:     cfg,
		log:     opts.Logger,
		version: opts.Version,
		reg:     upstream.NewRegistry(),
		getenv:  opts.Getenv,
		stop:    make(chan struct{}),
		probe:   admin.NewProbe(opts.Version),
	}
	s.answers = upstream.NewAnswerBudget(int64(cfg.MaxAnswerBytes), s.reg)
	s.bodies = newBodyBudget(cfg.MaxBodyReadBytes, cfg.MaxRequestBody, s.reg)
	s.conns = newConnLimiter(cfg.MaxConns, cfg.MaxConnsPerIP, s.reg, s.log)
	dropLargeBodies()
	s.inst = admin.NewInstrumenter(s.reg, s.log, cfg.LogRequests, s.panicked)
	if err := s.startAccess(); err != nil {
		return nil, err
	}
	s.pipe = pipeline.New(&s.cfg, s.acc, s.answers)
	tcfg := s.cfg.TracingConfig(s.version)
	tcfg.Log = s.log
	tr, err := tracing.New(context.Background(), tcfg)
	if err != nil {
		s.closeAccess()
		return nil, err
	}
	s.tracer = tr
	s.pipe.SetTracer(tr)
	s.httpH = httpapi.New(s.acc, s.pipe, cfg.UpstreamTimeout)
	if err := s.startNetworks(); err != nil {
		s.closeAccess()
		return nil, err
	}
	s.registerMetrics()
	if cfg.AdminListen != "" {
		s.cordons = s.newCordons()
		l, err := admin.Listen(admin.Config{Addr: cfg.AdminListen, Pprof: cfg.Pprof, ReadTimeout: cfg.ReadTimeout,
			WriteTimeout: cfg.WriteTimeout, IdleTimeout: cfg.IdleTimeout, Log: s.log, Cordons: s.cordons,
			AcceptFailed: s.acceptFailed("admin")}, s.inst, s.reg, s.probe, &s.nets)
		if err != nil {
			s.closeNetworks()
			s.closeAccess()
			return nil, err
		}
		s.adminAddr = l.Addr
		s.closers = append(s.closers, l.Close)
	}
	for _, o := range cfg.CORSList() {
		if o == "*" {
			s.corsAllow = []byte(o)
		} else {
			s.corsOrigins = append(s.corsOrigins, []byte(o))
		}
	}
	s.handler = s.serve
	s.srv = &fasthttp.Server{
		Handler:               s.handler,
		Name:                  "infura-gateway",
		MaxRequestBodySize:    cfg.MaxRequestBody,
		HeaderReceived:        s.bodies.headerReceived,
		ExpectHandler:         s.expect,
		ReadTimeout:           cfg.ReadTimeout,
		WriteTimeout:          cfg.WriteTimeout,
		IdleTimeout:           cfg.IdleTimeout,
		ReadBufferSize:        8 << 10,
		Concurrency:           concurrency(cfg.MaxConns),
		NoDefaultServerHeader: true,
		NoDefaultDate:         true,
		// Header names are stored canonical ("x-api-key" as X-Api-Key): the handlers look
		// them up with PeekCanonical, which relies on it (TestHeaderNamesInAnyCase).
		DisableHeaderNamesNormalizing: false,
		CloseOnShutdown:               true,
		ErrorHandler:                  s.transportError,
		Logger:                        redact.Logger{L: s.log},
		// The websocket server takes hijacked connections over and closes them itself,
		// so fasthttp can free what it held for the upgrade request (socket/upgrade.go).
		KeepHijackedConns: true,
	}
	metrics.RegisterSet(s.reg.Set)
	// Networks start together: each waits (bounded) for its upstreams to prove their chain.
	var started sync.WaitGroup
	for _, n := range s.nets.List() {
		started.Add(1)
		go func() { defer started.Done(); n.Start() }()
	}
	started.Wait()
	if s.cordons != nil {
		// The fleet's cordons before the first request: a restarted replica starts cordoned.
		s.cordons.Start()
		s.closers = append(s.closers, s.cordons.Close)
	}
	if cfg.ConfigFile != "" {
		_, s.fileSum, _ = config.LoadFile(cfg, s.getenv) // the state the file is in now
	}
	s.setConfigInfo(cfg.Fingerprint(s.fileSum))
	if cfg.ConfigFile != "" {
		s.wg.Add(1)
		go s.watchConfigFile()
	}
	return s, nil
}

// serve is every request's way in, the server's wrappers folded into one function
// (not a closure per layer, each an indirect call on every request): CORS, then the
// request's network and its routes (serveNetwork), then Connection: close while
// draining.
func (s *Server) serve(ctx *fasthttp.RequestCtx) {
	if s.bodies.pending.Load() != 0 {
		s.bodies.done(&ctx.Request.Header) // its body is read
	}
	if s.corsAllow == nil && s.corsOrigins == nil || !s.cors(ctx) {
		s.serveNetwork(ctx)
	} else {
		s.countAnswered(ctx, true) // a preflight, answered by cors
	}
	s.closeWhenDraining(ctx)
}

// closeWhenDraining asks keep-alive clients to leave while the gateway drains: each
// answer carries Connection: close and fasthttp closes the connection after it, so the
// client reconnects (to a pod that stays) between requests rather than having its
// connection cut under a request when the listener closes. Not draining, it costs one
// atomic load. It runs after the request's handler: a handler that resets the answer
// cannot drop it. Not on a websocket upgrade: fasthttp would close the connection
// instead of handing it over (the socket server closes those clients with 1001 itself).
func (s *Server) closeWhenDraining(ctx *fasthttp.RequestCtx) {
	if s.probe.Draining() && !ctx.Hijacked() {
		ctx.SetConnectionClose()
	}
}

// setConfigInfo exports gateway_config_info with the fingerprint of the running
// configuration, and only that one: the label's values stay bounded to one series,
// and replicas that disagree show up as more than one hash across the fleet.
func (s *Server) setConfigInfo(hash string) {
	name := `gateway_config_info{hash="` + hash + `"}`
	if name == s.configInfo {
		return
	}
	if s.configInfo != "" {
		s.reg.Set.UnregisterMetric(s.configInfo)
	}
	s.reg.Gauge(name, "Fingerprint of the running configuration (file and flags); always 1. Replicas that disagree run different configurations.",
		func() float64 { return 1 })
	s.configInfo = name
}

// registerMetrics declares the server's own gauges.
func (s *Server) registerMetrics() {
	s.reg.Gauge(`gateway_build_info{version="`+s.version+`",goversion="`+runtime.Version()+`"}`,
		"Build version and Go version; always 1.", func() float64 { return 1 })
	s.reg.Gauge("gateway_ready", "1 when /readyz answers 200: serving, not draining.", func() float64 {
		if s.probe.Ready() {
			return 1
		}
		return 0
	})
	s.reg.Gauge("gateway_requests_in_flight", "Client requests being handled now (the admin listener's scrapes and probes not counted).",
		func() float64 { return float64(s.inst.InFlight()) })
	const reloadHelp = "Configuration file reloads, by result."
	s.m.reloads[0] = s.reg.Counter(`gateway_config_reloads_total{result="ok"}`, reloadHelp)
	s.m.reloads[1] = s.reg.Counter(`gateway_config_reloads_total{result="refused"}`, reloadHelp)
	s.m.unknownNetwork = s.reg.Counter("gateway_network_unknown_total",
		"Requests to a path naming no configured network (several networks served); answered 404, never forwarded.")
}

// acceptFailed counts, and logs at most every 10 s, the Accepts of a listener that
// found no descriptor or kernel memory free (clientip.Persistent waits and retries).
func (s *Server) acceptFailed(listener string) func(error) {
	c := s.reg.Counter(`gateway_accept_errors_total{listener="`+listener+`"}`,
		"Accepts that failed for want of file descriptors or kernel memory, retried; by listener (public, admin).")
	var last atomic.Int64
	return func(err error) {
		c.Inc()
		if now, l := time.Now().UnixNano(), last.Load(); now-l >= int64(10*time.Second) && last.CompareAndSwap(l, now) {
			s.log.Warn("accepting a connection failed, retrying", "listener", listener, "err", err)
		}
	}
}

// ReloadConfig reads the configuration file again and applies what can change while
// the gateway runs: the upstream list (connections of unchanged upstreams are kept,
// client connections are never dropped). An invalid file is refused with one log line
// and the running configuration stays. SIGHUP calls it; so does a change of the file.
func (s *Server) ReloadConfig() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	if s.cfg.ConfigFile == "" {
		s.log.Warn("reload asked, but no configuration file is in use (-config)")
		return errors.New("no configuration file to reload (-config)")
	}
	next, sum, err := config.LoadFile(s.cfg, s.getenv)
	if err == nil && next.ProxyProtocol != s.proxyProtocol {
		err = errors.New("clients.proxy_protocol changed: that takes a restart (it wraps the listener)")
	}
	if err == nil && config.SharedCacheChanged(&s.cfg, &next) {
		err = errors.New("shared_cache changed: that takes a restart")
	}
	if err == nil {
		err = s.reloadAccess(next) // first: it can still refuse; the router's reload is validated
	}
	if err == nil {
		err = s.reloadNetworks(&next)
	}
	if err != nil {
		s.m.reloads[1].Inc()
		s.log.Error("configuration not reloaded; the running one stays", "err", err)
		return err
	}
	s.fileSum = sum
	s.setConfigInfo(s.cfg.Fingerprint(sum))
	s.m.reloads[0].Inc()
	s.log.Info("configuration reloaded", "file", s.cfg.ConfigFile, "upstreams", len(next.UpstreamSpecs()),
		"keys", len(next.Keys.Keys))
	return nil
}

// watchConfigFile reloads the configuration file when its content changes. It polls:
// a Kubernetes ConfigMap update is a symlink swap that file notifications miss.
func (s *Server) watchConfigFile() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.ConfigPoll)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		data, err := os.ReadFile(s.cfg.ConfigFile)
		if err != nil {
			continue // a moment between the swap's two renames, or gone: the next tick sees
		}
		s.reloadMu.Lock()
		changed := sha256.Sum256(data) != s.fileSum
		s.reloadMu.Unlock()
		if changed {
			_ = s.ReloadConfig()
			s.reloadMu.Lock()
			s.fileSum = sha256.Sum256(data) // also a refused file: retried when it changes again
			s.reloadMu.Unlock()
		}
	}
}

// Handler returns the gateway's request handler (routes, CORS, metrics), for tests and
// embedding.
func (s *Server) Handler() fasthttp.RequestHandler { return s.handler }

// Serve answers requests on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	ln = clientip.Persistent(ln, s.acceptFailed("public"))
	if s.proxyProtocol {
		// Trusted load balancers may send a header (their clients' address) or not
		// (kubelet probes from the same network); anyone else is served as is. The list
		// is the resolver's, which a reload swaps: one list for both.
		pl, err := clientip.NewListener(ln, clientip.ListenerConfig{Shared: s.acc.Resolver()})
		if err != nil {
			return err
		}
		ln = pl
	}
	ln = s.conns.Listen(ln) // outermost: it counts by the address the PROXY header gives
	s.log.Info("serving", "addr", ln.Addr().String(), "version", s.version, "config", s.cfg)
	if s.cfg.SecretWithheld() && len(s.cfg.Networks) == 0 && len(s.cfg.Upstreams) == 0 {
		s.log.Warn("INFURA_PROJECT_SECRET is set but not sent: the upstream is not Infura over TLS (https or wss on infura.io); put another provider's credentials in its URL")
	}
	s.lnMu.Lock()
	if s.shut {
		s.lnMu.Unlock()
		return ln.Close()
	}
	s.lns = append(s.lns, ln)
	s.lnMu.Unlock()
	s.probe.SetServing()
	return s.srv.Serve(ln)
}

// AdminAddr returns the admin listener's address ("" when disabled).
func (s *Server) AdminAddr() string { return s.adminAddr }

// ListenAndServe listens on the configured address and serves until Shutdown.
func (s *Server) ListenAndServe() error {
	ln, err := net.Listen("tcp", s.cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w", s.cfg.ListenAddr, err)
	}
	return s.Serve(ln)
}

// Shutdown drains: /readyz turns 503 at once, websocket clients close as their calls
// in flight are answered, the listener closes after DrainDelay; websocket and HTTP calls
// in flight share ShutdownTimeout (or ctx), then the rest and the upstreams are closed.
func (s *Server) Shutdown(ctx context.Context) error {
	s.lnMu.Lock()
	s.shut = true
	s.lnMu.Unlock()
	// New websocket clients are refused before readiness says draining: one that saw
	// the drain begin must not be upgraded while the drain goroutine starts.
	for _, f := range s.frontList() {
		if f.sock != nil {
			f.sock.Refuse()
		}
	}
	s.probe.SetDraining()
	window := s.cfg.WSDrainWindow
	if window == 0 {
		window = s.cfg.DrainDelay
	}
	s.log.Info("draining", "drain_delay", s.cfg.DrainDelay, "ws_drain_window", window, "timeout", s.cfg.ShutdownTimeout)
	drained := make(chan struct{})
	go func() { // window 0 too: every client at once, each after its calls in flight
		defer close(drained)
		var wg sync.WaitGroup
		for _, f := range s.frontList() {
			if f.sock != nil {
				wg.Add(1)
				go func() { defer wg.Done(); f.sock.Drain(window, ctx.Done()) }()
			}
		}
		wg.Wait()
	}()
	wait := max(s.cfg.DrainDelay, window)
	if wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	tctx, cancel := context.WithTimeout(ctx, s.cfg.ShutdownTimeout)
	defer cancel()
	select {
	case <-drained:
	case <-tctx.Done():
	}
	err := s.srv.ShutdownWithContext(tctx)
	s.lnMu.Lock()
	for _, ln := range s.lns {
		_ = ln.Close() // fasthttp closed those it had registered; this ends one it had not
	}
	s.lnMu.Unlock()
	s.Close()
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("cannot shut down cleanly: %w", err)
	}
	return nil
}

// Close stops background work and upstream connections without draining.
func (s *Server) Close() {
	s.stopOnce.Do(func() {
		s.probe.SetDraining()
		close(s.stop)
		for i := len(s.closers) - 1; i >= 0; i-- {
			s.closers[i]()
		}
		s.wg.Wait()
		s.closeNetworks()
		s.closeAccess()
		// The spans still buffered go out; a collector that is down costs them, not the exit.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.tracer.Shutdown(ctx); err != nil {
			s.log.Warn("tracing: spans not flushed at exit", "err", err)
		}
		cancel()
		metrics.UnregisterSet(s.reg.Set, true)
	})
}

// closeNetworks closes every network's websocket clients and upstream connections.
func (s *Server) closeNetworks() {
	for _, f := range s.frontList() {
		f.close(nil)
	}
}

// transportError answers requests fasthttp could not parse (too large, malformed) with JSON.
func (s *Server) transportError(ctx *fasthttp.RequestCtx, err error) {
	refused := s.bodies.pending.Load() != 0 && s.bodies.done(&ctx.Request.Header)
	switch {
	case refused && errors.Is(err, fasthttp.ErrBodyTooLarge):
		pipeline.WriteError(ctx, nil, errBodyBudget)
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		pipeline.WriteError(ctx, nil, proto.ErrBodyTooLarge)
	case errors.As(err, new(*fasthttp.ErrSmallBuffer)):
		pipeline.WriteError(ctx, nil, errHeaderTooLarge)
	case isTimeout(err):
		pipeline.WriteError(ctx, nil, errRequestTimeout)
	default:
		pipeline.WriteError(ctx, nil, proto.NewError(proto.CodeInvalidRequest, fasthttp.StatusBadRequest, "malformed HTTP request"))
	}
	s.countAnswered(ctx, false)
}

// isTimeout reports whether err is a read that ran out of time (-read-timeout).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// errRequestTimeout answers a request not read whole within -read-timeout (a client
// sending its header or body too slowly).
var errRequestTimeout = proto.NewError(proto.CodeInvalidRequest, fasthttp.StatusRequestTimeout,
	"request timeout: the request was not read whole within the read timeout")

// errHeaderTooLarge answers a request whose header does not fit the read buffer.
var errHeaderTooLarge = proto.NewError(proto.CodeInvalidRequest, fasthttp.StatusRequestHeaderFieldsTooLarge,
	"request header too large")

// Ready reports whether the gateway should receive traffic: serving, not draining.
func (s *Server) Ready() bool { return s.probe.Ready() }

// newCordons makes the admin cordon endpoints' state: fleet-wide in the limiter's
// Redis when there is one, named after this replica (its host name: the pod's).
func (s *Server) newCordons() *admin.Cordons {
	host, _ := os.Hostname()
	return admin.NewCordons(admin.CordonConfig{Token: s.cfg.AdminToken, Redis: s.redis, Replica: host, Log: s.log}, &s.nets)
}
