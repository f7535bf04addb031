package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// envAliases maps a variable to older names that keep working (the .envrc names of the
// original web server), so its users migrate without editing their environment.
func envAliases(name string) []string {
	switch name {
	case "UPSTREAM_HTTP_URL":
		return []string{"MAINNET_HTTP_ENDPOINT"}
	case "UPSTREAM_WS_URL":
		return []string{"MAINNET_WEBSOCKET_ENDPOINT"}
	case "INFURA_PROJECT_ID":
		return []string{"PROJECT_ID"}
	case "INFURA_PROJECT_SECRET":
		return []string{"PROJECT_SECRET"}
	}
	return nil
}

// loader defines settings on a flag set, each with an environment fallback.
type loader struct {
	fs     *flag.FlagSet
	getenv func(string) string
	errs   []error
}

// env returns the value of name or of one of its aliases, and the variable it came from.
func (l *loader) env(name string) (string, string) {
	if v := l.getenv(name); v != "" {
		return v, name
	}
	for _, alias := range envAliases(name) {
		if v := l.getenv(alias); v != "" {
			return v, alias
		}
	}
	return "", ""
}

// flagValue is a flag.Value over a Config field. Usage shows the built-in default
// (shown), never a value taken from the environment: those may be secrets.
type flagValue[T any] struct {
	p      *T
	parse  func(string) (T, error)
	shown  string
	isBool bool
}

func (v *flagValue[T]) String() string {
	if v == nil {
		return ""
	}
	return v.shown
}

func (v *flagValue[T]) Set(s string) error {
	x, err := v.parse(s)
	if err != nil {
		return err
	}
	*v.p = x
	return nil
}

func (v *flagValue[T]) IsBoolFlag() bool { return v != nil && v.isBool }

// setting defines flag name over *p with environment variable envName as its fallback.
// *p already holds the default. A value taken from the environment shows in usage as
// "(set from NAME)", never the value; errors name the variable, and show its value only
// when the setting is not secret.
func setting[T any](l *loader, p *T, name, envName, usage string, parse func(string) (T, error), secret bool) {
	v := &flagValue[T]{p: p, parse: parse, shown: fmt.Sprint(*p)}
	if list, ok := any(*p).([]string); ok {
		v.shown = strings.Join(list, ",")
	}
	if lv, ok := any(*p).(slog.Level); ok {
		v.shown = strings.ToLower(lv.String()) // as written: -log-level info
	}
	var zero T
	_, v.isBool = any(zero).(bool)
	if secret {
		v.shown = ""
	}
	usage += " (env " + envName + ")"
	if raw, from := l.env(envName); from != "" {
		x, err := parse(raw)
		switch {
		case err != nil && secret:
			l.errs = append(l.errs, fmt.Errorf("%s: %v", from, err))
		case err != nil:
			l.errs = append(l.errs, fmt.Errorf("%s=%q: %v", from, raw, err))
		default:
			*p = x
		}
		usage += " (set from " + from + ")"
	}
	l.fs.Var(v, name, usage)
}

func parseString(s string) (string, error) { return s, nil }

func parseInt(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, errors.New("not an integer")
	}
	return n, nil
}

func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New("not a duration (e.g. 10s, 500ms)")
	}
	return d, nil
}

func parseBool(s string) (bool, error) {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, errors.New("not a boolean")
	}
	return b, nil
}

func parseList(s string) ([]string, error) { return splitList(s), nil }

func parseFloat(s string) (float64, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, errors.New("not a number")
	}
	return f, nil
}

func parseLevel(s string) (slog.Level, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(s)); err != nil {
		return lv, errors.New("want debug, info, warn or error")
	}
	return lv, nil
}

func parseDepth(s string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, errors.New("not a non-negative integer")
	}
	return n, nil
}

// Load parses args (without the program name) with environment fallbacks from getenv.
// Usage and errors go to out. A returned error is one line, ready to print, and never
// holds a secret.
func Load(args []string, getenv func(string) string, out io.Writer) (Config, error) {
	c := Defaults()
	// The URLs start empty: their defaults depend on the Infura settings.
	c.UpstreamHTTPURL, c.UpstreamWSURL = "", ""
	fs := flag.NewFlagSet("infura-gateway", flag.ContinueOnError)
	fs.SetOutput(out)
	l := &loader{fs: fs, getenv: getenv}
	str := func(p *string, name, env, usage string) { setting(l, p, name, env, usage, parseString, false) }
	secret := func(p *string, name, env, usage string) { setting(l, p, name, env, usage, parseString, true) }
	num := func(p *int, name, env, usage string) { setting(l, p, name, env, usage, parseInt, false) }
	dur := func(p *time.Duration, name, env, usage string) { setting(l, p, name, env, usage, parseDuration, false) }
	boolean := func(p *bool, name, env, usage string) { setting(l, p, name, env, usage, parseBool, false) }
	list := func(p *[]string, name, env, usage string) { setting(l, p, name, env, usage, parseList, false) }

	str(&c.ListenAddr, "listen", "LISTEN_ADDR", "address to serve on")
	secret(&c.UpstreamHTTPURL, "upstream-http", "UPSTREAM_HTTP_URL", "upstream JSON-RPC HTTP URL (default "+DefaultHTTPURL+", or Infura's when INFURA_PROJECT_ID is set)")
	secret(&c.UpstreamWSURL, "upstream-ws", "UPSTREAM_WS_URL", "upstream JSON-RPC websocket URL (default "+DefaultWSURL+", or Infura's; \"off\" disables the websocket paths)")
	secret(&c.InfuraProject, "infura-project-id", "INFURA_PROJECT_ID", "Infura project ID: builds the Infura URLs")
	str(&c.InfuraNetwork, "infura-network", "INFURA_NETWORK", "Infura network (mainnet, sepolia, holesky, ...)")
	str(&c.InfuraNetworks, "infura-networks", "INFURA_NETWORKS", "comma-separated Infura networks to serve at once, each under /<name>/ (mainnet,sepolia,...); empty: -infura-network alone")
	// The secret is read from the environment only: a flag would show in `ps`.
	c.UpstreamSecret, _ = l.env("INFURA_PROJECT_SECRET")
	dur(&c.UpstreamTimeout, "upstream-timeout", "UPSTREAM_TIMEOUT", "deadline for one upstream call; past it the client gets 504")
	num(&c.UpstreamMaxConns, "upstream-max-conns", "UPSTREAM_MAX_CONNS", "HTTP connections to the upstream")
	dur(&c.UpstreamDialTimeout, "upstream-dial-timeout", "UPSTREAM_DIAL_TIMEOUT", "longest an HTTP connection to the upstream may take to open")
	dur(&c.UpstreamIdleTimeout, "upstream-idle-timeout", "UPSTREAM_IDLE_TIMEOUT", "close upstream HTTP connections idle this long (keep it below the upstream's own)")
	num(&c.MaxRequestBody, "max-request-body", "MAX_REQUEST_BODY_BYTES", "largest request body or client websocket message; larger gets 413 (websocket: close 1009)")
	num(&c.MaxResponseBody, "max-response-body", "MAX_RESPONSE_BODY_BYTES", "largest upstream answer or websocket message accepted; a larger one fails that call only (-32005)")
	num(&c.MaxBatch, "max-batch", "MAX_BATCH_SIZE", "most requests in one JSON-RPC batch")
	num(&c.MaxPendingBytes, "max-pending-bytes", "MAX_PENDING_BYTES", "request bytes waiting on the upstream, all clients together; past it new requests get 503 / -32005 with Retry-After: 1")
	num(&c.MaxAnswerBytes, "max-answer-bytes", "MAX_ANSWER_BYTES", "upstream answer bytes being read or written to clients at once, every upstream together; an answer that does not fit gets 503 / -32005 (the first 64 KiB of any answer always fit, not counted)")
	num(&c.MaxBodyReadBytes, "max-body-read-bytes", "MAX_BODY_READ_BYTES", "client request bytes being read at once, all clients together: HTTP bodies by the length each declares (chunked: -max-request-body), websocket messages by their buffer as they arrive; a body that does not fit gets 503 / -32005 before it is read, a websocket message closes its client with 1013 (up to 64 KiB always fit, not counted)")
	num(&c.MaxConns, "max-conns", "MAX_CONNS", "client connections the public listener keeps open at once, HTTP and websocket (the admin listener's apart); past it a new connection gets 503 / -32005 and is closed; 0: no bound")
	num(&c.MaxConnsPerIP, "max-conns-per-ip", "MAX_CONNS_PER_IP", "client connections one client address keeps open at once (the PROXY header's source from a trusted proxy, else the TCP peer: a load balancer speaking plain HTTP counts as one address); past it 503 / -32005; 0: no bound")
	list(&c.DenyMethods, "deny-methods", "DENY_METHODS", "comma-separated method names or prefixes (ending in _) answered -32601 without reaching the upstream; \"none\" allows all")
	str(&c.CORSOrigins, "cors-origins", "CORS_ORIGINS", "origins browser clients may call from, comma-separated (the one a request comes from is echoed), or * for any; empty disables CORS headers")
	num(&c.WSUpstreamConns, "ws-upstream-conns", "WS_UPSTREAM_CONNS", "shared upstream websocket connections")
	num(&c.WSUpstreamQueue, "ws-upstream-queue", "WS_UPSTREAM_QUEUE", "frames waiting for one upstream socket's writer; past it calls get 503")
	boolean(&c.WSPerClient, "ws-per-client", "WS_PER_CLIENT", "give every /socket2socket client its own upstream socket (for comparison with shared sockets)")
	num(&c.WSMaxClients, "ws-max-clients", "WS_MAX_CLIENTS", "most /socket2socket clients at once; more are refused with 503")
	num(&c.WSClientQueue, "ws-client-queue", "WS_CLIENT_QUEUE", "answers queued to one slow /socket2socket client before it is dropped (close 1008); notifications count in -ws-client-queue-bytes only")
	num(&c.WSClientQueueBytes, "ws-client-queue-bytes", "WS_CLIENT_QUEUE_BYTES", "bytes queued, or being written, to one slow /socket2socket client before it is dropped (close 1008); one message of any size always fits when nothing else is")
	num(&c.WSMaxInFlight, "ws-max-in-flight", "WS_MAX_IN_FLIGHT", "requests one /socket2socket client may have in flight, notifications and batch elements included")
	num(&c.WSMaxPendingBytes, "ws-max-pending-bytes", "WS_MAX_PENDING_BYTES", "request bytes one /socket2socket client may have in flight")
	num(&c.WSMaxSubscriptions, "ws-max-subscriptions", "WS_MAX_SUBSCRIPTIONS", "subscriptions one /socket2socket client may hold")
	num(&c.MaxSubscriptions, "max-subscriptions", "MAX_SUBSCRIPTIONS", "subscriptions all /socket2socket clients together may hold")
	num(&c.WSMaxSubscriptionsPerIP, "ws-max-subscriptions-per-ip", "WS_MAX_SUBSCRIPTIONS_PER_IP", "subscriptions the /socket2socket clients of one client address (an IPv6 address's /64; a /48's /64s hold 16 times it together) may hold together, so no one address takes -max-subscriptions (behind a load balancer speaking plain HTTP every client shares its address: set it where clients are told apart, as -max-conns-per-ip); 0: no bound")
	dur(&c.WSPingInterval, "ws-ping-interval", "WS_PING_INTERVAL", "websocket keepalive ping after this much idle time")
	dur(&c.WSPongTimeout, "ws-pong-timeout", "WS_PONG_TIMEOUT", "an upstream socket silent this long past a ping is declared dead")
	dur(&c.WSProbeTimeout, "ws-probe-timeout", "WS_PROBE_TIMEOUT", "after a call on an upstream socket timed out, the socket is pinged; with neither its pong nor an answer back within this (or three of the socket's round trips, when longer) it is declared dead (its calls and subscriptions move)")
	dur(&c.WSDialTimeout, "ws-dial-timeout", "WS_DIAL_TIMEOUT", "longest opening an upstream websocket (TCP, TLS, handshake) may take")
	dur(&c.WSWriteTimeout, "ws-write-timeout", "WS_WRITE_TIMEOUT", "longest one write to an upstream socket may take")
	dur(&c.WSBackoffMin, "ws-backoff-min", "WS_BACKOFF_MIN", "first delay before reconnecting a lost upstream socket (doubled per failure, with jitter)")
	dur(&c.WSBackoffMax, "ws-backoff-max", "WS_BACKOFF_MAX", "longest delay between upstream reconnect attempts")
	dur(&c.WSClientWriteTimeout, "ws-client-write-timeout", "WS_CLIENT_WRITE_TIMEOUT", "longest one write to a /socket2socket client may take")
	list(&c.WSAllowedOrigins, "ws-allowed-origins", "WS_ALLOWED_ORIGINS", "comma-separated Origins allowed on /socket2socket; * allows any")
	str(&c.ConfigFile, "config", "CONFIG_FILE", "YAML file listing the upstreams (and keys, limits); replaces the upstream flags; reloaded on SIGHUP and when it changes")
	num(&c.Retries, "retries", "RETRIES", "more upstreams a failed read is tried on (a write that reached an upstream never is)")
	setting(l, &c.HedgeQuantile, "hedge-quantile", "HEDGE_QUANTILE", "send a slow read to a second upstream once the first has taken longer than this latency quantile (e.g. 0.9); 0 disables hedging", parseFloat, false)
	setting(l, &c.HedgeMaxExtra, "hedge-max-extra", "HEDGE_MAX_EXTRA", "most hedged reads, as a share of all reads", parseFloat, false)
	setting(l, &c.ArchiveDepth, "archive-depth", "ARCHIVE_DEPTH", "blocks below the head past which state calls go only to archive upstreams", parseDepth, false)
	dur(&c.HealthWindow, "health-window", "HEALTH_WINDOW", "how far back an upstream's error rate and latency quantile look")
	num(&c.BanMinRequests, "ban-min-requests", "BAN_MIN_REQUESTS", "answers in the window before an error rate, or a method class's latency, can ban an upstream (or set the latency others are judged against)")
	setting(l, &c.BanErrorRate, "ban-error-rate", "BAN_ERROR_RATE", "ban an upstream whose share of failed calls in the window is above this", parseFloat, false)
	num(&c.BanFailures, "ban-failures", "BAN_FAILURES", "ban an upstream after this many failed calls in a row")
	setting(l, &c.MaxLag, "max-lag", "MAX_LAG", "blocks an upstream may be behind the best head before it counts as lagging", parseDepth, false)
	setting(l, &c.SlowFactor, "slow-factor", "SLOW_FACTOR", "ban an upstream whose p90 latency is this many times the best upstream's (and above -slow-min)", parseFloat, false)
	dur(&c.SlowMin, "slow-min", "SLOW_MIN", "a p90 latency below this never bans an upstream as slow")
	dur(&c.BanMin, "ban-min", "BAN_MIN", "first ban of an upstream; doubled for each ban in a row")
	dur(&c.BanMax, "ban-max", "BAN_MAX", "longest ban")
	num(&c.Readmit, "readmit", "READMIT", "successful probes in a row that end a ban")
	dur(&c.ProbeInterval, "probe-interval", "PROBE_INTERVAL", "an upstream that answered nothing for this long gets one cheap call")
	dur(&c.ReviewInterval, "review-interval", "REVIEW_INTERVAL", "how often upstream states are re-evaluated and subscriptions moved")
	dur(&c.ConfigPoll, "config-poll", "CONFIG_POLL", "how often the configuration file is checked for changes (it is also reloaded on SIGHUP)")
	boolean(&c.CacheEnabled, "cache", "CACHE_ENABLED", "head-aware response cache and request coalescing")
	num(&c.CacheSize, "cache-size", "CACHE_SIZE", "most entries in the immutable-result cache")
	num(&c.CacheMaxBytes, "cache-max-bytes", "CACHE_MAX_BYTES", "most bytes of answers in the immutable-result cache")
	dur(&c.CacheMaxAge, "cache-max-age", "CACHE_MAX_AGE", "longest a head-dependent answer is served without a new head")
	setting(l, &c.CacheDepth, "cache-depth", "CACHE_DEPTH", "blocks below the head after which a block is treated as immutable", parseDepth, false)
	dur(&c.HeadPoll, "head-poll", "HEAD_POLL_INTERVAL", "head polling interval when no websocket upstream is configured, or while none of its sockets is up")
	dur(&c.ReadTimeout, "read-timeout", "READ_TIMEOUT", "longest a client may take to send one request (0: no limit)")
	dur(&c.WriteTimeout, "write-timeout", "WRITE_TIMEOUT", "longest writing one response to a client may take (0: no limit)")
	dur(&c.IdleTimeout, "idle-timeout", "IDLE_TIMEOUT", "close keep-alive connections idle this long")
	dur(&c.ShutdownTimeout, "shutdown-timeout", "SHUTDOWN_TIMEOUT", "on SIGTERM, how long in-flight requests get to finish")
	dur(&c.DrainDelay, "drain-delay", "DRAIN_DELAY", "on SIGTERM, how long /readyz reports 503 before the listener closes")
	setting(l, &c.LogLevel, "log-level", "LOG_LEVEL", "debug, info, warn or error", parseLevel, false)
	str(&c.LogFormat, "log-format", "LOG_FORMAT", "json or text")
	boolean(&c.LogRequests, "log-requests", "LOG_REQUESTS", "log every request (costs throughput)")
	str(&c.AdminListen, "admin-listen", "ADMIN_LISTEN", "address of the admin listener: /metrics, /status, /health, /readyz and, with -pprof, /debug/pprof/ (never on the public port); loopback by default, :9090 for every interface (a pod: Prometheus and kubelet probes); empty disables it")
	boolean(&c.Pprof, "pprof", "PPROF_ENABLED", "serve Go's profiles under /debug/pprof/ on the admin listener")
	secret(&c.AdminToken, "admin-token", "ADMIN_TOKEN", "bearer token for the admin listener's POST /admin/cordon, /admin/uncordon and /admin/drain (at least 16 characters; prefer the environment: a flag shows in ps); empty: those answer 403")
	str(&c.TraceExporter, "trace-exporter", "TRACE_EXPORTER", "OpenTelemetry trace exporter: otlp-grpc or otlp-http; empty: tracing off")
	secret(&c.TraceEndpoint, "trace-endpoint", "TRACE_ENDPOINT", "OTLP collector URL (http://collector:4317 for otlp-grpc, http://collector:4318 for otlp-http; https:// for TLS)")
	setting(l, &c.TraceSampleRatio, "trace-sample-ratio", "TRACE_SAMPLE_RATIO", "share of calls traced (0 to 1) among those without a caller's sampling decision", parseFloat, false)
	boolean(&c.TraceParentBased, "trace-parent-based", "TRACE_PARENT_BASED", "follow the sampled flag of a caller's W3C traceparent")
	num(&c.TraceParentRate, "trace-parent-rate", "TRACE_PARENT_RATE", "most calls a second traced because a caller's traceparent asked (beyond: -trace-sample-ratio decides); a client cannot make every call of its own a span; 0: no bound")
	dur(&c.WSDrainWindow, "ws-drain-window", "WS_DRAIN_WINDOW", "on SIGTERM, close websocket clients spread over this long, each told to reconnect (0: over -drain-delay; both 0: all at once, each after its calls in flight)")
	str(&c.RedisAddr, "redis-addr", "REDIS_ADDR", "host:port of a Redis shared by the replicas: API key limits and the shared cache of immutable answers; empty: limits per process, no shared cache")
	str(&c.RedisUsername, "redis-username", "REDIS_USERNAME", "Redis ACL user (the password is read from REDIS_PASSWORD only)")
	c.RedisPassword, _ = l.env("REDIS_PASSWORD")
	boolean(&c.RedisTLS, "redis-tls", "REDIS_TLS", "connect to Redis over TLS (ElastiCache with encryption in transit)")
	num(&c.BudgetReplicas, "budget-replicas", "BUDGET_REPLICAS", "replicas sharing the upstreams' budgets: while Redis is down (or without -redis-addr) each replica keeps budget ÷ this (file: shared_budget_replicas)")
	dur(&c.BudgetWait, "budget-wait", "BUDGET_WAIT", "longest a call waits for an upstream with budget left before it is refused (429, -32005); the call's deadline if sooner; 0: refused at once")
	num(&c.BudgetQueueBytes, "budget-queue-bytes", "BUDGET_QUEUE_BYTES", "request bytes that may wait for upstream budget at once, per network; past it calls are refused at once")
	boolean(&c.LimitsFailClosed, "limits-fail-closed", "LIMITS_FAIL_CLOSED", "while Redis is unreachable, refuse calls that have limits (429) instead of limiting per process")
	boolean(&c.SharedCache, "shared-cache", "SHARED_CACHE", "with -redis-addr, keep immutable answers (by hash, deep blocks) in Redis for every replica")
	dur(&c.SharedCacheTTL, "shared-cache-ttl", "SHARED_CACHE_TTL", "how long an answer stays in the shared cache")
	num(&c.SharedCacheMaxValue, "shared-cache-max-value", "SHARED_CACHE_MAX_VALUE_BYTES", "larger answers are not put in the shared cache")
	list(&c.SharedCacheMethods, "shared-cache-methods", "SHARED_CACHE_METHODS", "comma-separated methods the shared cache takes beyond blocks, receipts and transactions (eth_call, eth_getBalance, eth_getCode, eth_getStorageAt, eth_getTransactionCount, eth_getProof, eth_feeHistory); empty: none")
	str(&c.SharedCacheRedisAddr, "shared-cache-redis-addr", "SHARED_CACHE_REDIS_ADDR", "host:port of a Redis for the shared cache only (an allkeys-lru instance; same credentials and TLS as -redis-addr); empty: the shared cache uses -redis-addr")
	dur(&c.SharedCacheBudget, "shared-cache-budget", "SHARED_CACHE_BUDGET", "longest a request waits on the shared cache (lookup and fetch claim) before it asks the upstream itself")
	num(&c.SharedCacheTenantBytes, "shared-cache-tenant-bytes", "SHARED_CACHE_TENANT_BYTES_PER_MINUTE", "bytes one tenant's answers may write into the shared cache per minute, per replica (over it they are not written); 0: no limit")
	list(&c.TrustedProxies, "trusted-proxies", "TRUSTED_PROXIES", "comma-separated addresses or CIDRs of load balancers whose X-Forwarded-For (and PROXY protocol header) names the client; empty trusts none")
	boolean(&c.ProxyProtocol, "proxy-protocol", "PROXY_PROTOCOL", "read a PROXY protocol header (v1 or v2, as AWS NLB sends) on connections from -trusted-proxies: the client address for per-IP limits")
	dur(&c.FilterTimeout, "filter-timeout", "FILTER_TIMEOUT", "a filter (eth_newFilter, eth_newBlockFilter, eth_newPendingTransactionFilter) not polled for this long is removed, as geth does")
	num(&c.FilterMaxPerTenant, "filter-max-per-tenant", "FILTER_MAX_PER_TENANT", "most filters one API key (or anonymous client) holds on a network at once")
	num(&c.FilterMaxTotal, "filter-max-total", "FILTER_MAX_TOTAL", "most filters alive on a network at once (with -redis-addr: across the replicas)")
	num(&c.FilterMaxBytes, "filter-max-bytes", "FILTER_MAX_BYTES", "most bytes of filter state kept for a network (with -redis-addr: in Redis)")

	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if len(l.errs) > 0 {
		return c, l.errs[0]
	}
	if len(c.DenyMethods) == 1 && c.DenyMethods[0] == "none" {
		c.DenyMethods = nil
	}
	c.resolveUpstreams()
	c.infuraNetworks()
	if err := c.Validate(); err != nil {
		return c, err
	}
	flags := c
	c.flags = &flags
	merged, _, err := LoadFile(c, getenv)
	return merged, err
}

// resolveUpstreams applies the Infura shorthand and the local-node defaults.
func (c *Config) resolveUpstreams() {
	if c.InfuraProject != "" {
		if c.UpstreamHTTPURL == "" {
			c.UpstreamHTTPURL = "https://" + c.InfuraNetwork + ".infura.io/v3/" + c.InfuraProject
		}
		if c.UpstreamWSURL == "" {
			c.UpstreamWSURL = "wss://" + c.InfuraNetwork + ".infura.io/ws/v3/" + c.InfuraProject
		}
	}
	if c.UpstreamHTTPURL == "" {
		c.UpstreamHTTPURL = DefaultHTTPURL
	}
	switch c.UpstreamWSURL {
	case "":
		c.UpstreamWSURL = DefaultWSURL
	case "off", "none":
		c.UpstreamWSURL = ""
	}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
