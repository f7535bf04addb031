package clientip

import (
	"net"
	"net/netip"
	"testing"
)

// An IPv6 client's connections count under its /64, as its anonymous limits, filters
// and subscriptions do: a host holds a /64 (2^64 addresses), so counted per address
// -max-conns-per-ip bounded nothing, and one client with a new source address per
// connection could take every connection of -max-conns.
func TestLimiterPerIPv6Block64(t *testing.T) {
	inner := listen(t, ListenerConfig{Trusted: mustPrefixes(t, "127.0.0.1")})
	s := startLimited(t, inner, Limits{Total: 100, PerIP: 2})
	dial6 := func(src string) net.Conn {
		t.Helper()
		c := dialFrom(t, "127.0.0.1", s.ln)
		hdr := AppendV1(nil, Header{Src: netip.MustParseAddrPort(src), Dst: netip.MustParseAddrPort("[2001:db8::443]:443")})
		if _, err := c.Write(append(hdr, "hello"...)); err != nil {
			t.Fatal(err)
		}
		return c
	}
	var served []net.Conn
	for _, src := range []string{"[2001:db8:1:2::1]:1000", "[2001:db8:1:2::2]:1000"} {
		dial6(src)
		served = append(served, s.wantServed())
	}
	// A third address of the same /64: past the bound of 2.
	wantRefused(t, dial6("[2001:db8:1:2:ffff::3]:1000"), "per_ip\n")
	// Another /64 (of the same /48) has its own.
	dial6("[2001:db8:1:3::1]:1000")
	served = append(served, s.wantServed())
	if got := s.lim.OpenFrom(netip.MustParseAddr("2001:db8:1:2::77")); got != 2 {
		t.Fatalf("OpenFrom an address of the /64: %d, want the /64's 2", got)
	}
	for _, c := range served {
		c.Close()
	}
}
