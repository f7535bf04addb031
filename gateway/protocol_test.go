package gateway

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

// JSON is UTF-8 (RFC 8259 §8.1) and a websocket text message must be (RFC 6455 §8.1):
// a client's invalid bytes never reach the node, and a text message with them fails
// the connection (1007) while a binary one gets a parse error and the connection
// goes on. Valid multi-byte UTF-8 passes untouched. Against a real geth.
func TestInvalidUTF8FromClients(t *testing.T) {
	_, gw := startNodeGateway(t, nil)
	const bad = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_getBalance\",\"params\":[\"\xff\",\"latest\"]}"
	const parseError = `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error: body is not valid JSON"}}`

	for _, body := range []string{bad, "[" + bad + "]", "{\"jsonrpc\":\"2.0\",\"id\":\"\xc3\x28\",\"method\":\"eth_chainId\"}"} {
		if code, got := do(t, "POST", gw.URL+"/", body); code != 200 || string(got) != parseError {
			t.Fatalf("POST / %q: %d %s", body, code, got)
		}
	}
	// Valid UTF-8 outside ASCII reaches the node: geth answers about the address, not
	// about the encoding.
	if code, got := do(t, "POST", gw.URL+"/", `{"jsonrpc":"2.0","id":"é😀","method":"eth_chainId"}`); code != 200 ||
		!strings.HasPrefix(string(got), `{"jsonrpc":"2.0","id":"é😀","result":"0x`) {
		t.Fatalf("POST / with UTF-8 id: %d %s", code, got)
	}

	ws := dialWS(t, gw.WSURL, nil)
	ws.wmu.Lock()
	err := ws.conn.WriteMessage(websocket.BinaryMessage, []byte(bad))
	ws.wmu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if got := string(ws.next()); got != parseError {
		t.Fatalf("binary message with invalid UTF-8: %s", got)
	}
	if got := string(ws.call(`{"jsonrpc":"2.0","id":"ü","method":"eth_chainId"}`)); !strings.HasPrefix(got, `{"jsonrpc":"2.0","id":"ü","result":"0x`) {
		t.Fatalf("after a binary parse error: %s", got)
	}
	ws.mustSend(bad)
	var ce *websocket.CloseError
	if err := ws.expectClose(); !errors.As(err, &ce) || ce.Code != websocket.CloseInvalidFramePayloadData {
		t.Fatalf("text message with invalid UTF-8: closed with %v, want 1007", err)
	}
	// Everyone else is served.
	if code, got := do(t, "GET", gw.URL+"/blocknumber", ""); code != 200 || !strings.Contains(string(got), `"result":"0x`) {
		t.Fatalf("after invalid UTF-8: %d %s", code, got)
	}
}

// An upstream answer that is not UTF-8 is an invalid answer on every path, refused at
// once (not at the upstream timeout), and the shared socket goes on serving. No node
// sends one: a fake upstream does.
func TestInvalidUTF8FromUpstream(t *testing.T) {
	fake := startFakeUpstream(t, fakeRespond(func(r fakeRequest) fakeAnswer {
		if r.Method == "eth_gasPrice" {
			return fakeAnswer{Body: fakeResult(r, "\"0x1\xff\"", 0)}
		}
		return fakeAnswer{}
	}))
	gw := startGateway(t, fake.args("-cache=false", "-upstream-timeout", "60s")...)
	gw.waitUpstreams(t)
	ws := dialWS(t, gw.WSURL, nil)
	start := time.Now()
	for _, path := range []string{"/gasprice", "/ws/gasprice"} {
		if code, got := do(t, "GET", gw.URL+path, ""); code != 502 || !strings.Contains(string(got), "invalid response") {
			t.Fatalf("%s: %d %s", path, code, got)
		}
	}
	got := string(ws.call(`{"jsonrpc":"2.0","id":"g","method":"eth_gasPrice"}`))
	if !strings.HasPrefix(got, `{"jsonrpc":"2.0","id":"g","error":`) || !strings.Contains(got, "invalid response") {
		t.Fatalf("/socket2socket: %s", got)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("invalid answers took %v: they waited for the upstream timeout", d)
	}
	if got := string(ws.call(`{"jsonrpc":"2.0","id":"c","method":"eth_chainId"}`)); got != `{"jsonrpc":"2.0","id":"c","result":"0x1"}` {
		t.Fatalf("the shared socket after an invalid answer: %s", got)
	}
	if n := gw.metric(t, `gateway_upstream_ws_invalid_messages_total{upstream="default"}`); n < 2 {
		t.Fatalf("gateway_upstream_ws_invalid_messages_total = %v, want the two invalid answers", n)
	}
}

// An upstream HTTP answer that is not exactly one JSON value (cut short, trailing bytes,
// a second answer) is refused on a single call as it is in a batch and over the
// websocket: 502 with -32603, counted as an upstream error and never cached (the next
// call, once the upstream answers well, gets its answer).
func TestInvalidJSONFromUpstreamHTTP(t *testing.T) {
	for i, bad := range []string{
		`{"jsonrpc":"2.0","id":1,"result":"0x`,
		`{"jsonrpc":"2.0","id":1,"result":"0x2"}GARBAGE{"x":1}`,
		`{"jsonrpc":"2.0","id":1,"result":"0x2"}{"jsonrpc":"2.0","id":1,"result":"0x3"}`,
	} {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			var broken atomic.Bool
			broken.Store(true)
			fake := startFakeUpstream(t, fakeRespond(func(r fakeRequest) fakeAnswer {
				if r.Method == "eth_gasPrice" && r.Transport == "http" && broken.Load() {
					return fakeAnswer{Body: bad}
				}
				return fakeAnswer{}
			}))
			gw := startGateway(t, fake.args()...) // the cache on: a bad answer must not be kept
			gw.waitUpstreams(t)
			const call = `{"jsonrpc":"2.0","id":7,"method":"eth_gasPrice","params":[]}`
			code, got := do(t, "POST", gw.URL+"/", call)
			if code != 502 || !strings.Contains(string(got), `"id":7,"error":{"code":-32603`) || !strings.Contains(string(got), "invalid response") {
				t.Fatalf("%s: %d %s", bad, code, got)
			}
			if n := gw.metric(t, `gateway_upstream_requests_total{upstream="default",transport="http",method="eth_gasPrice",outcome="error"}`); n != 1 {
				t.Fatalf("upstream errors counted: %v, want 1", n)
			}
			broken.Store(false)
			if code, got := do(t, "POST", gw.URL+"/", call); code != 200 || string(got) != `{"jsonrpc":"2.0","id":7,"result":"0x1"}` {
				t.Fatalf("after the upstream mended: %d %s", code, got)
			}
		})
	}
}

// A request header larger than the read buffer gets 431 in JSON, not a generic 400.
func TestHeaderTooLargeIs431(t *testing.T) {
	fake := startFakeUpstream(t)
	gw := startGateway(t, fake.args()...)
	conn, err := net.Dial("tcp", strings.TrimPrefix(gw.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(wsWait))
	if _, err := conn.Write([]byte("GET /blocknumber HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("a", 64<<10) + "\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, _ := readAtLeastHeader(conn, buf)
	got := string(buf[:n])
	if !strings.HasPrefix(got, "HTTP/1.1 431 ") || !strings.Contains(got, `"message":"request header too large"`) {
		t.Fatalf("got %q", got)
	}
}

// A request not read whole within -read-timeout (a header or a body sent too slowly)
// gets 408 in JSON, not 400 "malformed".
func TestSlowRequestIs408(t *testing.T) {
	fake := startFakeUpstream(t)
	gw := startGateway(t, fake.args("-read-timeout", "300ms")...)
	for _, partial := range []string{
		"GET /blocknumber HTTP/1.1\r\nHost: x\r\n",                              // the header never ends
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"jsonrpc\"", // nor the body
	} {
		conn, err := net.Dial("tcp", strings.TrimPrefix(gw.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(wsWait))
		if _, err := conn.Write([]byte(partial)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4096)
		n, _ := readAtLeastHeader(conn, buf)
		conn.Close()
		got := string(buf[:n])
		if !strings.HasPrefix(got, "HTTP/1.1 408 ") || !strings.Contains(got, `"message":"request timeout`) {
			t.Errorf("%q: got %q", partial, got)
		}
	}
}

// readAtLeastHeader reads until the answer's body has begun or the peer stops.
func readAtLeastHeader(conn net.Conn, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := conn.Read(buf[n:])
		n += m
		if err != nil || strings.Contains(string(buf[:n]), "}}") {
			return n, err
		}
	}
	return n, nil
}

// Probes may use HEAD: /health and /readyz answer it like GET, without a body, on the
// public and the admin listener; routes that would cost an upstream call do not.
func TestHeadProbes(t *testing.T) {
	fake := startFakeUpstream(t)
	gw := startGateway(t, fake.args()...)
	waitReady(t, gw)
	for _, c := range []struct {
		path   string
		status int
	}{
		{gw.URL + "/health", 200}, {gw.URL + "/readyz", 200}, {gw.URL + "/blocknumber", 405},
		{gw.AdminURL + "/health", 200}, {gw.AdminURL + "/readyz", 200},
	} {
		resp, err := http.Head(c.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != c.status || len(body) != 0 {
			t.Fatalf("HEAD %s: %d %q, want %d and no body", c.path, resp.StatusCode, body, c.status)
		}
	}
}

// Requests answered before any route runs (fasthttp's refusals and CORS preflights)
// count in gateway_requests_total as route "other", as 404s do: floods of them show on
// the dashboard.
func TestAnswersBeforeARouteAreCounted(t *testing.T) {
	fake := startFakeUpstream(t)
	gw := startGateway(t, fake.args("-read-timeout", "300ms", "-max-request-body", "1024", "-cors-origins", "*", "-log-requests")...)
	cases := []struct {
		name, raw string
		code      int
		label     string // the code label: codes outside the fixed list count as "other"
	}{
		{"body too large", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + strings.Repeat("a", 5000), 413, "413"},
		{"header too large", "GET /blocknumber HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("a", 64<<10) + "\r\n\r\n", 431, "other"},
		{"too slow", "GET /blocknumber HTTP/1.1\r\nHost: x\r\n", 408, "other"},
		{"malformed", "GET /blocknumber HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", 400, "400"},
		{"preflight", "OPTIONS /v3/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\nOrigin: https://a.example\r\nAccess-Control-Request-Method: POST\r\n\r\n", 204, "204"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			series := `gateway_requests_total{route="other",code="` + c.label + `"}`
			before := gw.metric(t, series)
			conn := gw.dialRaw(t)
			if _, err := conn.Write([]byte(c.raw)); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 4096)
			n, _ := readAtLeastHeader(conn, buf)
			if got := string(buf[:n]); !strings.HasPrefix(got, "HTTP/1.1 "+strconv.Itoa(c.code)+" ") {
				t.Fatalf("got %q, want %d", got, c.code)
			}
			waitFor(t, series+" counted", func() bool { return gw.metric(t, series) == before+1 })
		})
	}
	// fasthttp refuses some before it takes their time: logged without a duration, not
	// with the time since the zero time (292 years) or since the connection's last request.
	for _, line := range strings.Split(gw.log.String(), "\n") {
		if !strings.Contains(line, `"route":"other"`) {
			continue
		}
		timed := strings.Contains(line, `"status":204`) // the preflight, answered by a handler
		if strings.Contains(line, `"duration":`) != timed || strings.Contains(line, "9223372036854775807") {
			t.Errorf("logged %s: want a duration only for the preflight", line)
		}
	}
}

// A request sent with "Expect: 100-continue" whose body the gateway would refuse gets
// the refusal, as JSON, instead of a 100 Continue: the client does not send a body only
// to have it refused (RFC 9110 §10.1.1). One the gateway takes gets its 100 and its
// answer, on the same connection. (The budget's refusal: TestBodyBudgetBoundsDeclaredBodies.)
func TestExpectContinue(t *testing.T) {
	fake := startFakeUpstream(t)
	gw := startGateway(t, fake.args("-max-request-body", "1024")...)
	const body = `{"jsonrpc":"2.0","id":7,"method":"eth_chainId","params":[]}`
	for _, c := range []struct {
		name, path string
		length     int
		status     int    // the first response
		want       string // in its body
	}{
		{"over the limit", "/", 5000, 413, "-32005"},
		{"REST route over the limit", "/blockbynumber", 1025, 413, "too large"},
		{"within the limit", "/", len(body), 100, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			series := `gateway_requests_total{route="other",code="413"}`
			before := gw.metric(t, series)
			conn := gw.dialRaw(t)
			if _, err := io.WriteString(conn, "POST "+c.path+" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
				"Content-Length: "+strconv.Itoa(c.length)+"\r\nExpect: 100-continue\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != c.status || !strings.Contains(string(got), c.want) {
				t.Fatalf("first response %d %s, want %d with %q", resp.StatusCode, got, c.status, c.want)
			}
			if c.status != 100 {
				if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
					t.Errorf("Content-Type %q, want JSON", ct)
				}
				if _, err := br.ReadByte(); err != io.EOF {
					t.Errorf("after the refusal the connection gave %v, want it closed (the client may be sending its body)", err)
				}
				waitFor(t, series+" counted", func() bool { return gw.metric(t, series) == before+1 })
				return
			}
			if _, err := io.WriteString(conn, body); err != nil {
				t.Fatal(err)
			}
			resp, err = http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, _ = io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || !strings.Contains(string(got), `"id":7`) || !strings.Contains(string(got), `"result"`) {
				t.Fatalf("after the body: %d %s, want 200 with the answer", resp.StatusCode, got)
			}
		})
	}
}

// dialRaw is a TCP connection to gw's public listener for requests written by hand,
// closed with the test, every read and write bounded by wsWait.
func (gw *testGateway) dialRaw(t testing.TB) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(gw.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(wsWait))
	return conn
}
