//go:build !race

package upstream

import (
	"testing"
)

// TestVerifyAllocatesNothing: every integrity check, on an answer that passes and on
// one that fails, reads the bytes in place; an unchecked method costs a table lookup.
func TestVerifyAllocatesNothing(t *testing.T) {
	r := testRouter(t, Spec{Name: "one", HTTPURL: "http://127.0.0.1:1"})
	u := byName(r, "one")
	calls := []struct{ method, params, result string }{
		{"eth_getBalance", `["0x01","latest"]`, `"0x1"`},
	}
	for _, c := range integrityCases {
		calls = append(calls, struct{ method, params, result string }{c.method, c.params, c.right},
			struct{ method, params, result string }{c.method, c.params, c.wrong})
	}
	for _, c := range calls {
		req := request(c.method, c.params)
		ans := []byte(`{"jsonrpc":"2.0","id":1,"result":` + c.result + `}`)
		if n := testing.AllocsPerRun(1000, func() { r.verify(u, req, ans) }); n != 0 {
			t.Errorf("%s %s: %v allocations per check, want 0", c.method, c.result, n)
		}
	}
}
