package clientip

import "net/netip"

// Key is the address a client counts under in every per-client bound (connections,
// anonymous limits, filters, subscriptions): an IPv4 address, or an IPv6 address's /64.
// A host usually holds a whole /64: counted per address, a new source address per
// connection would pass every bound.
func Key(a netip.Addr) netip.Addr {
	if a = a.Unmap(); a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// Site is the /48 an IPv6 client counts under too (a site can take many /64s of its
// own); false for IPv4.
func Site(a netip.Addr) (netip.Addr, bool) {
	if a = a.Unmap(); a.Is6() {
		p, _ := a.Prefix(48)
		return p.Addr(), true
	}
	return netip.Addr{}, false
}
