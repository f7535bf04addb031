package gateway

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// keyMark stands for key material a client put in a path; the pieces are spelt
// apart below (a mixed-case spelling, a percent-encoded one) and joined in the logs
// only if a path is logged unredacted.
const keyMark = "NEARKEYmaterial0123456789"

// Nothing after /v3/ (or /ws/v3/) of a path reaches a log line, a metric label or an
// error, whatever its shape: a key, a near-miss, a trailing slash, extra segments,
// percent-encoding, a query; on every status (401, 404, 405, 413, 400) and on
// websocket handshakes.
func TestKeyPathsNeverLogged(t *testing.T) {
	_, gw, _ := startKeyed(t, accessConfig("{}"), "-log-requests", "-max-request-body", "1024")
	addr := strings.TrimPrefix(gw.URL, "http://")
	enc := strings.Replace(keyMark, "material", "m%61terial", 1) // decodes to keyMark
	body := `{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}`
	rpc := func(method, path string) string {
		return fmt.Sprintf("%s %s HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
			method, path, len(body), body)
	}
	upgrade := func(path string) string {
		return "GET " + path + " HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
	}
	cases := []struct{ name, req, status string }{
		{"wrong key", rpc("POST", "/v3/"+keyMark), "401"},
		{"trailing slash", rpc("POST", "/v3/"+keyMark+"/"), "404"},
		{"extra segment", rpc("POST", "/v3/"+keyMark+"/extra"), "404"},
		{"two extra segments", rpc("POST", "/v3/x/"+keyMark+"/y"), "404"},
		{"query", rpc("POST", "/v3/"+keyMark+"/?key="+keyMark), "404"},
		{"percent-encoded", rpc("POST", "/v3/"+enc+"/"), "404"},
		{"encoded slash", rpc("POST", "/v3/"+keyMark+"%2Fx"), ""},
		{"dot segments", rpc("POST", "/x/../v3/"+keyMark+"/"), "404"},
		{"double slash", rpc("POST", "/v3//"+keyMark+"/"), ""},
		{"upper case", rpc("POST", "/V3/"+keyMark+"/"), "404"},
		{"deeper prefix", rpc("POST", "/api/v3/"+keyMark), "404"},
		{"another provider's key path", rpc("POST", "/v2/"+keyMark), "404"},
		{"no slash after the version", rpc("POST", "/v3"+keyMark), "404"},
		{"a key alone", rpc("GET", "/"+keyMark+"/x"), "404"},
		{"GET on a key", rpc("GET", "/v3/"+keyMark), "405"},
		{"PUT with extra", rpc("PUT", "/v3/"+keyMark+"/x"), ""},
		{"ws wrong key", upgrade("/ws/v3/" + keyMark), "401"},
		{"ws trailing slash", upgrade("/ws/v3/" + keyMark + "/"), "404"},
		{"ws extra segment", upgrade("/ws/v3/" + keyMark + "/x?y=" + keyMark), "404"},
		{"ws POST", rpc("POST", "/ws/v3/"+keyMark+"/"), ""},
		{"oversized body", fmt.Sprintf("POST /v3/%s/ HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n%s",
			keyMark, strings.Repeat(" ", 4096)), "413"},
		{"malformed header", "POST /v3/" + keyMark + "/ HTTP/1.1\r\nHost: gw\r\nbad header line\r\n\r\n", "400"},
		{"malformed request line", "POST /v3/" + keyMark + "/\x00 HTTP/1.1\r\nHost: gw\r\n\r\n", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			line := rawRequest(t, addr, c.req)
			if c.status != "" && !strings.Contains(line, " "+c.status+" ") {
				t.Errorf("status line %q, want %s", line, c.status)
			}
		})
	}
	// Every request above has had its log line (17 reached a route; fasthttp refused 3).
	waitFor(t, "the log lines", func() bool {
		l := gw.log.String()
		return strings.Count(l, `"msg":"request"`) >= 17 && strings.Count(l, `"msg":"fasthttp"`) >= 3
	})
	for _, line := range strings.Split(gw.log.String(), "\n") {
		if strings.Count(line, `"msg":`) > 1 {
			t.Errorf("a log line with two msg keys: %s", line)
		}
	}
	_, metricsText := do(t, "GET", gw.AdminURL+"/metrics", "")
	for where, text := range map[string]string{"log": gw.log.String(), "metrics": string(metricsText)} {
		if strings.Contains(text, keyMark) || strings.Contains(text, enc) ||
			strings.Contains(strings.ToLower(text), strings.ToLower(keyMark)) {
			t.Errorf("the %s holds key material:\n%s", where, grepLines(strings.ToLower(text), strings.ToLower(keyMark)))
		}
	}
	if !strings.Contains(gw.log.String(), `"path":"/v3/redacted"`) {
		t.Errorf("no redacted path in the request log:\n%s", gw.log.String())
	}
}

// The error a client gets for a path does not echo it either.
func TestKeyPathNotInErrors(t *testing.T) {
	_, gw, _ := startKeyed(t, accessConfig("{}"))
	for _, p := range []string{"/v3/" + keyMark, "/v3/" + keyMark + "/", "/ws/v3/" + keyMark + "/x"} {
		for _, m := range []string{"GET", "POST", "PUT"} {
			req, err := http.NewRequest(m, gw.URL+p, strings.NewReader(`{}`))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := httpClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(b), keyMark) {
				t.Errorf("%s %s: the answer echoes the path: %s", m, p, b)
			}
		}
	}
}
