package gateway

import (
	"crypto/tls"
	"fmt"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/access"
	"github.com/infura-gateway/infura-gateway/gateway/clientip"
	"github.com/infura-gateway/infura-gateway/gateway/config"
	"github.com/infura-gateway/infura-gateway/gateway/limit"
	"github.com/infura-gateway/infura-gateway/gateway/redisconn"
	"github.com/infura-gateway/infura-gateway/gateway/sharedcache"
)

// startAccess connects Redis (when configured), creates the limiter (shared through
// Redis, or per process) and the shared cache tier, and loads the keys.
func (s *Server) startAccess() error {
	cfg := &s.cfg
	s.describeAccessMetrics()
	s.proxyProtocol = cfg.ProxyProtocol
	trusted, err := clientip.ParsePrefixes(cfg.TrustedProxies)
	if err != nil {
		return err
	}
	if cfg.RedisAddr != "" {
		rc := redisconn.Config{Addr: cfg.RedisAddr, Username: cfg.RedisUsername, Password: cfg.RedisPassword, Log: s.log}
		if cfg.RedisTLS {
			rc.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		// The limiter's connection has no caller a request waits on (leases are
		// background), so its calls and its breaker's probes get the limiter's lease
		// deadline, not 50 ms: on a saturated CPU a late answer is not Redis down, and a
		// breaker opened by one would put every limit on the fallback.
		lc := rc
		lc.CallTimeout = limit.DefaultLeaseTimeout
		if s.redis, err = redisconn.New(lc, s.reg.Set); err != nil {
			return fmt.Errorf("redis: %w", err)
		}
		if cfg.SharedCache && cfg.CacheEnabled {
			// The shared tier gets a client and a breaker of its own: its large values
			// must not queue the limiter's leases behind them on one pipelined
			// connection, and its timeouts must not open the limiter's breaker (which
			// would put every limit in per-process fallback).
			rc.Name = "cache"
			// Its calls (the writers' too) get at least the tier's request budget.
			rc.CallTimeout = max(cfg.SharedCacheBudget, 50*time.Millisecond)
			if cfg.SharedCacheRedisAddr != "" {
				rc.Addr = cfg.SharedCacheRedisAddr // a cache-only instance (allkeys-lru)
			}
			if s.sharedRedis, err = redisconn.New(rc, s.reg.Set); err != nil {
				s.closeAccess()
				return fmt.Errorf("redis (cache): %w", err)
			}
		}
	}
	if s.limiter, err = limit.New(limit.Config{FailClosed: cfg.LimitsFailClosed}, s.redis, s.reg.Set); err != nil {
		s.closeAccess()
		return err
	}
	if s.sharedRedis != nil {
		tenantBytes := int64(cfg.SharedCacheTenantBytes)
		if tenantBytes == 0 {
			tenantBytes = -1 // no budget
		}
		s.shared, err = sharedcache.New(sharedcache.Config{TTL: cfg.SharedCacheTTL, MaxValueBytes: cfg.SharedCacheMaxValue,
			TenantBytesPerMinute: tenantBytes, RequestBudget: cfg.SharedCacheBudget}, s.sharedRedis, s.reg.Set)
		if err != nil {
			s.closeAccess()
			return err
		}
	}
	s.acc = access.New(s.reg, s.limiter)
	s.acc.SetTrustedProxies(trusted)
	if err := s.acc.Load(cfg.Keys); err != nil {
		s.closeAccess()
		return fmt.Errorf("keys: %w", err)
	}
	s.wg.Add(1)
	go s.sweepAnonymous()
	return nil
}

// describeAccessMetrics writes the HELP texts of the families gateway/limit,
// gateway/redisconn and gateway/sharedcache create (they take a bare metrics.Set).
func (s *Server) describeAccessMetrics() {
	for name, help := range map[string]string{
		"gateway_limit_handles":                       "Limit handles alive (one per key and limit, and per active anonymous client address).",
		"gateway_limit_lease_calls_total":             "Allowances leased from Redis (one per handle and lease).",
		"gateway_limit_lease_errors_total":            "Leases that failed (Redis unreachable or slow); limits then fall back per process or fail closed.",
		"gateway_limit_lease_batches_total":           "Pipelined lease round trips to Redis.",
		"gateway_limit_wake_dropped_total":            "Early lease requests dropped because a shard's queue was full (the next periodic lease covers them).",
		"gateway_limit_fallback_total":                "Checks decided per process because Redis was unusable, by kind of limit.",
		"gateway_limit_refused_total":                 "Checks refused, by kind of limit and reason (exceeded, too_large, redis_down).",
		"gateway_sharedcache_ready":                   "1 once the shared cache tier knows the chain it serves (from the upstream's eth_chainId; its keys carry it); until then the tier is skipped.",
		"gateway_redis_up":                            "1 while the Redis connection is usable (its circuit breaker closed), 0 while it is not; client=\"redis\" is the limiter's, client=\"cache\" the shared cache tier's (each has its own connection and breaker).",
		"gateway_redis_calls_total":                   "Calls to Redis.",
		"gateway_redis_errors_total":                  "Calls to Redis that failed or passed their deadline.",
		"gateway_redis_breaker_opened_total":          "Times Redis was declared unusable after consecutive failures.",
		"gateway_redis_breaker_closed_total":          "Times Redis was usable again after a successful probe.",
		"gateway_sharedcache_requests_total":          "Shared cache (Redis) lookups by result: hit, miss, skipped (at once, Redis unusable).",
		"gateway_sharedcache_sets_total":              "Answers written to the shared cache.",
		"gateway_sharedcache_drops_total":             "Answers not written to the shared cache (queue full or write failed).",
		"gateway_sharedcache_errors_total":            "Shared cache calls that failed.",
		"gateway_sharedcache_value_too_large_total":   "Answers larger than -shared-cache-max-value, never stored.",
		"gateway_sharedcache_over_budget_total":       "Answers not written to the shared cache because their tenant had written its -shared-cache-tenant-bytes for the minute.",
		"gateway_sharedcache_leader_fetches_total":    "Misses this replica fetched from the upstream for every replica (it won the fetch claim).",
		"gateway_sharedcache_follower_hits_total":     "Misses answered by another replica's fetch while this one waited.",
		"gateway_sharedcache_follower_timeouts_total": "Waits for another replica's fetch that ran out; this replica fetched itself.",
		"gateway_sharedcache_queue_bytes":             "Bytes of answers waiting to be written to the shared cache.",
	} {
		s.reg.Describe(name, help)
	}
}

// reloadAccess applies the keys, plans and trusted proxies of a reloaded file.
func (s *Server) reloadAccess(next config.Config) error {
	trusted, err := clientip.ParsePrefixes(next.TrustedProxies)
	if err != nil {
		return err
	}
	if err := s.acc.Load(next.Keys); err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	s.acc.SetTrustedProxies(trusted)
	for _, f := range s.frontList() { // open websockets follow: closed if their key went, on the new plan if it changed
		if f.sock != nil {
			f.sock.Review()
		}
	}
	return nil
}

// sweepAnonymous drops idle per-address limits once a minute.
func (s *Server) sweepAnonymous() {
	defer s.wg.Done()
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.acc.SweepAnonymous()
		}
	}
}

// closeAccess ends the shared cache's writers, the limiter's leasing and the Redis
// connections, in that order (each uses its connection).
func (s *Server) closeAccess() {
	if s.shared != nil {
		s.shared.Close()
	}
	if s.sharedRedis != nil {
		s.sharedRedis.Close()
	}
	if s.limiter != nil {
		s.limiter.Close()
	}
	if s.redis != nil {
		s.redis.Close()
	}
}
