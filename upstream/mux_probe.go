// Probing a socket: a call that timed out on it has the writer ping it and its sibling
// sockets (slot.write); neither the pong nor an answer back within probeWindow declares
// a socket stalled.

package upstream

import (
	"fmt"
	"time"
)

// ping writes a ping, noting when unless one is unanswered already (its pong then
// measures the round trip from the older one).
func (s *slot) ping(conn *wireConn) error {
	now := time.Now()
	if s.pingAt.CompareAndSwap(0, monoNs(now)) {
		s.largeAtPing.Store(s.large.Load())
	}
	if err := conn.writeControl(opPing, nil, now.Add(s.m.cfg.WriteTimeout)); err != nil {
		return fmt.Errorf("cannot ping upstream: %w", err)
	}
	return nil
}

// largeMessage is the size past which a message read between a ping and its pong
// makes the pong no measure of the round trip: the node wrote the pong after it, so
// the pong took its transfer (a 20 MB answer on a slow link: seconds, and a probe
// window of three times that, up to the keepalive's limit, until the next pong). Its
// reading holds a probe's verdict by itself (slot.write). Below it the transfer is a
// few milliseconds on any link; many small messages ahead of a pong (a burst of
// notifications on a congested link) are the route's queueing, which a probe's pong
// meets as well, and stay measured.
const largeMessage = 64 << 10

// readLarge notes a message of n bytes read (the reader, once per message).
func (s *slot) readLarge(n int) {
	if n > largeMessage {
		s.large.Add(1)
	}
}

// probeWindow is how long a probe waits for a pong or an answer: ProbeTimeout as
// configured, or three round trips of the socket when longer (a distant provider, a
// slow link). The round trips, a measure, count up to the keepalive's own limit (an
// upgrade that took a minute says little of the route); the configured timeout is the
// operator's word and is kept whole, also past that limit (the keepalive does not end a
// socket its notifications keep alive, whose pongs a probe waits for).
func (s *slot) probeWindow() time.Duration {
	cfg := &s.m.cfg
	return max(cfg.ProbeTimeout, min(3*time.Duration(s.rtt.Load()), cfg.PingInterval+cfg.PongTimeout))
}

// probeSiblings asks every other live socket of the Mux to probe itself, when a call
// timed out on one: the route may be dead for all of them (a load balancer that forgot
// its connections), and the subscriptions of one found stalled would otherwise move to
// a sibling dead the same way and sit there silent until a call of its own timed out.
// A live sibling answers the ping.
func (m *Mux) probeSiblings(from *slot) {
	for _, o := range m.slots {
		if o == from || !o.isUp.Load() {
			continue
		}
		select {
		case o.probe <- false:
		default: // a probe is asked for already
		}
	}
}

// probeAll asks every live socket of m to probe itself: the router found the
// subscriptions on them silent while the chain moved on (router_stall.go). A provider
// that dropped its subscriptions answers the pings and they are renewed; a route dead
// the node's way (the gateway's writes arrive, nothing comes back) does not, and its
// sockets are found stalled within a probe window, their subscriptions moved, instead
// of once the renewal's calls time out (the audit: 11-12 s without heads).
func (m *Mux) probeAll() { m.probeSiblings(nil) }

// suspected marks s under a probe: the router sends no call or subscription over its
// upstream's websocket while any socket is (Mux.Suspect), when another upstream can
// take it. A blackholed route would otherwise take a second call for a whole timeout.
func (s *slot) suspected() {
	if s.suspect.CompareAndSwap(false, true) {
		s.m.suspects.Add(1)
	}
}

// cleared ends s's suspicion: a pong or an answer came back, or the probe ended.
func (s *slot) cleared() {
	if s.suspect.CompareAndSwap(true, false) {
		s.m.suspects.Add(-1)
	}
}

// Suspect reports whether a socket of m is under a probe with nothing back yet: a call
// on it timed out, on it or on a sibling.
func (m *Mux) Suspect() bool { return m.suspects.Load() > 0 }
