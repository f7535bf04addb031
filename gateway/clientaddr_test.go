package gateway

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// postHeaderLines sends a JSON-RPC call with each header value on a line of its own
// (http.Header.Add), as a client and the proxy in front of the gateway each write one.
func postHeaderLines(t testing.TB, url, body, name string, lines ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("POST", url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for _, l := range lines {
		req.Header.Add(name, l)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

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
				code, b := postHeaderLines(t, gw.URL, blockNumberCall, "X-Forwarded-For", tc.lines(i)...)
				switch code {
				case 200:
					answered++
				case 429:
				default:
					t.Fatalf("request %d: %d %s", i+1, code, b)
				}
			}
			// Burst 4, and at most one more refilled at 2/s while the eight are sent.
			if answered > 5 {
				t.Fatalf("%d of 8 answered, want at most 5: the client's own X-Forwarded-For line was believed", answered)
			}
		})
	}
}
