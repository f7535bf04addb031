package upstream

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// The reconnect loop of one shared socket: dial, serve, back off; and how a provider
// that refused the gateway (a close frame, a refused upgrade) sets the back-off.

// run is the socket's supervisor: connect, serve until the connection fails, answer
// everything pending, back off, reconnect; until the Mux closes.
func (s *slot) run() {
	defer s.m.wg.Done()
	log := s.m.cfg.Logger.With("url", s.m.host, "conn", s.idx)
	backoff := s.m.cfg.BackoffMin
	reconnect := false
	for attempt := 1; ; attempt++ {
		conn, err := s.dial()
		if err != nil {
			if s.m.ctx.Err() != nil {
				return
			}
			// Jitter over the upper half keeps many gateways from reconnecting in step;
			// an upgrade the provider refused for its rate, quota or key waits at least
			// the back-off it stated.
			d := max(backoff/2+rand.N(backoff/2+1), s.m.closedBy(err))
			log.Warn("upstream websocket connect failed", "attempt", attempt, "retry_in", d, "err", err)
			if !s.sleep(d) {
				return
			}
			backoff = min(2*backoff, s.m.cfg.BackoffMax)
			continue
		}
		if reconnect {
			s.m.metrics.reconnects.Inc()
		}
		log.Info("upstream websocket connected", "attempt", attempt)
		connected := time.Now()
		var wait time.Duration
		wait, err = s.serve(conn)
		if s.m.ctx.Err() != nil {
			return
		}
		if errors.Is(err, errWrongChain) || errors.Is(err, errChainUnproven) {
			// The socket carried nothing: dial again after a backoff, as after a failed
			// dial. Another chain is logged by the router, once per change.
			d := backoff/2 + rand.N(backoff/2+1)
			if errors.Is(err, errWrongChain) {
				log.Debug("upstream websocket not used", "retry_in", d, "err", err)
			} else {
				log.Warn("upstream websocket not used", "retry_in", d, "err", err)
			}
			if !s.sleep(d) {
				return
			}
			backoff = min(2*backoff, s.m.cfg.BackoffMax)
			reconnect = true
			continue
		}
		reconnect = true
		if wait > 0 || time.Since(connected) < s.m.cfg.BackoffMax {
			// Closed for the provider's rate, quota or key, or soon after it opened (a
			// provider that accepts the upgrade and closes at once): a failed attempt,
			// not a socket that served. Dialling again at once would hammer it.
			d := max(backoff/2+rand.N(backoff/2+1), wait)
			log.Warn("upstream websocket lost", "retry_in", d, "err", err)
			if !s.sleep(d) {
				return
			}
			backoff = min(2*backoff, s.m.cfg.BackoffMax)
			continue
		}
		attempt, backoff = 0, s.m.cfg.BackoffMin
		log.Warn("upstream websocket lost", "err", err)
		if !s.sleep(rand.N(s.m.cfg.BackoffMin + 1)) {
			return
		}
	}
}

func (s *slot) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.m.ctx.Done():
		return false
	}
}

func (s *slot) dial() (*wireConn, error) {
	cfg := &s.m.cfg
	ctx, cancel := context.WithTimeout(s.m.ctx, cfg.DialTimeout)
	defer cancel()
	w, err := dialWire(ctx, cfg.URL, cfg.Header, cfg.TLSConfig, cfg.DialTimeout, cfg.ReadLimit, s.m.metrics)
	if err != nil {
		return nil, fmt.Errorf("cannot open upstream websocket: %w", err)
	}
	s.rtt.Store(int64(w.upgradeTook))
	s.pingAt.Store(0)
	// Dropping an oversized message holds every call on the socket: past one call's
	// time, the socket is given up instead (its calls fail over).
	w.skipTimeout = cfg.RequestTimeout
	w.answers = cfg.Answers
	return w, nil
}

// closedBy classifies how a socket ended or a dial failed: the close code and reason
// of a socket the upstream closed, or the status and Retry-After of an upgrade it
// refused. When the provider refused the gateway for its rate, its quota or the key, it
// returns how long to wait before dialling again: the back-off it stated (at most a
// minute, as the gate bounds a throttle), at least BackoffMin; otherwise 0. A socket
// closed so tells OnClosed (the upstream's gate, HTTP included); a refused upgrade
// does not: a provider may limit websocket connections alone, and its HTTP side
// answers for itself (a throttle there closes the gate on the first call).
func (m *Mux) closedBy(err error) time.Duration {
	var n note
	var ce *CloseError
	var he *HandshakeError
	closed := false
	switch {
	case errors.As(err, &ce):
		n, closed = m.cls.classifyClose(ce.Code, []byte(ce.Reason)), true
	case errors.As(err, &he):
		n = m.cls.classifyBody(he.Status, nil, []byte(he.RetryAfter), nil)
	default:
		return 0
	}
	if providerRefusal(n.class) == nil {
		return 0
	}
	if closed && m.cfg.OnClosed != nil {
		m.cfg.OnClosed(n.class, n.backoff)
	}
	return max(min(n.backoff, throttleStatedMax), m.cfg.BackoffMin)
}
