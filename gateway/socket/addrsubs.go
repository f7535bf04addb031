// The subscriptions of one client address. Each client is bounded by
// -ws-max-subscriptions and the gateway by -max-subscriptions; without a bound per
// address, one address opening many connections took the whole gateway's (the audit:
// 782 connections at the defaults, a goroutine and an upstream subscription each when
// their filters differ). IPv6 addresses count by their /64: one host has many.

package socket

import (
	"net/netip"
	"sync"
)

// addrSubs counts the subscriptions held per client address, up to max (0: no bound).
type addrSubs struct {
	max int32
	mu  sync.Mutex
	n   map[netip.Addr]int32
}

// addrKey is the address a client counts under: its /64 for IPv6.
func addrKey(a netip.Addr) netip.Addr {
	if a.Is6() && !a.Is4In6() {
		if p, err := a.Prefix(64); err == nil {
			return p.Addr()
		}
	}
	return a.Unmap()
}

// acquire counts one more subscription of addr; false when it holds max already.
func (s *addrSubs) acquire(addr netip.Addr) bool {
	if s.max <= 0 {
		return true
	}
	k := addrKey(addr)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n[k] >= s.max {
		return false
	}
	if s.n == nil {
		s.n = make(map[netip.Addr]int32)
	}
	s.n[k]++
	return true
}

// release gives back k subscriptions of addr.
func (s *addrSubs) release(addr netip.Addr, k int32) {
	if s.max <= 0 || k <= 0 {
		return
	}
	key := addrKey(addr)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n[key] -= k; s.n[key] <= 0 {
		delete(s.n, key) // the map holds the addresses with subscriptions only
	}
}
