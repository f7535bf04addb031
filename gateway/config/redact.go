package config

import (
	"log/slog"
	"net/url"
	"sort"
	"strings"

	"github.com/infura-gateway/infura-gateway/gateway/redact"
)

// LogValue keeps secrets out of logs: every URL is redacted (RedactURL).
func (c Config) LogValue() slog.Value {
	var ups []string
	for _, n := range c.NetworkList() {
		for _, u := range n.Upstreams {
			d := u.Name + " " + u.Tier.String() + " " + RedactURL(u.HTTPURL)
			if u.WSURL != "" {
				d += " " + RedactURL(u.WSURL)
			}
			if n.Name != DefaultNetwork {
				d = n.Name + ": " + d
			}
			ups = append(ups, d)
		}
	}
	return slog.GroupValue(
		slog.String("listen", c.ListenAddr),
		slog.String("config_file", c.ConfigFile),
		slog.Any("upstreams", ups),
		slog.Bool("upstream_auth", c.UpstreamSecret != "" && !c.SecretWithheld()),
		slog.Bool("admin_token", c.AdminToken != ""),
		slog.Duration("upstream_timeout", c.UpstreamTimeout),
		slog.Int("ws_upstream_conns", c.WSUpstreamConns),
		slog.Bool("ws_per_client", c.WSPerClient),
		slog.Bool("cache", c.CacheEnabled),
		slog.Int("max_batch", c.MaxBatch),
		slog.Any("deny_methods", c.DenyMethods),
		slog.Int("keys", len(c.Keys.Keys)),
		slog.String("anonymous_plan", c.Keys.Anonymous),
		slog.String("redis", c.RedisAddr), // host:port only; the password is never in it
		slog.Bool("redis_tls", c.RedisTLS),
		slog.Bool("limits_fail_closed", c.LimitsFailClosed),
		slog.Bool("shared_cache", c.RedisAddr != "" && c.SharedCache),
		slog.Any("shared_cache_methods", c.SharedCacheMethods),
		slog.String("shared_cache_redis", c.SharedCacheRedisAddr),
		slog.Any("trusted_proxies", c.TrustedProxies),
		slog.Bool("proxy_protocol", c.ProxyProtocol),
	)
}

// RedactURL returns raw fit for a log line or a status page: user info, query values
// and every path segment that may be a key are replaced by "redacted". Providers carry
// keys in the path (Infura /v3/<id>, Alchemy /v2/<key>, QuickNode /<token>/) or in the
// query (?key=); a segment is kept only when it reads as a word (rpc, ws, mainnet) or a
// version (v3), and never right after a version.
func RedactURL(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(unparsable URL)"
	}
	out := u.Scheme + "://"
	if u.User != nil {
		out += "redacted@"
	}
	out += u.Host
	if u.Path != "" {
		out += "/" + redact.Segments(strings.TrimPrefix(u.Path, "/"))
	}
	if u.RawQuery != "" {
		q := u.Query()
		keys := make([]string, 0, len(q))
		for k := range q {
			keys = append(keys, url.QueryEscape(k)+"=redacted")
		}
		sort.Strings(keys)
		if len(keys) == 0 {
			keys = append(keys, "redacted")
		}
		out += "?" + strings.Join(keys, "&")
	}
	return out
}
