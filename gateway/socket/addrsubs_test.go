package socket

import (
	"net/netip"
	"testing"

	"github.com/VictoriaMetrics/metrics"

	"github.com/infura-gateway/infura-gateway/gateway/config"
	"github.com/infura-gateway/infura-gateway/gateway/network"
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

// The /64s of one IPv6 /48 hold at most block48Share times the bound together: a client
// with a /48 of its own took a new /64 per connection and passed the bound per address
// as often as it liked. Another /48 and IPv4 clients are not held by it.
func TestAddrSubsPerIPv6Block48(t *testing.T) {
	s := addrSubs{max: 2}
	site := func(i int) netip.Addr {
		return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, byte(i), 15: 1})
	}
	for i := range block48Share {
		for range 2 {
			if !s.acquire(site(i)) {
				t.Fatalf("/64 number %d refused under the /48's total (%v)", i, s.b48)
			}
		}
	}
	if s.acquire(site(block48Share)) {
		t.Fatalf("a /64 past the /48's total of %d admitted", block48Share*2)
	}
	if other := netip.MustParseAddr("2001:db8:2::1"); !s.acquire(other) {
		t.Fatal("another /48 refused")
	}
	if !s.acquire(netip.MustParseAddr("192.0.2.7")) {
		t.Fatal("an IPv4 client refused")
	}
	s.release(site(0), 2)
	if !s.acquire(site(block48Share)) {
		t.Fatal("the /48 still full after two subscriptions went back")
	}
	for i := 1; i <= block48Share; i++ {
		n := int32(2)
		if i == block48Share {
			n = 1
		}
		s.release(site(i), n)
	}
	s.release(netip.MustParseAddr("2001:db8:2::1"), 1)
	s.release(netip.MustParseAddr("192.0.2.7"), 1)
	if len(s.n) != 0 || len(s.b48) != 0 {
		t.Fatalf("counts left after every release: %v %v", s.n, s.b48)
	}
}

// An eth_subscribe refused after its client was gone (the refusal already on its way
// when cleanup's LeaveAll ran, then dropAll gave every subscription back) gives nothing
// back a second time. Before, it did: the gateway's count went one below what was held
// and the address's one below what its other connections held, so they could take one
// subscription past the bound each time.
func TestLateRefusalAfterTheClientIsGoneGivesNothingBack(t *testing.T) {
	h := &Server{cfg: &config.Config{WSMaxSubscriptions: 10}, subs: network.NewBudget(100),
		addrSubs: addrSubs{max: 5}, refused: metrics.NewSet().NewCounter("refused")}
	a := netip.MustParseAddr("192.0.2.7")
	gone, other := &wsClient{h: h, addr: a}, &wsClient{h: h, addr: a}
	for _, c := range []*wsClient{other, other, gone, gone} {
		if e := c.takeSub(); e != nil {
			t.Fatal(e)
		}
	}
	gone.dropAll() // cleanup
	gone.dropSub() // a subscribe's refusal arriving after it (Reply)
	if n := h.subs.InUse(); n != 2 {
		t.Fatalf("the gateway counts %d subscriptions, want the other connection's 2", n)
	}
	took := 0
	for other.takeSub() == nil {
		took++
	}
	if took != 3 {
		t.Fatalf("the address's other connection took %d more subscriptions, want 3 (bound 5, 2 held)", took)
	}
}
