// Package config is the gateway's configuration: the flags with their environment
// fallbacks (flags.go), the YAML configuration file (file.go, fileload.go,
// filecheck.go, shared.go), the validation of both (validate.go), what a reload
// compares, and the redaction of upstream URLs for logs and status pages (redact.go).
// It reads settings and checks them; it starts nothing and holds no running state.
//
// It may import the standard library, the YAML decoder, upstream (for upstream.Spec)
// and the leaf packages under gateway/ (clientip, redact); never gateway or another package
// above it: the root package and main import it.
package config

import (
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/infura-gateway/infura-gateway/tracing"
	"github.com/infura-gateway/infura-gateway/upstream"
)

// Config is everything the gateway reads at start. Load fills it from flags with
// environment fallbacks (flag > env > default) and validates it. Defaults returns the
// built-in values: they are written there and nowhere else; the upstream package takes
// every limit from here.
type Config struct {
	ListenAddr string

	UpstreamHTTPURL string
	UpstreamWSURL   string // empty disables the websocket paths
	// UpstreamUser/UpstreamSecret are sent as HTTP basic auth (Infura: empty user,
	// project secret). Never logged.
	UpstreamUser   string
	UpstreamSecret string
	InfuraProject  string
	InfuraNetwork  string
	// InfuraNetworks lists Infura networks to serve at once (-infura-networks): each
	// becomes a network of its own, by Infura's name.
	InfuraNetworks string
	// Networks are the networks served (the file's networks:, or the Infura shorthand's);
	// empty: one network, DefaultNetwork, of Upstreams or the flags' upstream. Read them
	// through NetworkList.
	Networks []Network
	// Upstreams are the upstreams of the configuration file; empty: one upstream from
	// the flags above.
	Upstreams []upstream.Spec
	// Methods is the top level's per-method policy, the base of every network's.
	Methods []upstream.MethodPolicy
	// Broadcast is the file's top-level broadcast: the network of Upstreams sends with
	// it (nil: off); networks: carry their own (Network.Broadcast).
	Broadcast *Broadcast
	// Consensus is the file's top-level consensus (nil: off); networks: carry their
	// own (Network.Consensus).
	Consensus *upstream.ConsensusConfig
	// flags is the configuration before the file was applied: a reload applies the
	// file anew on top of it.
	flags *Config

	UpstreamTimeout     time.Duration
	UpstreamMaxConns    int
	UpstreamDialTimeout time.Duration
	UpstreamIdleTimeout time.Duration
	MaxRequestBody      int
	MaxResponseBody     int // also the largest upstream websocket message
	MaxBatch            int
	MaxPendingBytes     int // request bytes waiting on upstreams, all clients together
	MaxAnswerBytes      int // upstream answer bytes held at once, every upstream together
	MaxBodyReadBytes    int // request body bytes being read at once, all clients together
	MaxConns            int // client connections open at once on the public listener; 0: no bound
	MaxConnsPerIP       int // of them from one client address; 0: no bound
	DenyMethods         []string
	CORSOrigins         string

	WSUpstreamConns         int
	WSUpstreamQueue         int
	WSPerClient             bool
	WSMaxClients            int
	WSClientQueue           int
	WSClientQueueBytes      int
	WSMaxInFlight           int
	WSMaxPendingBytes       int
	WSMaxSubscriptions      int // per client connection
	MaxSubscriptions        int // all clients together
	WSMaxSubscriptionsPerIP int // from one client address (IPv6: its /64); 0: no bound
	WSPingInterval          time.Duration
	WSPongTimeout           time.Duration
	WSProbeTimeout          time.Duration
	WSDialTimeout           time.Duration
	WSWriteTimeout          time.Duration
	WSBackoffMin            time.Duration
	WSBackoffMax            time.Duration
	WSClientWriteTimeout    time.Duration
	WSAllowedOrigins        []string

	// Routing and health of the upstreams.
	ConfigFile     string
	Retries        int
	HedgeQuantile  float64
	HedgeMaxExtra  float64
	ArchiveDepth   uint64
	HealthWindow   time.Duration
	BanMinRequests int
	BanErrorRate   float64
	BanFailures    int
	MaxLag         uint64
	SlowFactor     float64
	SlowMin        time.Duration
	BanMin         time.Duration
	BanMax         time.Duration
	Readmit        int
	ProbeInterval  time.Duration
	ReviewInterval time.Duration
	ConfigPoll     time.Duration

	CacheEnabled  bool
	CacheSize     int
	CacheMaxBytes int
	CacheMaxAge   time.Duration
	CacheDepth    uint64
	HeadPoll      time.Duration

	// Logs are the eth_getLogs splitting settings (config/logs.go): the file's logs:,
	// per network, and its upstreams' caps.
	Logs LogsSettings

	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	IdleTimeout  time.Duration

	ShutdownTimeout time.Duration
	DrainDelay      time.Duration

	LogLevel    slog.Level
	LogFormat   string
	LogRequests bool
	// AdminListen serves /metrics, /status (and /debug/pprof/ with Pprof) apart from
	// the public port; empty disables it. Loopback by default: a deployment that wants
	// Prometheus or probes on it from outside the host says so (the Helm chart does).
	AdminListen string
	Pprof       bool
	// AdminToken enables the admin listener's mutating endpoints (cordon, uncordon,
	// drain) for callers that send it as a bearer token; empty: they answer 403. A
	// secret: never logged, shown or fingerprinted.
	AdminToken string
	// Tracing (OpenTelemetry, off while TraceExporter is empty): where spans go, and
	// which calls are traced.
	TraceExporter    string
	TraceEndpoint    string
	TraceSampleRatio float64
	TraceParentBased bool
	TraceParentRate  int
	// WSDrainWindow spreads the closing of websocket clients on shutdown (0: over
	// DrainDelay).
	WSDrainWindow time.Duration

	// Keys and limits (the plans and keys are in the configuration file); Redis shares
	// them, and the cache of immutable answers, across replicas.
	Keys                KeySettings
	RedisAddr           string
	RedisUsername       string
	RedisPassword       string // from the environment only; never logged
	RedisTLS            bool
	LimitsFailClosed    bool
	SharedCache         bool
	SharedCacheTTL      time.Duration
	SharedCacheMaxValue int
	TrustedProxies      []string
	ProxyProtocol       bool

	// What the shared tier admits beyond its default set of methods (SharedByDefault),
	// and what one tenant's answers may write into it per minute (0: no budget).
	SharedCacheMethods     []string
	SharedCacheTenantBytes int
	// SharedCacheBudget is the longest a request waits on the shared tier (lookup and
	// fetch claim) before it goes to the upstream itself.
	SharedCacheBudget time.Duration
	// SharedCacheRedisAddr puts the shared tier on a Redis of its own (same credentials
	// and TLS as RedisAddr); empty: on RedisAddr, beside the limits.
	SharedCacheRedisAddr string

	// Filters (eth_newFilter, ...) the gateway keeps itself (gateway/filters): removed
	// after FilterTimeout without a poll; at most FilterMaxPerTenant per key or client
	// and FilterMaxTotal per network, their state at most FilterMaxBytes.
	FilterTimeout      time.Duration
	FilterMaxPerTenant int
	FilterMaxTotal     int
	FilterMaxBytes     int
	// Upstream budgets (upstream/budget.go): the replicas sharing them (each takes
	// budget ÷ replicas while Redis is down or not configured), how long a call no
	// upstream has budget for waits for one, and how many request bytes may wait so.
	BudgetReplicas   int
	BudgetWait       time.Duration
	BudgetQueueBytes int
}

// Upstream defaults for a local development node on the standard ports.
const (
	DefaultHTTPURL = "http://127.0.0.1:8545"
	DefaultWSURL   = "ws://127.0.0.1:8546"
)

// DefaultMaxConns bounds the public listener's client connections unless -max-conns says
// otherwise. An idle connection holds up to about 32 KiB of Go memory, kernel buffers
// aside (fasthttp's 8 KiB read buffer, its worker goroutine's stack, its request context,
// and up to 4 KiB of body each way kept for its next request, gateway/bodybudget.go;
// measured with 2000 idle connections, heap and stack each: 23.9 KiB after a small call,
// 31.6 KiB after a 4 KB call and answer): 16384 of them are about 512 MiB, which a pod's
// memory must hold next to the byte budgets (the chart counts 32 KiB per connection in
// its memory request). It leaves room past the ten
// thousand websocket subscribers a pod is built to hold (bench's soak: 10,100 clients);
// 10000 refused the soak's last hundred.
// Descriptors bind later in a container (the Go runtime raises the soft limit to the hard
// one, 524288 or more under containerd and Docker); where the limit is lower the gateway
// warns at start, as the bound must leave descriptors for its own upstream dials.
const DefaultMaxConns = 16384

// Defaults returns the built-in configuration: a local development node, every limit
// at its default.
func Defaults() Config {
	return Config{
		ListenAddr:              ":8000",
		AdminListen:             "127.0.0.1:9090",
		UpstreamHTTPURL:         DefaultHTTPURL,
		UpstreamWSURL:           DefaultWSURL,
		InfuraNetwork:           "mainnet",
		UpstreamTimeout:         10 * time.Second,
		UpstreamMaxConns:        512,
		UpstreamDialTimeout:     3 * time.Second,
		UpstreamIdleTimeout:     30 * time.Second, // below geth's 120 s, so the gateway closes first
		MaxRequestBody:          5 << 20,
		MaxResponseBody:         32 << 20, // go-ethereum's websocket message limit
		MaxBatch:                1000,     // go-ethereum's batch limit
		MaxPendingBytes:         256 << 20,
		MaxAnswerBytes:          256 << 20, // eight answers at -max-response-body
		MaxBodyReadBytes:        256 << 20,
		MaxConns:                DefaultMaxConns,
		DenyMethods:             []string{"admin_", "debug_", "personal_", "miner_", "engine_"},
		CORSOrigins:             "*",
		WSUpstreamConns:         2,
		WSUpstreamQueue:         4096,
		WSMaxClients:            20000,
		WSClientQueue:           256,
		WSClientQueueBytes:      16 << 20,
		WSMaxInFlight:           256,
		WSMaxPendingBytes:       16 << 20,
		WSMaxSubscriptions:      128,
		MaxSubscriptions:        100000,
		WSMaxSubscriptionsPerIP: 0,
		WSPingInterval:          30 * time.Second, // go-ethereum pings after 30 s idle
		WSPongTimeout:           30 * time.Second,
		WSProbeTimeout:          5 * time.Second,
		WSDialTimeout:           10 * time.Second,
		WSWriteTimeout:          10 * time.Second,
		WSBackoffMin:            100 * time.Millisecond,
		WSBackoffMax:            10 * time.Second,
		WSClientWriteTimeout:    10 * time.Second,
		WSAllowedOrigins:        []string{"*"},
		Retries:                 2,
		HedgeMaxExtra:           0.1,
		ArchiveDepth:            128, // what full (non-archive) nodes keep state for
		HealthWindow:            30 * time.Second,
		BanMinRequests:          10,
		BanErrorRate:            0.5,
		BanFailures:             3,
		MaxLag:                  5,
		SlowFactor:              5,
		SlowMin:                 time.Second,
		BanMin:                  5 * time.Second,
		BanMax:                  5 * time.Minute,
		Readmit:                 2,
		ProbeInterval:           5 * time.Second,
		ReviewInterval:          time.Second,
		ConfigPoll:              2 * time.Second,
		CacheEnabled:            true,
		CacheSize:               10000,
		CacheMaxBytes:           256 << 20,
		CacheMaxAge:             15 * time.Second,
		CacheDepth:              64,
		Logs:                    DefaultLogs(),
		HeadPoll:                2 * time.Second,
		ReadTimeout:             30 * time.Second,
		WriteTimeout:            60 * time.Second,
		IdleTimeout:             120 * time.Second,
		ShutdownTimeout:         20 * time.Second,
		LogLevel:                slog.LevelInfo,
		SharedCache:             true,
		SharedCacheTTL:          24 * time.Hour,
		BudgetReplicas:          1,
		BudgetWait:              250 * time.Millisecond,
		BudgetQueueBytes:        1 << 20,
		SharedCacheMaxValue:     256 << 10,
		LogFormat:               "json",
		TraceSampleRatio:        0.01,
		TraceParentBased:        true,
		TraceParentRate:         100,

		// 4 MiB a minute: a tenant reading history block by block (a few hundred KiB
		// each) is not held back; one flooding distinct answers adds at most ~6 GiB a
		// day per replica, which the TTL then removes.
		SharedCacheTenantBytes: 4 << 20,
		SharedCacheBudget:      40 * time.Millisecond,

		// geth's own filter timeout; a filter's state is under 25 KB (criteria at most
		// 16 KiB, 256 block marks), so 10,000 fit in 64 MiB with room.
		FilterTimeout:      5 * time.Minute,
		FilterMaxPerTenant: 100,
		FilterMaxTotal:     10000,
		FilterMaxBytes:     64 << 20,
	}
}

// UpstreamSpecs returns the upstreams: the one the flags configure, named "default"
// (the configuration file, when given, lists its own).
func (c *Config) UpstreamSpecs() []upstream.Spec {
	if len(c.Upstreams) > 0 {
		return c.Upstreams
	}
	sp := upstream.Spec{Name: "default", HTTPURL: c.UpstreamHTTPURL, WSURL: c.UpstreamWSURL,
		Tier: upstream.TierPrimary, Weight: 1, Archive: true}
	if !c.SecretWithheld() {
		sp.User, sp.Password = c.UpstreamUser, c.UpstreamSecret
	}
	return []upstream.Spec{sp}
}

// CORSList is -cors-origins as a list: "*", or the origins allowed; empty: CORS off.
func (c *Config) CORSList() []string { return splitList(c.CORSOrigins) }

// SecretWithheld reports whether INFURA_PROJECT_SECRET is set but kept from the flags'
// upstream because that upstream is not Infura over TLS: the secret is Infura's, and
// sent anywhere else (a local node, another provider, a plain-HTTP host) it would be
// handed to a third party. Another provider's credentials go in its own URL.
func (c *Config) SecretWithheld() bool {
	if c.UpstreamSecret == "" {
		return false
	}
	return !InfuraTLS(c.UpstreamHTTPURL) || c.UpstreamWSURL != "" && !InfuraTLS(c.UpstreamWSURL)
}

// InfuraTLS reports whether raw is an Infura endpoint reached over TLS: https or wss,
// on infura.io or one of its subdomains.
func InfuraTLS(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" && u.Scheme != "wss" {
		return false
	}
	h := strings.ToLower(u.Hostname())
	return h == "infura.io" || strings.HasSuffix(h, ".infura.io")
}

// TracingConfig is the tracer's configuration; version is the gateway's.
func (c *Config) TracingConfig(version string) tracing.Config {
	return tracing.Config{Exporter: c.TraceExporter, Endpoint: c.TraceEndpoint, Ratio: c.TraceSampleRatio,
		ParentBased: c.TraceParentBased, ParentRate: c.TraceParentRate, Service: "infura-gateway", Version: version}
}
