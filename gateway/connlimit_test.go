package gateway

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/infura-gateway/infura-gateway/gateway/clientip"
)

// connGateway serves the fake upstream with the configuration file file ("" for none)
// and extra flags.
func connGateway(t *testing.T, file string, extra ...string) *testGateway {
	t.Helper()
	up := startFakeUpstream(t)
	if file != "" {
		extra = append(extra, "-config", writeFile(t, t.TempDir(), "gateway.yaml", file))
	}
	gw := startGateway(t, up.args(append(extra, "-cache=false")...)...)
	gw.waitUpstreams(t)
	return gw
}

// dialGW opens a connection to the gateway from the loopback address src.
func dialGW(t *testing.T, gw *testGateway, src string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", strings.TrimPrefix(gw.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	return c
}

// proxyHeader is a PROXY v1 header naming client as the source ("" for none).
func proxyHeader(client string) []byte {
	if client == "" {
		return nil
	}
	return clientip.AppendV1(nil, clientip.Header{Src: netip.MustParseAddrPort(client + ":4000"), Dst: netip.MustParseAddrPort("10.0.0.1:443")})
}

// call sends eth_blockNumber on c after prefix and returns the answer, whose body it
// reads, and, for an answer with Connection: close, whether the connection ended after
// it (a keep-alive one is left open).
func call(t *testing.T, c net.Conn, prefix []byte) (*http.Response, []byte, bool) {
	t.Helper()
	req := fmt.Appendf(append([]byte(nil), prefix...), "POST / HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		len(blockNumberCall), blockNumberCall)
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Close {
		return resp, body, false
	}
	_, err = br.ReadByte()
	return resp, body, err == io.EOF
}

// wantRefusal checks c's answer is the connection refusal: a JSON-RPC 503 with
// Retry-After and Connection: close, whose message has want, then the end.
func wantRefusal(t *testing.T, c net.Conn, prefix []byte, want string) {
	t.Helper()
	resp, body, ended := call(t, c, prefix)
	var msg struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Error   struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" || !resp.Close ||
		resp.Header.Get("Content-Type") != "application/json" || json.Unmarshal(body, &msg) != nil ||
		msg.JSONRPC != "2.0" || string(msg.ID) != "null" || msg.Error.Code != -32005 || !strings.Contains(msg.Error.Message, want) {
		t.Fatalf("refusal: %d %v %s; want a JSON-RPC 503 (-32005, %q) with Retry-After: 1 and Connection: close", resp.StatusCode, resp.Header, body, want)
	}
	if !ended {
		t.Fatal("the refused connection stayed open after its answer")
	}
}

func wantServed(t *testing.T, c net.Conn, prefix []byte) {
	t.Helper()
	if resp, body, _ := call(t, c, prefix); resp.StatusCode != 200 || !strings.Contains(string(body), `"result"`) {
		t.Fatalf("call: %d %s, want 200", resp.StatusCode, body)
	}
}

func waitOpen(t *testing.T, gw *testGateway, n int64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d client connections open", n), func() bool { return gw.srv.conns.Open() == n })
}

// -max-conns 3: three idle connections hold the listener; a fourth gets the JSON 503
// and is closed; once one of the three leaves a new one is served; the count returns
// to 0 when all are gone.
func TestMaxConns(t *testing.T) {
	gw := connGateway(t, "", "-max-conns", "3")
	var held []net.Conn
	for range 3 {
		held = append(held, dialGW(t, gw, "127.0.0.1"))
	}
	waitOpen(t, gw, 3)
	wantRefusal(t, dialGW(t, gw, "127.0.0.1"), nil, "too many client connections")
	wantServed(t, held[1], nil) // the held ones are served
	held[0].Close()
	waitOpen(t, gw, 2)
	wantServed(t, dialGW(t, gw, "127.0.0.1"), nil)
	wantRefusal(t, dialGW(t, gw, "127.0.0.2"), nil, "too many client connections")
	m := scrape(t, gw)
	for _, want := range []string{"gateway_client_connections 3", "gateway_client_connections_limit 3",
		`gateway_client_connections_refused_total{reason="total"} 2`, `gateway_client_connections_refused_total{reason="per_ip"} 0`} {
		if !strings.Contains(m, want+"\n") {
			t.Errorf("metrics lack %q:\n%s", want, grepLines(m, "gateway_client_connections"))
		}
	}
	for _, c := range held {
		c.Close()
	}
	waitOpen(t, gw, 1) // the served one, still held by its client
}

// Websocket connections count while the socket server holds them (after fasthttp
// handed them over) and are released however they end.
func TestMaxConnsWebsockets(t *testing.T) {
	ends := map[string]func(*websocket.Conn){
		"close frame": func(ws *websocket.Conn) {
			_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(10*time.Second))
			for {
				if _, _, err := ws.ReadMessage(); err != nil {
					break
				}
			}
			ws.Close()
		},
		"connection dropped": func(ws *websocket.Conn) { ws.UnderlyingConn().Close() },
		"oversized message, closed by the gateway": func(ws *websocket.Conn) {
			_ = ws.WriteMessage(websocket.TextMessage, []byte(strings.Repeat(" ", 4096)))
			for {
				if _, _, err := ws.ReadMessage(); err != nil {
					break
				}
			}
		},
	}
	gw := connGateway(t, "", "-max-conns", "2", "-max-request-body", "1024", "-max-pending-bytes", "1024", "-ws-max-pending-bytes", "1024")
	dial := func() *websocket.Conn {
		t.Helper()
		ws, _, err := websocket.DefaultDialer.Dial(gw.WSURL, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ws.Close() })
		return ws
	}
	for name, end := range ends {
		t.Run(name, func(t *testing.T) {
			a, b := dial(), dial()
			waitOpen(t, gw, 2)
			wantRefusal(t, dialGW(t, gw, "127.0.0.1"), nil, "too many client connections")
			end(a)
			waitOpen(t, gw, 1)
			c := dial()
			if err := c.WriteMessage(websocket.TextMessage, []byte(blockNumberCall)); err != nil {
				t.Fatal(err)
			}
			if _, msg, err := c.ReadMessage(); err != nil || !strings.Contains(string(msg), `"result"`) {
				t.Fatalf("a websocket after one ended: %s %v", msg, err)
			}
			b.Close()
			c.Close()
			waitOpen(t, gw, 0)
		})
	}
}

// -max-conns-per-ip counts by the address the gateway resolves: the TCP peer, or the
// source in a trusted proxy's PROXY header (a trusted proxy sending none counts as
// itself). Each address has its own allowance; they all return when closed.
func TestMaxConnsPerIP(t *testing.T) {
	cases := map[string]struct {
		file string
		// From src, after a PROXY header naming client ("" for none).
		src, client, other, otherClient string
	}{
		"tcp peers":            {"", "127.0.0.1", "", "127.0.0.2", ""},
		"proxy headers":        {"clients: {proxy_protocol: true, trusted_proxies: [127.0.0.1]}\n", "127.0.0.1", "203.0.113.1", "127.0.0.1", "203.0.113.2"},
		"trusted, no header":   {"clients: {proxy_protocol: true, trusted_proxies: [127.0.0.1]}\n", "127.0.0.1", "", "127.0.0.1", "203.0.113.2"},
		"untrusted, no header": {"clients: {proxy_protocol: true, trusted_proxies: [10.0.0.0/8]}\n", "127.0.0.2", "", "127.0.0.1", ""},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			file := tc.file
			if file != "" { // a file needs a plan: one no test reaches
				file += "plans: {anon: {requests_per_second: 1000, burst: 1000}}\nanonymous: {plan: anon}\n"
			}
			gw := connGateway(t, file, "-max-conns-per-ip", "2")
			addr := tc.client
			if addr == "" {
				addr = tc.src
			}
			var held []net.Conn
			for range 2 {
				c := dialGW(t, gw, tc.src)
				wantServed(t, c, proxyHeader(tc.client)) // and kept open (keep-alive)
				held = append(held, c)
			}
			waitFor(t, "two connections from "+addr, func() bool { return gw.srv.conns.OpenFrom(netip.MustParseAddr(addr)) == 2 })
			wantRefusal(t, dialGW(t, gw, tc.src), proxyHeader(tc.client), "too many connections open from your address")
			wantServed(t, dialGW(t, gw, tc.other), proxyHeader(tc.otherClient))
			wantServed(t, held[0], nil)
			if m := scrape(t, gw); !strings.Contains(m, `gateway_client_connections_refused_total{reason="per_ip"} 1`+"\n") {
				t.Errorf("per_ip refusals:\n%s", grepLines(m, "refused_total"))
			}
			for _, c := range held {
				c.Close()
			}
			waitFor(t, "every address released", func() bool {
				return gw.srv.conns.Addresses() <= 1 && gw.srv.conns.OpenFrom(netip.MustParseAddr(addr)) == 0
			})
		})
	}
}
