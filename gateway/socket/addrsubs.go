// The subscriptions of one client address. Each client is bounded by
// -ws-max-subscriptions and the gateway by -max-subscriptions; without a bound per
// address, one address opening many connections took the whole gateway's (the audit:
// 782 connections at the defaults, a goroutine and an upstream subscription each when
// their filters differ). IPv6 addresses count by their /64: one host has many; and the
// /64s of one /48 (one site: a client can take many /64s of its own) hold at most
// block48Share times the bound together, as the filters of anonymous clients do.

package socket

import (
	"net/netip"
	"sync"

	"github.com/infura-gateway/infura-gateway/gateway/clientip"
)

// addrSubs counts the subscriptions held per client address, up to max (0: no bound).
type addrSubs struct {
	max int32
	mu  sync.Mutex
	n   map[netip.Addr]int32
	b48 map[netip.Addr]int32 // IPv6 only: the subscriptions of each /48
}

// block48Share bounds an IPv6 /48's subscriptions together: this many times max.
const block48Share = 16

// acquire counts one more subscription of addr; false when it holds max already.
func (s *addrSubs) acquire(addr netip.Addr) bool {
	if s.max <= 0 {
		return true
	}
	k := clientip.Key(addr)
	b, six := clientip.Site(addr)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n[k] >= s.max || six && s.b48[b] >= block48Share*s.max {
		return false
	}
	if s.n == nil {
		s.n = make(map[netip.Addr]int32)
	}
	s.n[k]++
	if six {
		if s.b48 == nil {
			s.b48 = make(map[netip.Addr]int32)
		}
		s.b48[b]++
	}
	return true
}

// release gives back k subscriptions of addr.
func (s *addrSubs) release(addr netip.Addr, k int32) {
	if s.max <= 0 || k <= 0 {
		return
	}
	key := clientip.Key(addr)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n[key] -= k; s.n[key] <= 0 {
		delete(s.n, key) // the map holds the addresses with subscriptions only
	}
	if b, six := clientip.Site(addr); six {
		if s.b48[b] -= k; s.b48[b] <= 0 {
			delete(s.b48, b)
		}
	}
}
