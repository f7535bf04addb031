//go:build !race

package gateway

import "testing"

// TestClientAddrAllocatesNothing: an anonymous call behind a trusted proxy, with the
// client's X-Forwarded-For on two lines, resolves its address and takes its per-address
// limit without allocating.
func TestClientAddrAllocatesNothing(t *testing.T) {
	path := writeFile(t, t.TempDir(), "anon.yaml", "anonymous: {plan: anon}\nplans:\n  anon: "+keyedPlan+"\n")
	s := newDirectServer(t, "-cache=false", "-config", path, "-trusted-proxies", "127.0.0.1")
	c := newDirectCall(s, "POST", "/", `{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}`)
	c.ctx.Request.Header.Add("X-Forwarded-For", "192.0.2.1, 203.0.113.9")
	c.ctx.Request.Header.Add("X-Forwarded-For", "2001:db8:1:2::7, 127.0.0.1")
	for range 100 {
		c.run(t)
	}
	if got := s.acc.ClientAddr(&c.ctx).String(); got != "2001:db8:1:2::7" {
		t.Fatalf("client %s, want 2001:db8:1:2::7 (the proxy's line)", got)
	}
	if n := allocsPerRequest(func() { c.run(t) }); n != 0 {
		t.Errorf("%v allocations per request, want 0", n)
	}
}
