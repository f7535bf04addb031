package filters

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestFilterLimitPerIPv6Block48: anonymous clients' filters count per /64 and also per
// /48 (16 times the per-client bound, as the anonymous limits count a /48), so one
// client holding a /48 (a usual allocation: 65,536 /64s) cannot fill the network's
// table and shut every other client out of eth_newFilter. Before, 100 /64s of one /48
// took all 10,000. Other /48s and IPv4 clients keep their own room.
func TestFilterLimitPerIPv6Block48(t *testing.T) {
	for _, sc := range storeCases {
		t.Run(sc.name, func(t *testing.T) {
			chain := newFakeChain()
			cfg := testConfig(&fakeClock{now: time.Now()})
			cfg.MaxPerTenant, cfg.MaxTotal = 2, 1000
			cfg = sc.cfg(t, cfg)
			s := New(cfg)
			var first string
			for n := range 16 {
				// As access.AddrScope names a /64: the canonical prefix ("2001:db8:1::/64").
				scope := "anon:" + netip.MustParsePrefix(fmt.Sprintf("2001:db8:1:%x::/64", n)).String()
				id := newFilter(t, s, chain, scope)
				if n == 0 {
					first = id
				}
				newFilter(t, s, chain, scope)
			}
			a := call(t, s, chain, "anon:2001:db8:1:10::/64", "eth_newBlockFilter")
			if a.Error == nil || a.Error.Code != -32005 || !strings.Contains(a.Error.Message, "at most 32 per IPv6 /48") {
				t.Fatalf("a 17th /64 of the /48: %s %+v, want -32005 naming the /48's bound", a.Result, a.Error)
			}
			newFilter(t, s, chain, "anon:2001:db8:2::/64")
			newFilter(t, s, chain, "anon:192.0.2.7/32")
			newFilter(t, s, chain, "key:a")
			// An uninstall makes room in the /48 again.
			if got := string(call(t, s, chain, "anon:2001:db8:1::/64", "eth_uninstallFilter", first).Result); got != "true" {
				t.Fatalf("uninstall: %s", got)
			}
			newFilter(t, s, chain, "anon:2001:db8:1:10::/64")
		})
	}
}
