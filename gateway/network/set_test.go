package network

import (
	"strings"
	"testing"
)

// TestSetResolve: a request picks its network by path prefix (name or alias), then by
// Host (exact, any case, port ignored; then the longest *.suffix), then the default.
func TestSetResolve(t *testing.T) {
	mainnet, sepolia, base := &Network{Name: "mainnet"}, &Network{Name: "sepolia"}, &Network{Name: "base-mainnet"}
	long := strings.Repeat("l", 70) // past the length mask's bits: looked up by the map
	var s Set
	s.Store([]Entry{
		{Net: mainnet, Aliases: []string{"eth", long}, Hosts: []string{"mainnet.gw.example", "*.example"}},
		{Net: sepolia, Hosts: []string{"sepolia.gw.example"}, Default: true},
		{Net: base, Hosts: []string{"*.base.example"}},
	})
	for _, tc := range []struct {
		path, host string
		want       *Network
		rest       string
		prefixed   bool
	}{
		{"/mainnet/v3/abc", "", mainnet, "/v3/abc", true},
		{"/eth/", "", mainnet, "/", true},
		{"/eth", "", mainnet, "/", true},
		{"/sepolia/ws/blocknumber", "mainnet.gw.example", sepolia, "/ws/blocknumber", true}, // the path wins
		{"/v3/abc", "MAINNET.gw.example:443", mainnet, "/v3/abc", false},
		{"/v3/abc", "sepolia.gw.example", sepolia, "/v3/abc", false},
		{"/v3/abc", "mainnet.gw.example.", mainnet, "/v3/abc", false},     // fully qualified: the same host
		{"/v3/abc", "MAINNET.gw.example.:443", mainnet, "/v3/abc", false}, // and with a port
		{"/", "rpc.base.example.", base, "/", false},                      // a wildcard's too
		{"/", "mainnet.gw.example..", sepolia, "/", false},                // one dot only: no such host
		{"/", "rpc.base.example", base, "/", false},                       // longest suffix
		{"/", "other.example", mainnet, "/", false},                       // *.example
		{"/", "example", sepolia, "/", false},                             // not a subdomain of example
		{"/", "[::1]:8080", sepolia, "/", false},                          // no match: the default
		{"/mainnetx/", "", sepolia, "/mainnetx/", false},                  // not a network: the default's routes answer 404
		{"/", "", sepolia, "/", false},
		{"", "", sepolia, "", false},
		{"/ws/blocknumber", "", sepolia, "/ws/blocknumber", false}, // no name of that length
		{"/sepoliaa/x", "", sepolia, "/sepoliaa/x", false},
		{"/" + long + "/x", "", mainnet, "/x", true},
		{"/" + long + "l/x", "", sepolia, "/" + long + "l/x", false},
		{"/" + long[:63], "", sepolia, "/" + long[:63], false},
		// Longer than a DNS name (253): still under a wildcard, any case; else the default.
		{"/", strings.Repeat("a.", 130) + "RPC.Base.Example", base, "/", false},
		{"/", strings.Repeat("a.", 130) + "base.example.:443", base, "/", false},
		{"/", strings.Repeat("a.", 130) + "mainnet.gw.example", mainnet, "/", false}, // *.example
		{"/", strings.Repeat("a.", 130) + "nowhere", sepolia, "/", false},
	} {
		n, rest, prefixed := s.Resolve([]byte(tc.path), []byte(tc.host))
		if n != tc.want || string(rest) != tc.rest || prefixed != tc.prefixed {
			t.Errorf("%q host %q: %v %q %v, want %v %q %v", tc.path, tc.host, name(n), rest, prefixed, tc.want.Name, tc.rest, tc.prefixed)
		}
	}
	if got := s.Names(); got != "mainnet, sepolia, base-mainnet" {
		t.Errorf("names %q", got)
	}
	if !s.Multi() {
		t.Error("not multi")
	}
}

// TestSetFirstIsDefault: without an entry marked default, the first is.
func TestSetFirstIsDefault(t *testing.T) {
	a, b := &Network{Name: "a"}, &Network{Name: "b"}
	var s Set
	s.Store([]Entry{{Net: a}, {Net: b}})
	if n, _, _ := s.Resolve([]byte("/"), nil); n != a {
		t.Fatalf("default %v, want a", name(n))
	}
}

// TestSetResolveAllocatesNothing: picking the network is on every request's path.
func TestSetResolveAllocatesNothing(t *testing.T) {
	var s Set
	s.Store([]Entry{{Net: &Network{Name: "mainnet"}, Hosts: []string{"mainnet.gw.example", "*.example"}},
		{Net: &Network{Name: "sepolia"}}})
	path, host, other := []byte("/sepolia/v3/abc"), []byte("Mainnet.GW.example:443"), []byte("x.example")
	if n := testing.AllocsPerRun(1000, func() {
		s.Resolve(path, nil)
		s.Resolve([]byte("/v3/abc"), host)
		s.Resolve([]byte("/"), other)
	}); n != 0 {
		t.Fatalf("%v allocations per resolve", n)
	}
}

func name(n *Network) string {
	if n == nil {
		return "<nil>"
	}
	return n.Name
}

// BenchmarkSetResolve: the network of the common paths of a one-network gateway.
func BenchmarkSetResolve(b *testing.B) {
	var s Set
	s.Store([]Entry{{Net: &Network{Name: "mainnet"}, Aliases: []string{"eth"}}})
	for _, p := range []string{"/blocknumber", "/ws/blocknumber", "/mainnet/blocknumber"} {
		b.Run(p, func(b *testing.B) {
			path := []byte(p)
			for b.Loop() {
				s.Resolve(path, nil)
			}
		})
	}
}
