package gateway

import (
	"fmt"
	"math"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/infura-gateway/infura-gateway/gateway/limit"
	"github.com/infura-gateway/infura-gateway/upstream"
)

// The upstreams' budgets as limit handles of the Server's limiter: with Redis, one
// budget for the whole fleet (the limiter's leases, as the key limits); while Redis is
// down, or without it, a per-process handle at budget ÷ replicas (-budget-replicas,
// shared_budget_replicas), so the fleet still stays within the budget.

// budgetBurst is the share of a second of a requests_per_second budget that may go
// at once: providers count per second, so a full second of burst on top of the rate
// would double what one second may see.
const budgetBurst = 0.2

// budgetMeters is the meter factory of the upstreams of network.
func (s *Server) budgetMeters(network string, replicas int) upstream.MeterFactory {
	return func(up string, kind upstream.MeterKind, lim float64) (upstream.Meter, error) {
		name := "budget:" + network + ":" + up + ":" + kind.String()
		share := lim / float64(max(replicas, 1))
		m := &budgetMeter{redis: s.redis}
		if s.reg != nil {
			m.fallback = s.reg.Counter("gateway_budget_fallback_total",
				"Upstream budget takes decided on this replica's share (budget ÷ -budget-replicas) because the budget's Redis leases failed or Redis is not configured.")
		}
		var err error
		if s.redis != nil {
			if m.shared, err = newLimitMeter(s.limiter, name, kind, lim); err != nil {
				return nil, err
			}
		}
		local, err := s.localBudgetLimiter()
		if err != nil {
			return nil, err
		}
		if m.local, err = newLimitMeter(local, name, kind, share); err != nil {
			m.Close()
			return nil, err
		}
		return m, nil
	}
}

// localBudgetLimiter is a per-process limiter for the budgets' share while Redis is
// down; its own metrics set, kept out of /metrics (the budgets have their own series).
func (s *Server) localBudgetLimiter() (*limit.Limiter, error) {
	s.budgetLocalOnce.Do(func() {
		s.budgetLocal, s.budgetLocalErr = limit.New(limit.Config{}, nil, metrics.NewSet())
	})
	return s.budgetLocal, s.budgetLocalErr
}

// limitMeter is one limit handle: a bucket (requests or units per second, burst
// budgetBurst of a second) or a daily quota.
type limitMeter struct {
	bucket *limit.Bucket
	quota  *limit.Quota
}

func newLimitMeter(l *limit.Limiter, name string, kind upstream.MeterKind, lim float64) (*limitMeter, error) {
	if kind == upstream.MeterDaily {
		q, err := l.NewQuota(name, max(int64(lim), 1))
		if err != nil {
			return nil, fmt.Errorf("budget %s: %w", name, err)
		}
		return &limitMeter{quota: q}, nil
	}
	burst := max(int64(math.Ceil(lim*budgetBurst)), 1)
	if kind == upstream.MeterUnits {
		// A call costs up to thousands of units (trace_replayTransaction: 2983 on
		// Alchemy): a second of the rate, so one call never exceeds the burst.
		burst = max(int64(math.Ceil(lim)), 1)
	}
	b, err := l.NewBucket(name, lim, burst)
	if err != nil {
		return nil, fmt.Errorf("budget %s: %w", name, err)
	}
	return &limitMeter{bucket: b}, nil
}

// take spends n units: of the allowance leased from Redis only (never the limiter's
// per-process fallback at the full budget), or per process in local mode.
func (m *limitMeter) take(n int64) (bool, time.Duration) {
	var d limit.Decision
	if m.quota != nil {
		d = m.quota.TakeLeased(n)
	} else {
		d = m.bucket.TakeLeased(n)
	}
	return d.OK, d.RetryAfter
}

func (m *limitMeter) close() {
	if m == nil {
		return
	}
	if m.quota != nil {
		m.quota.Close()
	} else {
		m.bucket.Close()
	}
}

// budgetMeter takes from the fleet's budget (Redis's leases only) while Redis is
// usable, from this replica's share while it is not (the limiter's own fallback would
// take the full budget on every replica). A lease that is late while Redis is usable
// refuses takes (the call goes elsewhere or waits) rather than guess.
type budgetMeter struct {
	redis    interface{ Up() bool }
	shared   *limitMeter // nil without Redis
	local    *limitMeter
	fallback *metrics.Counter // nil in tests
}

func (m *budgetMeter) Take(n int64) (bool, time.Duration) {
	if m.shared != nil && m.redis.Up() {
		return m.shared.take(n)
	}
	if m.fallback != nil {
		m.fallback.Inc()
	}
	return m.local.take(n)
}

func (m *budgetMeter) Close() {
	m.shared.close()
	m.local.close()
}
