package clientip

import (
	"bytes"
	"net/netip"
)

// Resolver finds the client address of an HTTP request from the TCP peer and
// X-Forwarded-For, believing the header only as far as trusted proxies wrote it.
// A Resolver is immutable and safe for concurrent use.
type Resolver struct {
	trusted []netip.Prefix
}

// NewResolver returns a resolver that trusts the given proxies (see ParsePrefixes). With
// none, X-Forwarded-For is ignored: the client is the TCP peer.
func NewResolver(trustedProxies []netip.Prefix) *Resolver {
	return &Resolver{trusted: append([]netip.Prefix(nil), trustedProxies...)}
}

// Trusted reports whether a is a trusted proxy.
func (r *Resolver) Trusted(a netip.Addr) bool { return trusted(r.trusted, a) }

// ClientIP returns the client address: the peer itself unless the peer is a trusted
// proxy; then X-Forwarded-For (the values of every such header, in order) is walked from
// the right, skipping trusted hops, and the first untrusted address is the client. An
// entry that is not an address (garbage, "unknown", an obfuscated id) ends the walk at
// the last trusted hop: what is left of it cannot be believed. Entries may carry a port
// ("1.2.3.4:5", "[2001:db8::1]:5"). It allocates nothing for well-formed headers.
func (r *Resolver) ClientIP(peer netip.Addr, xff ...[]byte) netip.Addr {
	cur := peer.Unmap()
	if len(r.trusted) == 0 || !r.Trusted(cur) {
		return cur
	}
	for i := len(xff) - 1; i >= 0; i-- {
		h := xff[i]
		for len(h) > 0 {
			var e []byte
			if c := bytes.LastIndexByte(h, ','); c >= 0 {
				e, h = h[c+1:], h[:c]
			} else {
				e, h = h, nil
			}
			e = bytes.TrimSpace(e)
			if len(e) == 0 {
				continue
			}
			a, ok := parseHop(e)
			if !ok {
				return cur
			}
			cur = a
			if !r.Trusted(cur) {
				return cur
			}
		}
	}
	return cur
}

func parseHop(b []byte) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(b2s(b)); err == nil {
		return a.Unmap(), a.Zone() == ""
	}
	if ap, err := netip.ParseAddrPort(b2s(b)); err == nil {
		return ap.Addr().Unmap(), ap.Addr().Zone() == ""
	}
	return netip.Addr{}, false
}
