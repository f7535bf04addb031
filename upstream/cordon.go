// Cordons: an operator's hold on an upstream. A cordoned upstream takes no new calls
// (not even as a last resort: the operator took it out on purpose, e.g. its provider's
// bill), carries no subscription (they move away as from a banned one) and moves no
// served head; calls already in flight finish. Its health loops go on, so it is ready
// at once when uncordoned. The router keeps cordons by name: an upstream rebuilt by a
// reload, or configured later, finds its cordon; the gateway's admin endpoints set
// them (fleet-wide through Redis, gateway/admin).

package upstream

import (
	"errors"
	"fmt"
	"maps"
	"time"
)

// Cordon is why, by whom and since when an upstream is cordoned.
type Cordon struct {
	Reason string `json:"reason"`
	// By is who asked (as the operator named themselves; may be empty); Replica, the
	// gateway replica that took the request.
	By      string    `json:"by"`
	Replica string    `json:"replica,omitempty"`
	Since   time.Time `json:"since"`
	// Drain: the operator asked for its calls in flight to end (gateway_upstream_draining
	// is 1 while some remain).
	Drain bool `json:"drain,omitempty"`
}

// ErrUnknownUpstream is returned for a name no upstream of the router has.
var ErrUnknownUpstream = errors.New("no such upstream")

// cordoned reports whether u takes no new calls: one atomic load, on the hot path.
func (u *Upstream) cordoned() bool { return u.cordon.Load() != nil }

// Cordoned returns u's cordon, if any.
func (u *Upstream) Cordoned() (Cordon, bool) {
	if c := u.cordon.Load(); c != nil {
		return *c, true
	}
	return Cordon{}, false
}

// InFlight returns the calls the gateway has outstanding on u.
func (u *Upstream) InFlight() int32 { return u.inFlight.Load() }

// draining reports whether u was drained and still has calls in flight.
func (u *Upstream) draining() bool {
	c := u.cordon.Load()
	return c != nil && c.Drain && u.inFlight.Load() > 0
}

// Upstream returns the configured upstream named name, nil when there is none.
func (r *Router) Upstream(name string) *Upstream {
	for _, u := range r.set.Load().all {
		if u.spec.Name == name {
			return u
		}
	}
	return nil
}

// Cordon cordons the upstream named name; a second call replaces the cordon.
func (r *Router) Cordon(name string, c Cordon) error {
	if r.Upstream(name) == nil {
		return fmt.Errorf("cordon %q: %w", name, ErrUnknownUpstream)
	}
	r.cordonMu.Lock()
	next := maps.Clone(r.cordons)
	if next == nil {
		next = map[string]Cordon{}
	}
	next[name] = c
	r.applyCordons(next)
	r.cordonMu.Unlock()
	return nil
}

// Uncordon lifts the cordon of the upstream named name (none: nothing changes).
func (r *Router) Uncordon(name string) error {
	if r.Upstream(name) == nil {
		return fmt.Errorf("uncordon %q: %w", name, ErrUnknownUpstream)
	}
	r.cordonMu.Lock()
	next := maps.Clone(r.cordons)
	delete(next, name)
	r.applyCordons(next)
	r.cordonMu.Unlock()
	return nil
}

// SetCordons makes all the cordons: exactly the upstreams named in all are cordoned
// (a fleet's state read back from Redis). Names not configured here are kept for
// when they are.
func (r *Router) SetCordons(all map[string]Cordon) {
	r.cordonMu.Lock()
	r.applyCordons(maps.Clone(all))
	r.cordonMu.Unlock()
}

// Cordons returns the cordons by upstream name.
func (r *Router) Cordons() map[string]Cordon {
	r.cordonMu.Lock()
	defer r.cordonMu.Unlock()
	return maps.Clone(r.cordons)
}

// applyCordons stores next and sets each upstream's cordon; called with cordonMu held.
// Subscriptions on a newly cordoned upstream move at once.
func (r *Router) applyCordons(next map[string]Cordon) {
	r.cordons = next
	moved := false
	for _, u := range r.set.Load().all {
		c, on := next[u.spec.Name]
		was, wasOn := u.Cordoned()
		switch {
		case on && (!wasOn || was != c):
			u.cordon.Store(&c)
			if !wasOn {
				moved = true
				r.log.Warn("upstream cordoned: it takes no new calls", "upstream", u.spec.Name, "reason", c.Reason,
					"by", c.By, "replica", c.Replica, "drain", c.Drain)
			}
		case !on && wasOn:
			u.cordon.Store(nil)
			r.log.Info("upstream uncordoned: it takes calls again", "upstream", u.spec.Name)
		}
	}
	if moved {
		r.subs.review()
	}
}

// cordonOf is the cordon an upstream named name starts with (nil: none).
func (r *Router) cordonOf(name string) *Cordon {
	r.cordonMu.Lock()
	defer r.cordonMu.Unlock()
	if c, ok := r.cordons[name]; ok {
		return &c
	}
	return nil
}

// cordonSeries are the per-upstream cordon gauges' names, for removal.
func cordonSeries(u *Upstream) [2]string {
	l := `{upstream="` + u.spec.Name + `"}`
	return [2]string{"gateway_upstream_cordoned" + l, "gateway_upstream_draining" + l}
}

func (m *routerMetrics) registerCordon(u *Upstream) {
	s := cordonSeries(u)
	m.reg.Gauge(s[0], "1 while an operator has cordoned the upstream (admin /admin/cordon): it takes no new calls.", func() float64 {
		return b2f(u.cordoned())
	})
	m.reg.Gauge(s[1], "1 while the upstream was drained (admin /admin/drain) and this replica still has calls in flight on it.",
		func() float64 { return b2f(u.draining()) })
}

func (m *routerMetrics) unregisterCordon(u *Upstream) {
	for _, s := range cordonSeries(u) {
		m.reg.Unregister(s)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
