// Package redisconn owns the gateway's connection to Redis and decides, without waiting,
// whether Redis may be used at all.
//
// A Conn wraps one rueidis client (auto-pipelined: concurrent calls share a few TCP
// connections and their writes are batched, so many small calls cost few syscalls) with:
//   - a deadline on every call (CallTimeout, 50 ms by default), so nothing that a request
//     could wait on can take longer (EvalMultiWithin lets a background caller nobody
//     waits on, the limiter's leases, give its calls a longer one);
//   - a circuit breaker: after FailureThreshold consecutive failures (network errors,
//     deadlines or READONLY; not other Redis error replies) the Conn is down, every call
//     fails at once with ErrDown without touching the network, and one background
//     goroutine probes Redis every ProbeInterval until it answers again; then the Conn is
//     up by itself;
//   - a Redis up/down gauge and call/error/breaker counters in the caller's metrics set;
//   - failover: a READONLY error reply (the node the client is connected to became a
//     replica, as after an ElastiCache failover, while the endpoint's DNS name now points
//     at the new primary) counts as a failure, and the probe goroutine replaces the rueidis
//     client with a fresh one dialled to Addr (at most once per ProbeInterval), counted in
//     gateway_redis_readonly_reconnects_total. Without that the client's connection stays
//     on the replica for as long as it lives, and every write fails.
//
// New never fails because Redis is unreachable: a gateway starts while Redis is down and
// the Conn comes up when Redis does. The password is handed to the client and never
// appears in an error, a log line or a metric.
//
// Ownership: the Conn owns the client and the probe goroutine; Close ends both and waits.
// Callers (gateway/limit, gateway/sharedcache) may share one Conn, but the gateway gives
// each its own (Name "redis" and "cache"): one breaker per user, so the cache's large
// values and timeouts never change limiting. Each subscribes to up/down transitions
// through Watch.
package redisconn

import (
	"context"
	"crypto/sha1"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/redis/rueidis"
)

// ErrDown is returned, without any network call, while the circuit breaker is open;
// when the last probe knew why (the credentials refused, a password missing), the error
// says so and still matches ErrDown (errors.Is).
var ErrDown = errors.New("redis is down (circuit breaker open)")

// Why the probes fail, when Redis itself says: the operator's fix is in the message. Never
// anything the gateway sent (the password) is quoted.
var (
	ErrAuth   = errors.New("redis refused the credentials: check REDIS_USERNAME and REDIS_PASSWORD")
	ErrNoAuth = errors.New("redis requires a password: set REDIS_PASSWORD (and REDIS_USERNAME for an ACL user)")
)

// downError is ErrDown with the reason the last probe gave.
type downError struct{ cause error }

func (e *downError) Error() string        { return ErrDown.Error() + ": " + e.cause.Error() }
func (e *downError) Is(target error) bool { return target == ErrDown || errors.Is(e.cause, target) }

// downErr is the error of a call while the breaker is open.
func (c *Conn) downErr() error {
	if e := c.why.Load(); e != nil {
		return e
	}
	return ErrDown
}

// Config configures a Conn. The zero value of every field but Addr is a working default.
type Config struct {
	// Addr is host:port of a standalone Redis (or a proxy in front of one).
	Addr string
	// Username and Password for AUTH; the password is never logged nor put in errors.
	Username string
	Password string
	// DB is the database number (SELECT).
	DB int
	// Name labels this Conn's metrics (client="NAME"); default "redis". Not a secret.
	Name string
	// TLS, when set, is used for every connection (ElastiCache with encryption in
	// transit); ServerName defaults to Addr's host.
	TLS *tls.Config

	// CallTimeout is the deadline of every call; default 50ms.
	CallTimeout time.Duration
	// DialTimeout bounds a TCP connect and handshake; default 500ms.
	DialTimeout time.Duration
	// ConnTimeout is how long a connection may go without an answer to a pending command
	// or to the client's keep-alive PING before it is closed and redialled (rueidis
	// ConnWriteTimeout; the PING goes after ConnTimeout of silence); default 500ms. A
	// frozen Redis keeps a connection, and the calls that were under way on it, for at
	// most about twice this long.
	ConnTimeout time.Duration
	// FailureThreshold consecutive failures open the breaker; default 3.
	FailureThreshold int
	// ProbeInterval is the pause between probes while the breaker is open; default 250ms,
	// so a returning Redis is used again well within a second.
	ProbeInterval time.Duration
	// Log, when set, hears each time the breaker opens or closes, and Redis unreachable
	// at start: an operator reading the logs learns that limits went on their fallback
	// (or the shared cache tier off) without a metric to look at. Nil: not logged.
	Log *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Name == "" {
		c.Name = "redis"
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = 50 * time.Millisecond
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 500 * time.Millisecond
	}
	if c.ConnTimeout <= 0 {
		c.ConnTimeout = 500 * time.Millisecond
	}
	if c.FailureThreshold <= 0 {
		c.FailureThreshold = 3
	}
	if c.ProbeInterval <= 0 {
		c.ProbeInterval = 250 * time.Millisecond
	}
}

// Conn is a Redis client behind a circuit breaker. Safe for concurrent use.
type Conn struct {
	cfg Config
	opt rueidis.ClientOption
	// client is the current rueidis client; replaced (never nil) after a READONLY reply.
	client atomic.Pointer[rueidis.Client]

	readonly atomic.Bool // a READONLY reply since the last redial: the probe redials

	up    atomic.Bool
	fails atomic.Int32
	why   atomic.Pointer[downError] // the last probe's known reason (ErrAuth, ...); nil: none

	mu    sync.Mutex
	watch chan struct{} // closed and replaced on every up/down transition

	probe  chan struct{} // wakes the probe goroutine when the breaker opens
	stop   chan struct{}
	closed sync.Once
	wg     sync.WaitGroup

	calls, errs, opens, closes, readonlyReconnects *metrics.Counter
}

// errReadOnly is what the breaker is told about a READONLY reply: a connection-level
// failure (the client is on a replica), not an answer.
var errReadOnly = errors.New("redis answered READONLY: connected to a replica")

func (c *Conn) cl() rueidis.Client { return *c.client.Load() }

// isReadOnly reports whether r is Redis's READONLY error reply. It allocates only for an
// error reply.
func isReadOnly(r rueidis.RedisResult) bool {
	if r.NonRedisError() != nil {
		return false
	}
	re, ok := rueidis.IsRedisErr(r.Error())
	return ok && strings.HasPrefix(re.Error(), "READONLY")
}

// New creates the client and starts the probe goroutine. It returns an error only for a
// bad configuration; an unreachable Redis leaves the Conn down until Redis answers.
// Metrics go to ms (required).
func New(cfg Config, ms *metrics.Set) (*Conn, error) {
	cfg.setDefaults()
	if ms == nil {
		return nil, errors.New("redisconn: a metrics set is required")
	}
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		return nil, fmt.Errorf("redisconn: bad address %q: %w", cfg.Addr, err)
	}
	if strings.ContainsAny(cfg.Name, `"{}\`) {
		return nil, fmt.Errorf("redisconn: bad name %q", cfg.Name)
	}
	opt := rueidis.ClientOption{
		InitAddress:       []string{cfg.Addr},
		Username:          cfg.Username,
		Password:          cfg.Password,
		SelectDB:          cfg.DB,
		ForceSingleClient: true, // returns a client even when the first dial fails
		DisableCache:      true, // no client-side caching: no CLIENT TRACKING, no invalidations
		DisableRetry:      true, // our deadline is the whole budget; the breaker decides
		PipelineMultiplex: -1,   // one auto-pipelined connection (0 means rueidis's default, 2 here): what the probe pings is what calls use
		ConnWriteTimeout:  cfg.ConnTimeout,
		Dialer:            net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: cfg.ConnTimeout},
		// Small buffers: values are bounded by their users (sharedcache caps them).
		ReadBufferEachConn:  64 << 10,
		WriteBufferEachConn: 64 << 10,
	}
	if cfg.TLS != nil {
		cfg.TLS = cfg.TLS.Clone()
		if cfg.TLS.ServerName == "" {
			cfg.TLS.ServerName, _, _ = net.SplitHostPort(cfg.Addr)
		}
		opt.TLSConfig = cfg.TLS
	}
	if slices.Contains(ms.ListMetricNames(), `gateway_redis_up{client="`+cfg.Name+`"}`) {
		return nil, fmt.Errorf("redisconn: a Conn named %q already reports to this metrics set", cfg.Name)
	}
	client, err := rueidis.NewClient(opt)
	if client == nil {
		// Only configuration errors get here (ForceSingleClient); never echo the options.
		return nil, fmt.Errorf("redisconn: cannot create a client for %s: %w", cfg.Addr, err)
	}
	c := &Conn{
		cfg:                cfg,
		opt:                opt,
		watch:              make(chan struct{}),
		probe:              make(chan struct{}, 1),
		stop:               make(chan struct{}),
		calls:              ms.GetOrCreateCounter(`gateway_redis_calls_total{client="` + cfg.Name + `"}`),
		errs:               ms.GetOrCreateCounter(`gateway_redis_errors_total{client="` + cfg.Name + `"}`),
		opens:              ms.GetOrCreateCounter(`gateway_redis_breaker_opened_total{client="` + cfg.Name + `"}`),
		closes:             ms.GetOrCreateCounter(`gateway_redis_breaker_closed_total{client="` + cfg.Name + `"}`),
		readonlyReconnects: ms.GetOrCreateCounter(`gateway_redis_readonly_reconnects_total{client="` + cfg.Name + `"}`),
	}
	c.client.Store(&client)
	ms.GetOrCreateGauge(`gateway_redis_up{client="`+cfg.Name+`"}`, func() float64 {
		if c.up.Load() {
			return 1
		}
		return 0
	})
	c.up.Store(err == nil)
	c.wg.Add(1)
	go c.probeLoop()
	if err != nil {
		if cfg.Log != nil {
			cfg.Log.Warn("redis unreachable at start: circuit breaker open", "client", cfg.Name, "error", err.Error())
		}
		c.kick()
	}
	return c, nil
}

// Up reports whether Redis may be called: one atomic load, never a wait.
func (c *Conn) Up() bool { return c.up.Load() }

// Clean reports whether Redis is up and nothing failed since the last answer. Calls a
// request waits on go to Redis only then: after a failure (a frozen Redis, a broken
// connection) the client redials, and a request would wait for that dial, whatever its
// deadline, behind whoever started it. The probe, or any later answer, makes the Conn
// clean again; more failures open the breaker.
func (c *Conn) Clean() bool { return c.up.Load() && c.fails.Load() == 0 }

// Watch returns a channel that is closed at the next up/down transition (or Close).
// Call it again after it fires to keep watching.
func (c *Conn) Watch() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.watch
}

// CallTimeout is the deadline every call gets.
func (c *Conn) CallTimeout() time.Duration { return c.cfg.CallTimeout }

// B returns a command builder. Commands built from it must be passed to Do or DoMulti.
func (c *Conn) B() rueidis.Builder { return c.cl().B() }

// Do runs one command with the Conn's deadline (or ctx's, if sooner). While the breaker is
// open it returns ErrDown at once.
func (c *Conn) Do(ctx context.Context, cmd rueidis.Completed) rueidis.RedisResult {
	return c.DoWithin(ctx, c.cfg.CallTimeout, cmd)
}

// DoWithin is Do with a deadline of d (at most CallTimeout) from now: for a caller that
// shares one budget among several calls. Missing it counts against Redis, as Do's does.
func (c *Conn) DoWithin(ctx context.Context, d time.Duration, cmd rueidis.Completed) rueidis.RedisResult {
	if !c.up.Load() {
		return rueidis.NewErrorResult(c.downErr())
	}
	if d <= 0 {
		return rueidis.NewErrorResult(context.DeadlineExceeded)
	}
	cctx, cancel := context.WithTimeout(ctx, min(d, c.cfg.CallTimeout))
	defer cancel()
	c.calls.Inc()
	r := c.cl().Do(cctx, cmd)
	err := r.NonRedisError()
	if err == nil && isReadOnly(r) {
		err = c.readOnly()
	}
	c.report(ctx, err)
	return r
}

// DoMulti pipelines cmds in one round trip with the Conn's deadline. While the breaker is
// open every result is ErrDown and nothing is sent.
func (c *Conn) DoMulti(ctx context.Context, cmds ...rueidis.Completed) []rueidis.RedisResult {
	return c.DoMultiWithin(ctx, c.cfg.CallTimeout, cmds...)
}

// DoMultiWithin is DoMulti with a deadline of d (at most CallTimeout) from now.
func (c *Conn) DoMultiWithin(ctx context.Context, d time.Duration, cmds ...rueidis.Completed) []rueidis.RedisResult {
	return c.doMulti(ctx, min(d, c.cfg.CallTimeout), cmds...)
}

// doMulti is DoMulti with a deadline of d from now, whatever CallTimeout says.
func (c *Conn) doMulti(ctx context.Context, d time.Duration, cmds ...rueidis.Completed) []rueidis.RedisResult {
	if len(cmds) == 0 {
		return nil
	}
	if !c.up.Load() || d <= 0 {
		err := c.downErr()
		if d <= 0 {
			err = context.DeadlineExceeded
		}
		out := make([]rueidis.RedisResult, len(cmds))
		for i := range out {
			out[i] = rueidis.NewErrorResult(err)
		}
		return out
	}
	cctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	c.calls.Inc()
	rs := c.cl().DoMulti(cctx, cmds...)
	var err error
	for _, r := range rs {
		if e := r.NonRedisError(); e != nil {
			err = e
			break
		}
		if isReadOnly(r) {
			err = c.readOnly()
			break
		}
	}
	c.report(ctx, err)
	return rs
}

// Ping sends PING through the client, bypassing the breaker, with CallTimeout.
func (c *Conn) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	c.calls.Inc()
	cl := c.cl()
	err := cl.Do(ctx, cl.B().Ping().Build()).Error()
	if err != nil {
		c.errs.Inc()
		return fmt.Errorf("redis %s: ping: %w", c.cfg.Addr, err)
	}
	return nil
}

// Close stops the probe goroutine and closes the client; pending calls end with an error.
func (c *Conn) Close() {
	c.closed.Do(func() {
		close(c.stop)
		c.wg.Wait()
		c.cl().Close()
		c.mu.Lock()
		close(c.watch)
		c.watch = make(chan struct{})
		c.mu.Unlock()
	})
}

// Script is a Lua script run with EVALSHA, loaded again after NOSCRIPT (a restarted Redis
// has an empty script cache).
type Script struct {
	src string
	sha string
}

// NewScript prepares src; nothing is sent until it runs.
func NewScript(src string) *Script {
	sum := sha1.Sum([]byte(src))
	return &Script{src: src, sha: hex.EncodeToString(sum[:])}
}

// Exec is one run of a Script.
type Exec struct {
	Keys []string
	Args []string
}

// EvalMulti runs s once per exec in one pipelined round trip. After a NOSCRIPT answer it
// loads the script and runs the affected execs again (one more round trip, only after a
// Redis restart).
func (c *Conn) EvalMulti(ctx context.Context, s *Script, execs []Exec) []rueidis.RedisResult {
	return c.EvalMultiWithin(ctx, c.cfg.CallTimeout, s, execs)
}

// EvalMultiWithin is EvalMulti with a deadline of d from now for each round trip, which
// may be longer than CallTimeout: for background callers no request waits on (the
// limiter's leases), to whom an answer made late by a saturated CPU is still an answer,
// not a failure that opens the breaker. Missing d counts against Redis, as usual.
func (c *Conn) EvalMultiWithin(ctx context.Context, d time.Duration, s *Script, execs []Exec) []rueidis.RedisResult {
	build := func(e Exec) rueidis.Completed {
		return c.B().Evalsha().Sha1(s.sha).Numkeys(int64(len(e.Keys))).Key(e.Keys...).Arg(e.Args...).Build()
	}
	cmds := make(rueidis.Commands, len(execs))
	for i, e := range execs {
		cmds[i] = build(e)
	}
	rs := c.doMulti(ctx, d, cmds...)
	var again []int
	for i, r := range rs {
		if re, ok := rueidis.IsRedisErr(r.Error()); ok && re.IsNoScript() {
			again = append(again, i)
		}
	}
	if len(again) == 0 {
		return rs
	}
	if err := c.Do(ctx, c.B().ScriptLoad().Script(s.src).Build()).Error(); err != nil {
		for _, i := range again {
			rs[i] = rueidis.NewErrorResult(fmt.Errorf("cannot load script: %w", err))
		}
		return rs
	}
	cmds = cmds[:0]
	for _, i := range again {
		cmds = append(cmds, build(execs[i]))
	}
	rs2 := c.doMulti(ctx, d, cmds...)
	for j, i := range again {
		rs[i] = rs2[j]
	}
	return rs
}
