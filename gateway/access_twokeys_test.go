package gateway

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/fasthttp/websocket"
)

// Two different keys in the headers (two X-API-Key lines, two Bearer lines, or one of
// each) are refused with 400 before anything is counted against either key, on every
// kind of route: the gateway does not pick one, since a proxy in front may have checked
// the other. The same key twice is one key; a key in the path wins over the headers, as
// documented; a non-Bearer Authorization line is not a key. Before, the first line won.
func TestTwoDifferentKeysRefused(t *testing.T) {
	_, gw, _ := startKeyed(t, accessConfig("{}"))
	cases := []struct {
		name   string
		path   string // under /, or the websocket route
		header [][2]string
		status int
	}{
		{"two X-API-Key", "/", [][2]string{{"X-API-Key", keyAlice}, {"X-API-Key", keyBob}}, 400},
		{"two X-API-Key, the second an unknown key", "/", [][2]string{{"X-API-Key", keyAlice}, {"X-API-Key", "nope"}}, 400},
		{"two Bearer", "/", [][2]string{{"Authorization", "Bearer " + keyBob}, {"Authorization", "Bearer " + keyAlice}}, 400},
		{"Bearer and X-API-Key", "/", [][2]string{{"Authorization", "Bearer " + keyAlice}, {"X-API-Key", keyBob}}, 400},
		{"Bearer and X-API-Key, REST route", "/blocknumber", [][2]string{{"Authorization", "Bearer " + keyAlice}, {"X-API-Key", keyBob}}, 400},
		{"two X-API-Key, websocket upgrade", "/socket2socket", [][2]string{{"X-API-Key", keyBob}, {"X-API-Key", keyAlice}}, 400},
		{"the same X-API-Key twice", "/", [][2]string{{"X-API-Key", keyAlice}, {"X-API-Key", keyAlice}}, 200},
		{"the same key as Bearer and X-API-Key", "/", [][2]string{{"Authorization", "Bearer " + keyAlice}, {"X-API-Key", keyAlice}}, 200},
		{"Basic and X-API-Key", "/", [][2]string{{"Authorization", "Basic dXNlcjpwdw=="}, {"X-API-Key", keyAlice}}, 200},
		{"a path key and another X-API-Key", "/v3/" + keyAlice, [][2]string{{"X-API-Key", keyBob}}, 200},
		{"the same key twice, websocket upgrade", "/socket2socket", [][2]string{{"X-API-Key", keyAlice}, {"X-API-Key", keyAlice}}, 101},
	}
	refused := 0
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for _, kv := range tc.header {
				h.Add(kv[0], kv[1])
			}
			var code int
			var body string
			switch tc.path {
			case "/socket2socket":
				c, resp, err := websocket.DefaultDialer.Dial(strings.Replace(gw.URL, "http://", "ws://", 1)+tc.path, h)
				if err == nil {
					_ = c.Close()
				}
				if resp == nil {
					t.Fatalf("upgrade: %v", err)
				}
				code = resp.StatusCode
				b, _ := io.ReadAll(resp.Body)
				body = string(b)
			default: // a REST GET, or a JSON-RPC POST
				method, rd := "POST", io.Reader(strings.NewReader(blockNumberCall))
				if tc.path == "/blocknumber" {
					method, rd = "GET", nil
				}
				req, err := http.NewRequest(method, gw.URL+tc.path, rd)
				if err != nil {
					t.Fatal(err)
				}
				req.Header = h
				if rd != nil {
					req.Header.Set("Content-Type", "application/json")
				}
				resp, err := httpClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				code, body = resp.StatusCode, string(b)
			}
			if code != tc.status {
				t.Fatalf("got %d %s, want %d", code, body, tc.status)
			}
			if code == 400 {
				refused++
				checkAnswer(t, code, body, 400, "two different API keys")
				if strings.Contains(body, keyAlice) || strings.Contains(body, keyBob) {
					t.Fatalf("the refusal shows a key: %s", body)
				}
			}
		})
	}
	// Nothing was counted against bob, the first key of two of the refused requests.
	if got := gw.metric(t, `gateway_key_requests_total{key="bob"}`); got != 0 {
		t.Errorf("bob was counted %v requests", got)
	}
	if strings.Contains(gw.log.String(), keyAlice) || strings.Contains(gw.log.String(), keyBob) {
		t.Fatal("a key appears in the logs")
	}
	if refused != 6 {
		t.Fatalf("%d refusals, want 6", refused)
	}
}
