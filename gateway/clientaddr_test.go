package gateway

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/clientip"
)

// TestXFFSeveralLines: behind a trusted proxy that appends its own X-Forwarded-For line,
// the client's own line (a new address each time) must not name the client: the lines
// are joined in order and walked from the right, so the proxy's line decides.
func TestXFFSeveralLines(t *testing.T) {
	file := "plans:\n  anon: {requests_per_second: 2, burst: 4}\nanonymous: {plan: anon}\n"
	for _, tc := range []struct {
		name  string
		lines func(i int) []string
	}{
		{"client line then proxy line", func(i int) []string {
			return []string{fmt.Sprintf("203.0.113.%d", i+1), "198.51.100.7"}
		}},
		{"client list then proxy line", func(i int) []string {
			return []string{fmt.Sprintf("192.0.2.%d, 203.0.113.%d", i+1, i+1), "198.51.100.7"}
		}},
		{"client line, proxy line, trusted hop", func(i int) []string {
			return []string{fmt.Sprintf("203.0.113.%d", i+1), "198.51.100.7", "127.0.0.1"}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, gw, _ := startKeyed(t, file, "-trusted-proxies", "127.0.0.1")
			answered := 0
			for i := range 8 {
				var lines []string
				for _, l := range tc.lines(i) {
					lines = append(lines, "X-Forwarded-For: "+l)
				}
				switch code := rawPost(t, gw.URL, nil, lines, blockNumberCall); code {
				case 200:
					answered++
				case 429:
				default:
					t.Fatalf("request %d: %d", i+1, code)
				}
			}
			// Burst 4, and at most one more refilled at 2/s while the eight are sent.
			if answered > 5 {
				t.Fatalf("%d of 8 answered, want at most 5: the client's own X-Forwarded-For line was believed", answered)
			}
		})
	}
}

// rawPost sends one call on a new connection: first the bytes of prefix (a PROXY
// header, or nothing), then the request with each of headers on a line of its own (as a
// client and the proxy in front of the gateway each write one). It returns the status.
func rawPost(t testing.TB, gwURL string, prefix []byte, headers []string, body string) int {
	t.Helper()
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(gwURL, "http://"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	req := append([]byte(nil), prefix...)
	req = append(req, "POST / HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nConnection: close\r\n"...)
	for _, h := range headers {
		req = append(req, h+"\r\n"...)
	}
	req = fmt.Appendf(req, "Content-Length: %d\r\n\r\n%s", len(body), body)
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// proxiedPost sends one call after a PROXY v1 header naming src.
func proxiedPost(t testing.TB, gwURL, src, body string) int {
	h := clientip.AppendV1(nil, clientip.Header{Src: netip.MustParseAddrPort(src + ":4000"), Dst: netip.MustParseAddrPort("10.0.0.1:443")})
	return rawPost(t, gwURL, h, nil, body)
}

// TestProxyProtocolTrustReloads: the PROXY protocol listener reads the trusted list a
// reload sets, as X-Forwarded-For does: one list for both. Before the reload 127.0.0.1
// is not trusted (its header is plain data: 400); after, its header names the client
// (each named client has its own allowance of one); after a reload back, 400 again.
func TestProxyProtocolTrustReloads(t *testing.T) {
	conf := func(trusted string) string {
		return "plans:\n  anon: {requests_per_second: 0.001, burst: 1}\nanonymous: {plan: anon}\n" +
			"clients: {proxy_protocol: true, trusted_proxies: [" + trusted + "]}\n"
	}
	_, gw, path := startKeyed(t, conf("10.0.0.0/8"))
	reload := func(trusted string) {
		t.Helper()
		writeFile(t, filepath.Dir(path), "gateway.yaml", conf(trusted))
		if err := gw.srv.ReloadConfig(); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		name   string
		reload string
		src    string
		want   int
	}{
		{"untrusted at start", "", "203.0.113.1", 400},
		{"trusted after a reload", "127.0.0.1", "203.0.113.1", 200},
		{"the same client again", "", "203.0.113.1", 429},
		{"another client", "", "203.0.113.2", 200},
		{"untrusted after a reload back", "10.0.0.0/8", "203.0.113.3", 400},
	}
	for _, s := range steps {
		if s.reload != "" {
			reload(s.reload)
		}
		if got := proxiedPost(t, gw.URL, s.src, blockNumberCall); got != s.want {
			t.Fatalf("%s: %d, want %d", s.name, got, s.want)
		}
	}
	// An empty list with the PROXY protocol on is refused; the running list stays.
	reload("127.0.0.1")
	writeFile(t, filepath.Dir(path), "gateway.yaml", conf(""))
	if err := gw.srv.ReloadConfig(); err == nil || !strings.Contains(err.Error(), "trusted-proxies") {
		t.Fatalf("reload to an empty trusted list: %v, want refused", err)
	}
	if got := proxiedPost(t, gw.URL, "203.0.113.4", blockNumberCall); got != 200 {
		t.Fatalf("after a refused reload: %d, want 200 (the running list stays)", got)
	}
}
