package proto

import "testing"

func TestMethodSet(t *testing.T) {
	s := NewMethodSet([]string{"admin_", "eth_get*", "net_version", "debug"})
	for _, c := range []struct {
		name string
		want bool
	}{
		{"admin_nodeInfo", true}, {"admin_", true}, {"admin", false}, {"adminx_y", false},
		{"eth_getBalance", true}, {"eth_get", true}, {"eth_ge", false}, {"eth_call", false},
		{"net_version", true}, {"net_versions", false}, {"net_", false},
		{"debug", true}, {"debug_traceTransaction", false}, // no _ and no *: exact
		{"", false},
	} {
		if got := s.Has([]byte(c.name)); got != c.want {
			t.Errorf("Has(%q) = %v, want %v", c.name, got, c.want)
		}
	}
	if s.Empty() || !NewMethodSet(nil).Empty() || (MethodSet{}).Has([]byte("eth_call")) {
		t.Fatal("Empty: a set with entries is empty, or the zero set is not")
	}
	if a := testing.AllocsPerRun(100, func() { s.Has([]byte("eth_chainId")) }); a != 0 {
		t.Fatalf("Has allocates %v times", a)
	}
}
