package socket

import (
	"net/netip"
	"testing"
)

// Addresses count under their IPv4 form, IPv6 ones under their /64; an address whose
// subscriptions all went back leaves the map.
func TestAddrSubs(t *testing.T) {
	s := addrSubs{max: 2}
	a := netip.MustParseAddr("2001:db8:1:2::1")
	sameNet := netip.MustParseAddr("2001:db8:1:2:ffff::9")
	otherNet := netip.MustParseAddr("2001:db8:1:3::1")
	v4, v4in6 := netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("::ffff:192.0.2.7")
	for _, c := range []struct {
		addr netip.Addr
		want bool
	}{
		{a, true}, {sameNet, true}, {a, false}, {otherNet, true},
		{v4, true}, {v4in6, true}, {v4, false},
	} {
		if got := s.acquire(c.addr); got != c.want {
			t.Fatalf("acquire %v: %v, want %v (counts %v)", c.addr, got, c.want, s.n)
		}
	}
	s.release(sameNet, 2)
	s.release(otherNet, 1)
	s.release(v4in6, 2)
	if len(s.n) != 0 {
		t.Fatalf("counts left after every release: %v", s.n)
	}
	if !(&addrSubs{}).acquire(a) {
		t.Fatal("no bound (max 0) refused")
	}
}
