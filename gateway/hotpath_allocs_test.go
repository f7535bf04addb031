//go:build !race

// The race detector makes sync.Pool drop items at random, so allocation counts are only
// meaningful without it; `./task test` runs this file in a separate non-race pass.

package gateway

import (
	"strings"
	"testing"

	"github.com/infura-gateway/infura-gateway/gateway/internal/redistest"
)

// TestHotPathAllocatesNothing guards the 0 allocs/op claim: a regression fails here,
// not in a benchmark nobody reads.
func TestHotPathAllocatesNothing(t *testing.T) {
	s := newDirectServer(t, "-cache=false")
	for _, p := range hotPaths {
		c := newDirectCall(s, p.method, p.uri, p.body)
		for range 100 { // warm pools and connections
			c.run(t)
		}
		if n := allocsPerRequest(func() { c.run(t) }); n != 0 {
			t.Errorf("%s: %v allocations per request, want 0", p.name, n)
		}
	}
}

// TestCacheHitAllocatesNothing: a cache hit is served from stored bytes (REST: no copy;
// JSON-RPC: the caller's id spliced into the response buffer).
func TestCacheHitAllocatesNothing(t *testing.T) {
	s := newDirectServer(t, "-cache=true", "-cache-max-age", "1h")
	for _, p := range hotPaths {
		c := newDirectCall(s, p.method, p.uri, p.body)
		for range 100 {
			c.run(t)
		}
		if got := string(c.ctx.Response.Header.Peek("X-Cache")); got != "HIT" {
			t.Fatalf("%s: X-Cache %q after warm-up, want HIT", p.name, got)
		}
		if n := allocsPerRequest(func() { c.run(t) }); n != 0 {
			t.Errorf("%s: %v allocations per cache hit, want 0", p.name, n)
		}
	}
}

// TestKeyedHotPathAllocatesNothing: identifying the key (hashing it, the table lookup)
// and checking its limits — requests, units, daily quota — allocate nothing, per process
// and in Redis mode; nor does an anonymous caller's per-address limit.
func TestKeyedHotPathAllocatesNothing(t *testing.T) {
	rs := redistest.Start(t)
	for _, mode := range []struct{ name, redis string }{{"local", ""}, {"redis", rs.Addr}} {
		s := newKeyedServer(t, mode.redis, "-cache=false")
		for _, p := range keyedPaths {
			c := newKeyedCall(s, p.method, p.uri, p.header, p.body)
			// Long enough for the Redis client to have dialled its connections and the
			// leases to have grown to the load: what the background does then is not
			// the request's.
			for range 5000 {
				c.run(t)
			}
			if n := allocsPerRequest(func() { c.run(t) }); n != 0 {
				t.Errorf("%s, %s: %v allocations per request, want 0", mode.name, p.name, n)
			}
		}
	}
	path := writeFile(t, t.TempDir(), "anon.yaml", "anonymous: {plan: anon}\nplans:\n  anon: "+keyedPlan+"\n")
	s := newDirectServer(t, "-cache=false", "-config", path)
	c := newDirectCall(s, "POST", "/", `{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}`)
	for range 100 {
		c.run(t)
	}
	if n := allocsPerRequest(func() { c.run(t) }); n != 0 {
		t.Errorf("anonymous per-address limits: %v allocations per request, want 0", n)
	}
}

// TestNetworkResolutionAllocatesNothing: picking the network (a path prefix taken off,
// or a Host) adds no allocation to the hot path.
func TestNetworkResolutionAllocatesNothing(t *testing.T) {
	fake := startFakeUpstream(t, fakeFixed(fixedBlockNumber))
	// The fixed fake answers every call, eth_chainId too, with 0x10d4f: chain 68943.
	path := writeFile(t, t.TempDir(), "networks.yaml", `networks:
  - name: a
    chain_id: 68943
    upstreams: [{name: up-a, http: "`+fake.HTTPURL+`"}]
  - name: b
    chain_id: 68943
    hosts: [b.test, "*.b.example"]
    upstreams: [{name: up-b, http: "`+fake.HTTPURL+`"}]
`)
	s := newDirectServer(t, "-cache=false", "-config", path)
	for _, p := range []struct{ name, method, uri, host, body string }{
		{"POST /b/", "POST", "/b/", "", `{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}`},
		{"GET /b/blocknumber", "GET", "/b/blocknumber", "", ""},
		{"GET /blocknumber, Host b.test", "GET", "/blocknumber", "b.test", ""},
		{"GET /blocknumber, Host x.b.example", "GET", "/blocknumber", "X.b.example:443", ""},
	} {
		c := newDirectCall(s, p.method, p.uri, p.body)
		uri := []byte(p.uri)
		run := func() {
			// Each request is parsed anew in a server: the rewritten path must not stay.
			c.ctx.Request.SetRequestURIBytes(uri)
			if p.host != "" {
				c.ctx.Request.Header.SetHost(p.host)
			}
			c.run(t)
		}
		for range 100 {
			run()
		}
		if n := allocsPerRequest(run); n != 0 {
			t.Errorf("%s: %v allocations per request, want 0", p.name, n)
		}
		if got := s.m.unknownNetwork.Get(); got != 0 {
			t.Fatalf("%s: counted as an unknown network", p.name)
		}
	}
	// Every request went to b, none to a (the default).
	gw := &testGateway{srv: s}
	if gw.metric(t, `gateway_requests_total{network="b",route="blocknumber",code="200"}`) < 3000 ||
		gw.metric(t, `gateway_requests_total{network="a",route="blocknumber",code="200"}`) != 0 ||
		gw.metric(t, `gateway_requests_total{network="a",route="rpc",code="200"}`) != 0 {
		t.Fatal("requests did not all reach network b")
	}
}

// TestMidSizeAnswerAllocatesNothing: an answer over the response buffer a connection
// keeps (pipeline.KeptBody) and under upstream.AnswerFloor is lent to the response and comes
// back once written: no allocation, where a swapped-in buffer was dropped after each
// response and the next answer allocated another.
func TestMidSizeAnswerAllocatesNothing(t *testing.T) {
	result := `"0x` + strings.Repeat("ab", 10<<10) + `"`
	s := newDirectServerAnswering(t, `{"jsonrpc":"2.0","id":1,"result":`+result+`}`, "-cache=false")
	for _, p := range []struct{ name, method, uri, body string }{
		{"POST / eth_call", "POST", "/", `{"jsonrpc":"2.0","id":1,"method":"eth_call","params":[{"to":"0x0000000000000000000000000000000000000001"},"latest"]}`},
		{"POST / eth_call, id 7", "POST", "/", `{"jsonrpc":"2.0","id":7,"method":"eth_call","params":[{"to":"0x0000000000000000000000000000000000000001"},"latest"]}`},
		{"GET /gasprice", "GET", "/gasprice", ""},
	} {
		c := newDirectCall(s, p.method, p.uri, p.body)
		for range 100 {
			c.run(t)
		}
		if got := string(c.ctx.Response.Body()); !strings.HasSuffix(got, `"result":`+result+`}`) {
			t.Fatalf("%s: %.80s...; want the upstream's answer", p.name, got)
		}
		if n := allocsPerRequest(func() { c.run(t) }); n != 0 {
			t.Errorf("%s: %v allocations per request, want 0", p.name, n)
		}
	}
}
