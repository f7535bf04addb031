package gateway

import (
	"testing"

	"github.com/valyala/fasthttp"
)

// TestServeChain: the folded entry (CORS, network, key routes, the fixed-route table,
// then the router) answers each request as the router alone did: fixed routes by exact
// method and path, everything else (405, 404, OPTIONS, paths the client did not send
// normalized) the router's; CORS headers on requests with an Origin, preflights answered
// without reaching a route.
func TestServeChain(t *testing.T) {
	s := newDirectServer(t, "-cache=false", "-cors-origins", "https://dapp.example, https://b.example")
	for _, tc := range []struct {
		name, method, uri, origin, reqMethod string
		status                               int
		allowOrigin, allow                   string
		body                                 string // a substring of the answer
	}{
		{name: "fixed GET", method: "GET", uri: "/blocknumber", status: 200, body: `"result"`},
		{name: "fixed POST /", method: "POST", uri: "/", status: 200, body: `"result"`},
		{name: "fixed HEAD probe", method: "HEAD", uri: "/health", status: 200},
		{name: "fixed /ws/health", method: "GET", uri: "/ws/health", status: 200},
		{name: "fixed HEAD /ws/health", method: "HEAD", uri: "/ws/health", status: 200},
		{name: "with a query", method: "GET", uri: "/blocknumber?x=1", status: 200, body: `"result"`},
		{name: "listed origin on a route", method: "GET", uri: "/blocknumber", origin: "https://b.example", status: 200, allowOrigin: "https://b.example"},
		{name: "listed origin in another case", method: "GET", uri: "/blocknumber", origin: "https://DApp.example", status: 200, allowOrigin: "https://DApp.example"},
		{name: "origin not listed: no CORS header", method: "GET", uri: "/blocknumber", origin: "https://a.example", status: 200, body: `"result"`},
		{name: "a listed origin's prefix is not listed", method: "GET", uri: "/blocknumber", origin: "https://dapp.exampl", status: 200},
		{name: "wrong method: router's 405", method: "GET", uri: "/", status: 405, allow: "OPTIONS, POST"},
		{name: "HEAD of a GET route: 405", method: "HEAD", uri: "/blocknumber", status: 405, allow: "GET, OPTIONS"},
		{name: "unknown path: 404", method: "GET", uri: "/nope", status: 404},
		{name: "trailing slash not redirected", method: "GET", uri: "/blocknumber/", status: 404},
		{name: "not normalized: the router's answer", method: "GET", uri: "//blocknumber", status: 405, allow: "OPTIONS, POST"},
		{name: "OPTIONS without Origin: router's Allow", method: "OPTIONS", uri: "/", status: 200, allow: "OPTIONS, POST"},
		// The key routes answer as the router answers its own (RFC 9110 §15.5.6: a 405 names what is allowed).
		{name: "key route, wrong method: 405 with Allow", method: "GET", uri: "/v3/abc", status: 405, allow: "OPTIONS, POST"},
		{name: "key route, HEAD: 405 with Allow", method: "HEAD", uri: "/v3/abc", status: 405, allow: "OPTIONS, POST"},
		{name: "websocket key route, wrong method: 405 with Allow", method: "POST", uri: "/ws/v3/abc", status: 405, allow: "GET, OPTIONS"},
		{name: "key route, OPTIONS without Origin: Allow", method: "OPTIONS", uri: "/v3/abc", status: 200, allow: "OPTIONS, POST"},
		{name: "websocket key route, OPTIONS without Origin: Allow", method: "OPTIONS", uri: "/ws/v3/abc", status: 200, allow: "GET, OPTIONS"},
		{name: "preflight", method: "OPTIONS", uri: "/", origin: "https://dapp.example", reqMethod: "POST", status: 204, allowOrigin: "https://dapp.example"},
		{name: "preflight of an origin not listed: router's Allow", method: "OPTIONS", uri: "/", origin: "https://a.example", reqMethod: "POST", status: 200, allow: "OPTIONS, POST"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := serveWithOrigin(s, tc.method, tc.uri, tc.origin, tc.reqMethod)
			if r.StatusCode() != tc.status {
				t.Fatalf("status %d, want %d: %s", r.StatusCode(), tc.status, r.Body())
			}
			if got := string(r.Header.Peek("Access-Control-Allow-Origin")); got != tc.allowOrigin {
				t.Errorf("Access-Control-Allow-Origin %q, want %q", got, tc.allowOrigin)
			}
			if got := string(r.Header.Peek("Allow")); (tc.allow != "" || tc.status == 405) && got != tc.allow {
				t.Errorf("Allow %q, want %q", got, tc.allow)
			}
			if tc.status == 204 && (len(r.Header.Peek("Access-Control-Allow-Methods")) == 0 ||
				string(r.Header.Peek("Access-Control-Allow-Headers")) != "Content-Type, Authorization, X-API-Key, X-Request-Id, traceparent") {
				t.Errorf("preflight: Access-Control-Allow-Methods %q, -Headers %q", r.Header.Peek("Access-Control-Allow-Methods"),
					r.Header.Peek("Access-Control-Allow-Headers"))
			}
			// The answer depends on the origin whenever there is one: caches must keep them apart.
			if want := tc.origin != ""; want != (string(r.Header.Peek("Vary")) == "Origin") {
				t.Errorf("Vary %q with origin %q", r.Header.Peek("Vary"), tc.origin)
			}
			if tc.body != "" && !contains(r.Body(), tc.body) {
				t.Errorf("body %q, want it to hold %q", r.Body(), tc.body)
			}
			// Every route's instrumenter sets it (404 and 405 are the "other" route's);
			// the router's own OPTIONS answer and a preflight reach none.
			if want := tc.method != "OPTIONS"; want != (len(r.Header.Peek("X-Request-Id")) > 0) {
				t.Errorf("X-Request-Id %q on %s %s", r.Header.Peek("X-Request-Id"), tc.method, tc.uri)
			}
		})
	}
}

// TestCORSAnyOrigin: with -cors-origins * (the default) any origin is allowed with "*",
// and the answer does not vary by origin.
func TestCORSAnyOrigin(t *testing.T) {
	s := newDirectServer(t, "-cache=false")
	for _, tc := range []struct {
		name, method, origin, reqMethod string
		status                          int
		allowOrigin                     string
	}{
		{"no origin", "GET", "", "", 200, ""},
		{"any origin", "GET", "https://a.example", "", 200, "*"},
		{"preflight", "OPTIONS", "https://a.example", "GET", 204, "*"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := serveWithOrigin(s, tc.method, "/blocknumber", tc.origin, tc.reqMethod)
			if r.StatusCode() != tc.status || string(r.Header.Peek("Access-Control-Allow-Origin")) != tc.allowOrigin ||
				len(r.Header.Peek("Vary")) != 0 {
				t.Errorf("status %d, Access-Control-Allow-Origin %q, Vary %q; want %d, %q, none", r.StatusCode(),
					r.Header.Peek("Access-Control-Allow-Origin"), r.Header.Peek("Vary"), tc.status, tc.allowOrigin)
			}
		})
	}
}

// serveWithOrigin serves one request through s's entry, with an Origin and a
// preflight's Access-Control-Request-Method when given; a POST carries eth_blockNumber.
func serveWithOrigin(s *Server, method, uri, origin, reqMethod string) *fasthttp.Response {
	c := newDirectCall(s, method, uri, "")
	if method == "POST" {
		c.ctx.Request.SetBodyString(`{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}`)
	}
	if origin != "" {
		c.ctx.Request.Header.Set("Origin", origin)
	}
	if reqMethod != "" {
		c.ctx.Request.Header.Set("Access-Control-Request-Method", reqMethod)
	}
	c.h(&c.ctx)
	return &c.ctx.Response
}

func contains(b []byte, s string) bool {
	for i := 0; i+len(s) <= len(b); i++ {
		if string(b[i:i+len(s)]) == s {
			return true
		}
	}
	return false
}

// BenchmarkServeChain is the way in without an upstream: the wrappers, the network,
// the key routes and the route lookup, to a probe's handler (and the router's 404).
func BenchmarkServeChain(b *testing.B) {
	s := newDirectServer(b, "-cache=false")
	for _, p := range []struct{ name, method, uri string }{
		{"GET /health", "GET", "/health"}, {"GET /ws/health", "GET", "/ws/health"}, {"GET /nope", "GET", "/nope"},
	} {
		b.Run(p.name, func(b *testing.B) {
			c := newDirectCall(s, p.method, p.uri, "")
			b.ReportAllocs()
			for b.Loop() {
				c.h(&c.ctx)
			}
		})
	}
}
