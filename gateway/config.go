package gateway

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Config is everything the gateway reads at start. Load fills it from flags with
// environment fallbacks (flag > env > default) and validates it.
type Config struct {
	ListenAddr string

	UpstreamHTTPURL string
	UpstreamWSURL   string // empty disables the websocket paths
	// UpstreamUser/UpstreamSecret are sent as HTTP basic auth (Infura: empty user,
	// project secret). Never logged; String() redacts it.
	UpstreamUser   string
	UpstreamSecret string
	InfuraProject  string
	InfuraNetwork  string

	UpstreamTimeout  time.Duration
	UpstreamMaxConns int
	MaxRequestBody   int
	MaxResponseBody  int
	MaxBatch         int
	DenyMethods      []string
	CORSOrigins      string

	WSUpstreamConns  int
	WSPerClient      bool
	WSMaxMessage     int
	WSClientQueue    int
	WSMaxInFlight    int
	WSPingInterval   time.Duration
	WSAllowedOrigins []string

	CacheEnabled  bool
	CacheSize     int
	CacheMaxBytes int
	CacheMaxAge   time.Duration
	CacheDepth    uint64
	HeadPoll      time.Duration

	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	IdleTimeout  time.Duration

	ReadyWindow     time.Duration
	ShutdownTimeout time.Duration
	DrainDelay      time.Duration

	LogLevel    slog.Level
	LogFormat   string
	LogRequests bool
	PprofListen string
}

// Defaults for a local development node on the standard ports.
const (
	DefaultHTTPURL = "http://127.0.0.1:8545"
	DefaultWSURL   = "ws://127.0.0.1:8546"
)

// envAliases maps a primary variable to older names that keep working: the seed's
// .envrc names, so users can migrate without editing it.
var envAliases = map[string][]string{
	"UPSTREAM_HTTP_URL":     {"MAINNET_HTTP_ENDPOINT"},
	"UPSTREAM_WS_URL":       {"MAINNET_WEBSOCKET_ENDPOINT"},
	"INFURA_PROJECT_ID":     {"PROJECT_ID"},
	"INFURA_PROJECT_SECRET": {"PROJECT_SECRET"},
}

// Load parses args (without the program name) with environment fallbacks from getenv.
// Usage and errors go to out. A returned error is one line, ready to print.
func Load(args []string, getenv func(string) string, out io.Writer) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("infura-gateway", flag.ContinueOnError)
	fs.SetOutput(out)
	env := func(name string) string {
		if v := getenv(name); v != "" {
			return v
		}
		for _, alias := range envAliases[name] {
			if v := getenv(alias); v != "" {
				return v
			}
		}
		return ""
	}
	var errs []error
	str := func(p *string, name, envName, def, usage string) {
		if v := env(envName); v != "" {
			def = v
		}
		fs.StringVar(p, name, def, usage+" (env "+envName+")")
	}
	intv := func(p *int, name, envName string, def int, usage string) {
		if v := env(envName); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: not an integer", envName, v))
			}
			def = n
		}
		fs.IntVar(p, name, def, usage+" (env "+envName+")")
	}
	dur := func(p *time.Duration, name, envName string, def time.Duration, usage string) {
		if v := env(envName); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: not a duration (e.g. 10s, 500ms)", envName, v))
			}
			def = d
		}
		fs.DurationVar(p, name, def, usage+" (env "+envName+")")
	}
	boolv := func(p *bool, name, envName string, def bool, usage string) {
		if v := env(envName); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: not a boolean", envName, v))
			}
			def = b
		}
		fs.BoolVar(p, name, def, usage+" (env "+envName+")")
	}
	var deny, wsOrigins, logLevel string
	var cacheDepth int
	str(&c.ListenAddr, "listen", "LISTEN_ADDR", ":8000", "address to serve on")
	str(&c.UpstreamHTTPURL, "upstream-http", "UPSTREAM_HTTP_URL", "", "upstream JSON-RPC HTTP URL (default "+DefaultHTTPURL+", or Infura's when INFURA_PROJECT_ID is set)")
	str(&c.UpstreamWSURL, "upstream-ws", "UPSTREAM_WS_URL", "", "upstream JSON-RPC websocket URL (default "+DefaultWSURL+", or Infura's; \"off\" disables the websocket paths)")
	str(&c.InfuraProject, "infura-project-id", "INFURA_PROJECT_ID", "", "Infura project ID: builds the Infura URLs")
	str(&c.InfuraNetwork, "infura-network", "INFURA_NETWORK", "mainnet", "Infura network (mainnet, sepolia, holesky, ...)")
	// The secret is read from the environment only: a flag would show in `ps`.
	c.UpstreamSecret = env("INFURA_PROJECT_SECRET")
	dur(&c.UpstreamTimeout, "upstream-timeout", "UPSTREAM_TIMEOUT", 10*time.Second, "deadline for one upstream call; past it the client gets 504")
	intv(&c.UpstreamMaxConns, "upstream-max-conns", "UPSTREAM_MAX_CONNS", 512, "HTTP connections to the upstream")
	intv(&c.MaxRequestBody, "max-request-body", "MAX_REQUEST_BODY_BYTES", 5<<20, "largest request body; larger gets 413")
	intv(&c.MaxResponseBody, "max-response-body", "MAX_RESPONSE_BODY_BYTES", 32<<20, "largest upstream answer accepted; larger gets 502")
	intv(&c.MaxBatch, "max-batch", "MAX_BATCH_SIZE", 1000, "most requests in one JSON-RPC batch")
	str(&deny, "deny-methods", "DENY_METHODS", "admin_,debug_,personal_,miner_,engine_", "comma-separated method names or prefixes (ending in _) answered -32601 without reaching the upstream; \"none\" allows all")
	str(&c.CORSOrigins, "cors-origins", "CORS_ORIGINS", "*", "Access-Control-Allow-Origin for browser clients; empty disables CORS headers")
	intv(&c.WSUpstreamConns, "ws-upstream-conns", "WS_UPSTREAM_CONNS", 2, "shared upstream websocket connections")
	boolv(&c.WSPerClient, "ws-per-client", "WS_PER_CLIENT", false, "give every /socket2socket client its own upstream socket (the seed's design; for comparison)")
	intv(&c.WSMaxMessage, "ws-max-message", "WS_MAX_MESSAGE_BYTES", 32<<20, "largest upstream websocket message (client messages are capped by -max-request-body)")
	intv(&c.WSClientQueue, "ws-client-queue", "WS_CLIENT_QUEUE", 256, "messages queued to one slow /socket2socket client before it is dropped (close 1008)")
	intv(&c.WSMaxInFlight, "ws-max-in-flight", "WS_MAX_IN_FLIGHT", 256, "requests one /socket2socket client may have in flight")
	dur(&c.WSPingInterval, "ws-ping-interval", "WS_PING_INTERVAL", 30*time.Second, "websocket keepalive ping after this much idle time")
	str(&wsOrigins, "ws-allowed-origins", "WS_ALLOWED_ORIGINS", "*", "comma-separated Origins allowed on /socket2socket; * allows any")
	boolv(&c.CacheEnabled, "cache", "CACHE_ENABLED", true, "head-aware response cache and request coalescing")
	intv(&c.CacheSize, "cache-size", "CACHE_SIZE", 10000, "most entries in the immutable-result cache")
	intv(&c.CacheMaxBytes, "cache-max-bytes", "CACHE_MAX_BYTES", 256<<20, "most bytes of answers in the immutable-result cache")
	dur(&c.CacheMaxAge, "cache-max-age", "CACHE_MAX_AGE", 15*time.Second, "longest a head-dependent answer is served without a new head")
	intv(&cacheDepth, "cache-depth", "CACHE_DEPTH", 64, "blocks below the head after which a block is treated as immutable")
	dur(&c.HeadPoll, "head-poll", "HEAD_POLL_INTERVAL", 2*time.Second, "head polling interval when no websocket upstream is configured")
	dur(&c.ReadTimeout, "read-timeout", "READ_TIMEOUT", 30*time.Second, "longest a client may take to send one request (0: no limit)")
	dur(&c.WriteTimeout, "write-timeout", "WRITE_TIMEOUT", 60*time.Second, "longest writing one response to a client may take (0: no limit)")
	dur(&c.IdleTimeout, "idle-timeout", "IDLE_TIMEOUT", 120*time.Second, "close keep-alive connections idle this long")
	dur(&c.ReadyWindow, "ready-window", "READY_WINDOW", 30*time.Second, "/readyz fails when the upstream has not answered for this long")
	dur(&c.ShutdownTimeout, "shutdown-timeout", "SHUTDOWN_TIMEOUT", 20*time.Second, "on SIGTERM, how long in-flight requests get to finish")
	dur(&c.DrainDelay, "drain-delay", "DRAIN_DELAY", 0, "on SIGTERM, how long /readyz reports 503 before the listener closes")
	str(&logLevel, "log-level", "LOG_LEVEL", "info", "debug, info, warn or error")
	str(&c.LogFormat, "log-format", "LOG_FORMAT", "json", "json or text")
	boolv(&c.LogRequests, "log-requests", "LOG_REQUESTS", false, "log every request (costs throughput)")
	str(&c.PprofListen, "pprof-listen", "PPROF_LISTEN", "", "serve Go's pprof profiles on this address (e.g. 127.0.0.1:6060); off when empty")

	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if len(errs) > 0 {
		return c, errs[0]
	}
	if err := c.LogLevel.UnmarshalText([]byte(logLevel)); err != nil {
		return c, fmt.Errorf("-log-level %q: want debug, info, warn or error", logLevel)
	}
	if cacheDepth < 0 {
		return c, errors.New("-cache-depth must be >= 0")
	}
	c.CacheDepth = uint64(cacheDepth)
	c.DenyMethods = splitList(deny)
	if len(c.DenyMethods) == 1 && c.DenyMethods[0] == "none" {
		c.DenyMethods = nil
	}
	c.WSAllowedOrigins = splitList(wsOrigins)
	c.resolveUpstreams()
	return c, c.Validate()
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

// Validate checks every field and returns the first problem as one line.
func (c *Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.ListenAddr); err != nil {
		return fmt.Errorf("-listen %q: want host:port or :port", c.ListenAddr)
	}
	if c.PprofListen != "" {
		if _, _, err := net.SplitHostPort(c.PprofListen); err != nil {
			return fmt.Errorf("-pprof-listen %q: want host:port", c.PprofListen)
		}
	}
	if err := checkURL("-upstream-http", c.UpstreamHTTPURL, "http", "https"); err != nil {
		return err
	}
	if c.UpstreamWSURL != "" {
		if err := checkURL("-upstream-ws", c.UpstreamWSURL, "ws", "wss"); err != nil {
			return err
		}
	}
	if c.InfuraProject != "" && strings.ContainsAny(c.InfuraProject, "/?#@: ") {
		return errors.New("INFURA_PROJECT_ID has characters a project ID cannot have")
	}
	if c.InfuraNetwork == "" || strings.ContainsAny(c.InfuraNetwork, "/?#@: ") {
		return fmt.Errorf("-infura-network %q: want a network name such as mainnet or sepolia", c.InfuraNetwork)
	}
	checks := []struct {
		ok  bool
		msg string
	}{
		{c.UpstreamTimeout > 0, "-upstream-timeout must be > 0"},
		{c.UpstreamMaxConns > 0, "-upstream-max-conns must be > 0"},
		{c.MaxRequestBody >= 1024, "-max-request-body must be at least 1024 bytes"},
		{c.MaxResponseBody >= 1024, "-max-response-body must be at least 1024 bytes"},
		{c.MaxBatch > 0, "-max-batch must be > 0"},
		{c.WSUpstreamConns > 0 && c.WSUpstreamConns <= 64, "-ws-upstream-conns must be between 1 and 64"},
		{c.WSMaxMessage >= 1024, "-ws-max-message must be at least 1024 bytes"},
		{c.WSClientQueue > 0, "-ws-client-queue must be > 0"},
		{c.WSMaxInFlight > 0, "-ws-max-in-flight must be > 0"},
		{c.WSPingInterval >= time.Second, "-ws-ping-interval must be at least 1s"},
		{c.CacheSize > 0, "-cache-size must be > 0"},
		{c.CacheMaxBytes >= 1<<20, "-cache-max-bytes must be at least 1 MiB"},
		{c.CacheMaxAge > 0, "-cache-max-age must be > 0"},
		{c.HeadPoll >= 100*time.Millisecond, "-head-poll must be at least 100ms"},
		{c.ReadyWindow > 0, "-ready-window must be > 0"},
		{c.ReadTimeout >= 0 && c.WriteTimeout >= 0, "-read-timeout and -write-timeout must be >= 0"},
		{c.IdleTimeout > 0, "-idle-timeout must be > 0"},
		{c.ShutdownTimeout > 0, "-shutdown-timeout must be > 0"},
		{c.DrainDelay >= 0, "-drain-delay must be >= 0"},
		{c.LogFormat == "json" || c.LogFormat == "text", "-log-format must be json or text"},
	}
	for _, ch := range checks {
		if !ch.ok {
			return errors.New(ch.msg)
		}
	}
	return nil
}

func checkURL(flagName, raw string, schemes ...string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%s: not a URL", flagName)
	}
	for _, s := range schemes {
		if u.Scheme == s {
			if u.Host == "" {
				return fmt.Errorf("%s: URL has no host", flagName)
			}
			return nil
		}
	}
	return fmt.Errorf("%s: scheme must be %s, got %q", flagName, strings.Join(schemes, " or "), u.Scheme)
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

// LogValue keeps secrets out of logs: URLs lose their credentials and Infura paths
// their project ID.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("listen", c.ListenAddr),
		slog.String("upstream_http", redactURL(c.UpstreamHTTPURL, c.InfuraProject)),
		slog.String("upstream_ws", redactURL(c.UpstreamWSURL, c.InfuraProject)),
		slog.Bool("upstream_auth", c.UpstreamSecret != ""),
		slog.Duration("upstream_timeout", c.UpstreamTimeout),
		slog.Int("ws_upstream_conns", c.WSUpstreamConns),
		slog.Bool("ws_per_client", c.WSPerClient),
		slog.Bool("cache", c.CacheEnabled),
		slog.Int("max_batch", c.MaxBatch),
		slog.Any("deny_methods", c.DenyMethods),
	)
}

func redactURL(raw, project string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable)"
	}
	if u.User != nil {
		u.User = url.User("redacted")
	}
	s := u.String()
	if project != "" {
		s = strings.ReplaceAll(s, project, "<project-id>")
	}
	return s
}
