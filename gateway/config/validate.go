package config

import (
	"errors"
	"fmt"
	"math/bits"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/clientip"
)

// Validate checks every field and returns the first problem as one line.
func (c *Config) Validate() error {
	if err := c.validateInfuraNetworks(); err != nil {
		return err
	}
	if err := c.validatePlanNetworks(); err != nil {
		return err
	}
	if err := c.validatePolicies(); err != nil {
		return err
	}
	if _, _, err := net.SplitHostPort(c.ListenAddr); err != nil {
		return fmt.Errorf("-listen %q: want host:port or :port", c.ListenAddr)
	}
	if c.AdminListen != "" {
		if _, _, err := net.SplitHostPort(c.AdminListen); err != nil {
			return fmt.Errorf("-admin-listen %q: want host:port or :port", c.AdminListen)
		}
		if sameListener(c.AdminListen, c.ListenAddr) {
			return errors.New("-admin-listen must differ from -listen: /metrics never goes on the public port")
		}
	}
	if c.Pprof && c.AdminListen == "" {
		return errors.New("-pprof needs -admin-listen: profiles are never served on the public port")
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
		{c.UpstreamDialTimeout > 0, "-upstream-dial-timeout must be > 0"},
		{c.UpstreamIdleTimeout > 0, "-upstream-idle-timeout must be > 0"},
		{c.MaxRequestBody >= 1024, "-max-request-body must be at least 1024 bytes"},
		{c.MaxResponseBody >= 1024, "-max-response-body must be at least 1024 bytes"},
		{c.MaxBatch > 0, "-max-batch must be > 0"},
		{c.MaxPendingBytes >= c.MaxRequestBody, "-max-pending-bytes must be at least -max-request-body"},
		{c.MaxAnswerBytes >= c.MaxResponseBody, "-max-answer-bytes must be at least -max-response-body (one answer of the largest size must fit)"},
		{c.MaxBodyReadBytes >= BodyBuffer(c.MaxRequestBody+2), "-max-body-read-bytes must be at least -max-request-body rounded up to a power of two (what the server allocates for one body of the largest size, chunked)"},
		{c.MaxConns >= 0, "-max-conns must be >= 0 (0: no bound)"},
		{c.MaxConnsPerIP >= 0, "-max-conns-per-ip must be >= 0 (0: no bound)"},
		{c.MaxConns == 0 || c.MaxConnsPerIP <= c.MaxConns, "-max-conns-per-ip must not exceed -max-conns"},
		{c.WSUpstreamConns > 0 && c.WSUpstreamConns <= 64, "-ws-upstream-conns must be between 1 and 64"},
		{c.WSUpstreamQueue > 0, "-ws-upstream-queue must be > 0"},
		{c.WSMaxClients > 0, "-ws-max-clients must be > 0"},
		{c.WSClientQueue > 0, "-ws-client-queue must be > 0"},
		{c.WSClientQueueBytes >= 1024, "-ws-client-queue-bytes must be at least 1024"},
		{c.WSMaxInFlight > 0, "-ws-max-in-flight must be > 0"},
		{c.WSMaxPendingBytes >= c.MaxRequestBody, "-ws-max-pending-bytes must be at least -max-request-body"},
		{c.WSMaxSubscriptions > 0 && c.WSMaxSubscriptions <= 1000, "-ws-max-subscriptions must be between 1 and 1000"},
		{c.MaxSubscriptions >= c.WSMaxSubscriptions, "-max-subscriptions must be at least -ws-max-subscriptions"},
		{c.WSMaxSubscriptionsPerIP >= 0, "-ws-max-subscriptions-per-ip must be >= 0 (0: no bound)"},
		{c.WSPingInterval >= time.Second, "-ws-ping-interval must be at least 1s"},
		{c.WSPongTimeout >= time.Second, "-ws-pong-timeout must be at least 1s"},
		{c.WSProbeTimeout >= 100*time.Millisecond, "-ws-probe-timeout must be at least 100ms"},
		{c.WSDialTimeout > 0, "-ws-dial-timeout must be > 0"},
		{c.WSWriteTimeout > 0, "-ws-write-timeout must be > 0"},
		{c.WSBackoffMin > 0 && c.WSBackoffMax >= c.WSBackoffMin, "-ws-backoff-min must be > 0 and at most -ws-backoff-max"},
		{c.WSClientWriteTimeout > 0, "-ws-client-write-timeout must be > 0"},
		{c.Retries >= 0 && c.Retries < 8, "-retries must be between 0 and 7"},
		{c.HedgeQuantile >= 0 && c.HedgeQuantile < 1, "-hedge-quantile must be in [0, 1)"},
		{c.HedgeMaxExtra >= 0 && c.HedgeMaxExtra <= 1, "-hedge-max-extra must be in [0, 1]"},
		{c.HealthWindow >= time.Second, "-health-window must be at least 1s"},
		{c.BanMinRequests > 0, "-ban-min-requests must be > 0"},
		{c.BanErrorRate > 0 && c.BanErrorRate <= 1, "-ban-error-rate must be in (0, 1]"},
		{c.BanFailures > 0, "-ban-failures must be > 0"},
		{c.SlowFactor > 1, "-slow-factor must be > 1"},
		{c.SlowMin > 0, "-slow-min must be > 0"},
		{c.BanMin > 0 && c.BanMax >= c.BanMin, "-ban-min must be > 0 and at most -ban-max"},
		{c.Readmit > 0, "-readmit must be > 0"},
		{c.ProbeInterval >= 100*time.Millisecond, "-probe-interval must be at least 100ms"},
		{c.ReviewInterval >= 10*time.Millisecond, "-review-interval must be at least 10ms"},
		{c.ConfigPoll >= 100*time.Millisecond, "-config-poll must be at least 100ms"},
		{c.CacheSize > 0, "-cache-size must be > 0"},
		{c.CacheMaxBytes >= 1<<20, "-cache-max-bytes must be at least 1 MiB"},
		{c.CacheMaxAge > 0, "-cache-max-age must be > 0"},
		{c.HeadPoll >= 100*time.Millisecond, "-head-poll must be at least 100ms"},
		{c.ReadTimeout >= 0 && c.WriteTimeout >= 0, "-read-timeout and -write-timeout must be >= 0"},
		{c.IdleTimeout > 0, "-idle-timeout must be > 0"},
		{c.ShutdownTimeout > 0, "-shutdown-timeout must be > 0"},
		{c.DrainDelay >= 0, "-drain-delay must be >= 0"},
		{c.WSDrainWindow >= 0, "-ws-drain-window must be >= 0"},
		{c.LogFormat == "json" || c.LogFormat == "text", "-log-format must be json or text"},
		{c.SharedCacheTTL >= time.Second, "-shared-cache-ttl (shared_cache.ttl) must be at least 1s"},
		{c.SharedCacheMaxValue >= 1024 && c.SharedCacheMaxValue <= 16<<20, "-shared-cache-max-value (shared_cache.max_value_bytes) must be between 1024 bytes and 16 MiB"},
		{c.SharedCacheTenantBytes >= 0, "-shared-cache-tenant-bytes (shared_cache.tenant_bytes_per_minute) must be >= 0 (0: no limit)"},
		{c.SharedCacheBudget >= time.Millisecond && c.SharedCacheBudget <= 5*time.Second, "-shared-cache-budget (shared_cache.request_budget) must be between 1ms and 5s"},
		{c.FilterTimeout >= time.Second, "-filter-timeout must be at least 1s"},
		{c.FilterMaxPerTenant > 0 && c.FilterMaxTotal >= c.FilterMaxPerTenant, "-filter-max-per-tenant must be > 0 and at most -filter-max-total"},
		{c.FilterMaxBytes >= 1<<20, "-filter-max-bytes must be at least 1 MiB"},
		{!c.ProxyProtocol || len(c.TrustedProxies) > 0, "-proxy-protocol needs -trusted-proxies: the header is read only from trusted load balancers"},
		{c.BudgetReplicas >= 1 && c.BudgetReplicas <= 1000, "-budget-replicas (shared_budget_replicas) must be between 1 and 1000"},
		{c.BudgetWait >= 0 && c.BudgetWait <= 10*time.Second, "-budget-wait must be between 0 and 10s"},
		{c.BudgetQueueBytes >= 0, "-budget-queue-bytes must be >= 0"},
		{c.RedisAddr != "" || c.RedisUsername == "" && c.RedisPassword == "" && !c.RedisTLS, "REDIS_USERNAME, REDIS_PASSWORD and -redis-tls need -redis-addr"},
		// Never the token itself in the message: it is a secret.
		{c.AdminToken == "" || len(c.AdminToken) >= 16, "ADMIN_TOKEN (-admin-token) must be at least 16 characters (e.g. openssl rand -hex 32)"},
		{c.AdminToken == "" || c.AdminListen != "", "ADMIN_TOKEN (-admin-token) needs the admin listener (-admin-listen)"},
	}
	for _, ch := range checks {
		if !ch.ok {
			return errors.New(ch.msg)
		}
	}
	if c.RedisAddr != "" {
		if err := checkRedisAddr(c.RedisAddr); err != nil {
			return fmt.Errorf("-redis-addr (REDIS_ADDR): %w", err)
		}
	}
	if c.SharedCacheRedisAddr != "" {
		if c.RedisAddr == "" {
			return errors.New("-shared-cache-redis-addr needs -redis-addr (the limits' Redis)")
		}
		if err := checkRedisAddr(c.SharedCacheRedisAddr); err != nil {
			return fmt.Errorf("-shared-cache-redis-addr: %w", err)
		}
	}
	if err := c.TracingConfig("").Validate(); err != nil {
		return err
	}
	if _, err := clientip.ParsePrefixes(c.TrustedProxies); err != nil {
		return fmt.Errorf("-trusted-proxies: %v", err)
	}
	if err := CheckSharedMethods(c.SharedCacheMethods); err != nil {
		return fmt.Errorf("-shared-cache-methods (shared_cache.methods): %w", err)
	}
	return checkCORSOrigins(c.CORSList())
}

// checkCORSOrigins checks -cors-origins: * alone, or origins as a browser sends them
// (scheme://host[:port], nothing after). A browser compares Access-Control-Allow-Origin
// with its origin exactly, so anything else would fail every browser call.
func checkCORSOrigins(list []string) error {
	for _, o := range list {
		if o == "*" {
			if len(list) > 1 {
				return errors.New("-cors-origins: * allows any origin; give * alone or a list of origins")
			}
			continue
		}
		u, err := url.Parse(o)
		if err != nil || u.Scheme == "" || u.Host == "" || u.User != nil || u.Path != "" || u.RawQuery != "" ||
			u.Fragment != "" || strings.HasSuffix(o, "?") || strings.HasSuffix(o, "#") {
			return fmt.Errorf("-cors-origins: %q is not an origin (scheme://host[:port], e.g. https://app.example)", o)
		}
	}
	return nil
}

// checkRedisAddr checks a Redis address: host:port, a host without spaces, a port from
// 1 to 65535. The value is never quoted back: a URL given by mistake may carry the
// password (redis://:secret@host:6379).
func checkRedisAddr(a string) error {
	if strings.Contains(a, "@") || strings.Contains(a, "://") {
		return errors.New("want host:port, not a URL (the password goes in REDIS_PASSWORD)")
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil || host == "" || strings.ContainsAny(host, " \t/") {
		return errors.New("want host:port")
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return errors.New("want host:port with a port from 1 to 65535")
	}
	return nil
}

// sameListener reports whether two listen addresses (validated host:port) would take
// the same port on a shared interface: the same port, and the same host or a host of
// every interface on either side.
func sameListener(a, b string) bool {
	ah, ap, _ := net.SplitHostPort(a)
	bh, bp, _ := net.SplitHostPort(b)
	every := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return ap == bp && ap != "0" && (ah == bh || every(ah) || every(bh))
}

// checkURL validates an upstream URL. Its errors never quote the URL: it may carry a
// key or a password.
func checkURL(flagName, raw string, schemes ...string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%s: not a URL", flagName)
	}
	for _, s := range schemes {
		if u.Scheme == s {
			if u.Hostname() == "" {
				return fmt.Errorf("%s: URL has no host", flagName)
			}
			// url.Parse takes any digits as a port: 99999 or 0 would pass the start
			// and fail every call at run time.
			if p := u.Port(); p != "" {
				if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
					return fmt.Errorf("%s: want a port from 1 to 65535", flagName)
				}
			}
			return nil
		}
	}
	return fmt.Errorf("%s: scheme must be %s, got %q", flagName, strings.Join(schemes, " or "), u.Scheme)
}

// ReadFloor is the size of a client request (an HTTP body, a websocket message) read
// without counting in -max-body-read-bytes: more than nearly every call, batches of a
// few hundred calls included.
const ReadFloor = 64 << 10

// BodyBuffer is the buffer the HTTP server allocates for a request body of n bytes
// before reading it: n rounded up to a power of two, up to 100 MiB (fasthttp's
// roundUpForSliceCap). -max-body-read-bytes counts it.
func BodyBuffer(n int) int {
	if n <= 0 || n > 100<<20 {
		return max(n, 0)
	}
	return 1 << bits.Len(uint(n-1))
}
