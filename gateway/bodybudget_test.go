package gateway

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A request header declaring a large body made fasthttp allocate that body's buffer
// before a byte of it came: clients sending nothing but such headers held
// -max-request-body (rounded up to a power of two) each until -read-timeout, with no
// bound on their sum. Now the bodies being read are bounded by -max-body-read-bytes:
// past it a request is answered 503, -32005 and Retry-After at once, without its body
// being read or allocated, while small requests are served as usual; what a body
// reserved is given back once it is read, or when its connection goes.
func TestBodyBudgetBoundsDeclaredBodies(t *testing.T) {
	const max = 1 << 20 // -max-request-body; two fit the budget
	gw := startGateway(t, "-upstream-http", startFakeUpstream(t).HTTPURL, "-upstream-ws", "off", "-cache=false",
		"-max-request-body", strconv.Itoa(max), "-max-body-read-bytes", strconv.Itoa(2*max))
	addr := strings.TrimPrefix(gw.URL, "http://")
	header := func(c net.Conn, length string) {
		t.Helper()
		if _, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"+length+"\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		return c
	}
	const body = `{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}`

	first, second := dial(), dial()
	header(first, "Content-Length: "+strconv.Itoa(max))
	header(second, "Content-Length: "+strconv.Itoa(max))
	waitFor(t, "two bodies reserved", func() bool { return gw.metric(t, "gateway_request_body_bytes_reading") == 2*max })

	// Past the budget: answered at once, before any of the body is sent, for a
	// declared length and for a chunked body alike.
	_, heap0 := settledMemory()
	const refused = 24
	for i := range refused {
		c := dial()
		if i%2 == 0 {
			header(c, "Content-Length: "+strconv.Itoa(max))
		} else {
			header(c, "Transfer-Encoding: chunked")
			_, _ = io.WriteString(c, strconv.FormatInt(max, 16)+"\r\n")
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("request %d past the budget: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" || !strings.Contains(string(b), "-32005") ||
			!strings.Contains(string(b), "request bodies") {
			t.Fatalf("request %d past the budget: %d Retry-After %q %s; want 503, Retry-After 1, -32005",
				i, resp.StatusCode, resp.Header.Get("Retry-After"), b)
		}
	}
	_, heap1 := settledMemory()
	if grew := int64(heap1.HeapAlloc) - int64(heap0.HeapAlloc); grew > 4<<20 {
		t.Errorf("the heap grew %d KiB with %d refused bodies declared at %d KiB; want no body allocated",
			grew>>10, refused, max>>10)
	}
	if got := gw.metric(t, "gateway_request_body_budget_refusals_total"); got != refused {
		t.Errorf("refusals counted: %v, want %d", got, refused)
	}
	// A small request is not held back by the budget.
	if code, b := do(t, "POST", gw.URL, body); code != 200 || !strings.Contains(string(b), `"result"`) {
		t.Fatalf("a small request with the budget full: %d %s", code, b)
	}

	// The first body, sent whole, is served, and gives its reservation back.
	if _, err := io.WriteString(first, body+strings.Repeat(" ", max-len(body))); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(first), nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || !strings.Contains(string(b), `"result"`) {
		t.Fatalf("the first body, sent whole: %d %s", resp.StatusCode, b)
	}
	if got := gw.metric(t, "gateway_request_body_bytes_reading"); got != max {
		t.Fatalf("%v bytes reserved once the first body was read, want %d", got, max)
	}
	// The second client goes away before sending its body: given back too.
	_ = second.Close()
	waitFor(t, "the reservations given back", func() bool { return gw.metric(t, "gateway_request_body_bytes_reading") == 0 })
}
