package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/gateway/access"
	"github.com/infura-gateway/infura-gateway/tracing"
)

// TestHeaderNamesInAnyCase: header names are case-insensitive (RFC 9110), and the
// gateway looks its headers up by their canonical form (PeekCanonical), which holds
// only because fasthttp's server normalizes every name as it parses. Each request is
// written byte for byte on a TCP connection, names in lower, upper and mixed case, so
// no client library canonicalizes them first: keys, origins, CORS, the request id and
// the traceparent are each found in every case.
func TestHeaderNamesInAnyCase(t *testing.T) {
	up, gw, _ := startKeyed(t, accessConfig("{}"), "-cors-origins", "https://dapp.example,https://app.example.com")
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00" // not sampled: passed on as it is
	cases := []struct {
		name    string
		method  string
		path    string
		headers []string // "Name: value" lines as written
		status  int
		want    string            // in the body
		answer  map[string]string // response headers expected
		reqID   string            // the X-Request-Id the upstream must get, with parent as its traceparent
	}{
		{name: "x-api-key", method: "GET", path: "/blocknumber", headers: []string{"x-api-key: " + keyAlice}, status: 200, want: `"result"`},
		{name: "X-API-KEY", method: "GET", path: "/blocknumber", headers: []string{"X-API-KEY: " + keyAlice}, status: 200, want: `"result"`},
		{name: "authorization", method: "GET", path: "/blocknumber", headers: []string{"authorization: Bearer " + keyAlice}, status: 200, want: `"result"`},
		{name: "AUTHORIZATION on POST /", method: "POST", path: "/", headers: []string{"AUTHORIZATION: Bearer " + keyAlice}, status: 200, want: `"result"`},
		{name: "origin allowed", method: "POST", path: "/v3/" + keyBob, headers: []string{"origin: https://app.example.com"}, status: 200, want: `"result"`,
			answer: map[string]string{"Access-Control-Allow-Origin": "https://app.example.com"}},
		{name: "ORIGIN refused", method: "POST", path: "/v3/" + keyBob, headers: []string{"ORIGIN: https://evil.example"}, status: 403, want: "origin"},
		{name: "preflight", method: "OPTIONS", path: "/", headers: []string{"origin: https://dapp.example", "access-control-request-method: POST"}, status: 204,
			answer: map[string]string{"Access-Control-Allow-Origin": "https://dapp.example", "Access-Control-Allow-Methods": "GET, POST, OPTIONS"}},
		{name: "request id and traceparent, REST", method: "GET", path: "/blocknumber",
			headers: []string{"x-api-key: " + keyAlice, "x-request-id: case-rest-1", "TRACEPARENT: " + parent}, status: 200, want: `"result"`,
			answer: map[string]string{"X-Request-Id": "case-rest-1"}, reqID: "case-rest-1"},
		{name: "request id and traceparent, POST /", method: "POST", path: "/v3/" + keyAlice,
			headers: []string{"X-REQUEST-ID: case-rpc-1", "traceparent: " + parent}, status: 200, want: `"result"`,
			answer: map[string]string{"X-Request-Id": "case-rpc-1"}, reqID: "case-rpc-1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, body := headerRequest(t, gw.URL, tc.method, tc.path, tc.headers)
			if res.StatusCode != tc.status || !strings.Contains(body, tc.want) {
				t.Fatalf("got %d %s, want %d with %q", res.StatusCode, body, tc.status, tc.want)
			}
			for k, v := range tc.answer {
				if got := res.Header.Get(k); got != v {
					t.Errorf("answer's %s = %q, want %q", k, got, v)
				}
			}
			if tc.reqID == "" {
				return
			}
			seen := up.tracedAs(tc.reqID)
			if len(seen) != 1 || seen[0].Parent != parent {
				t.Fatalf("the upstream got %+v for request id %s, want one request with traceparent %s", seen, tc.reqID, parent)
			}
		})
	}
}

// TestTraceHeaderNamesCanonical: the shared names the gateway looks headers up by are
// in the form fasthttp stores them in.
func TestTraceHeaderNamesCanonical(t *testing.T) {
	for _, name := range [][]byte{tracing.TraceparentHeader, tracing.RequestIDHeader, access.HeaderOrigin} {
		if got := fasthttp.AppendNormalizedHeaderKeyBytes(nil, name); string(got) != string(name) {
			t.Errorf("%s is stored by fasthttp as %s", name, got)
		}
	}
}

// headerRequest writes one HTTP/1.1 request on a new connection, header lines exactly as
// given, and reads the answer.
func headerRequest(t *testing.T, base, method, path string, headers []string) (*http.Response, string) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	body := ""
	if method == "POST" {
		body = blockNumberCall
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n", method, path)
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	if body != "" {
		fmt.Fprintf(&b, "content-type: application/json\r\ncontent-length: %d\r\n", len(body))
	}
	b.WriteString("\r\n" + body)
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	return res, readAll(t, res)
}
