package gateway

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
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
	// declared length (with or without Expect: 100-continue) and a chunked body alike.
	_, heap0 := settledMemory()
	const refused = 24
	for i := range refused {
		c := dial()
		switch i % 3 {
		case 0:
			header(c, "Content-Length: "+strconv.Itoa(max))
		case 1:
			// Refused instead of a 100 Continue: the client never sends the body.
			header(c, "Content-Length: "+strconv.Itoa(max)+"\r\nExpect: 100-continue")
		default:
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

// Websocket messages being read count in the same budget: a message grew its buffer
// as its bytes came, up to -max-request-body, for as long as its client kept sending
// (pongs renew the read deadline between fragments), on every connection, with no bound
// on their sum: 100 clients each holding 4 MiB of an unfinished fragmented message took
// the gateway to 718 MiB. Here two clients' unfinished 1 MiB messages fill the budget: a
// third client's 200 KiB message is refused (close 1013, try again later), a small one
// is served, and the bytes come back once the messages are read whole.
func TestBodyBudgetBoundsWebsocketMessages(t *testing.T) {
	const max = 1 << 20
	fake := startFakeUpstream(t)
	gw := startGateway(t, fake.args("-cache=false", "-max-request-body", strconv.Itoa(max),
		"-max-body-read-bytes", strconv.Itoa(2*max))...)
	gw.waitUpstreams(t)
	reading := func() float64 { return gw.metric(t, "gateway_request_body_bytes_reading") }
	const call = `{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}`

	// Two messages of 1 MiB by their frame header, 600 KiB of each sent.
	var holders []net.Conn
	var answers []*bufio.Reader
	for range 2 {
		c, r := dialSlowSocket(t, gw)
		frame := []byte{0x81, 0x80 | 127}
		frame = binary.BigEndian.AppendUint64(frame, max)
		frame = append(frame, 0, 0, 0, 0) // a mask of zeros: the payload goes as it is
		frame = append(append(frame, call...), strings.Repeat(" ", 600<<10-len(call))...)
		if _, err := c.Write(frame); err != nil {
			t.Fatal(err)
		}
		holders, answers = append(holders, c), append(answers, r)
	}
	waitFor(t, "the two messages' buffers counted", func() bool { return reading() == 2*max })

	third := dialWS(t, gw.WSURL, nil)
	// Refused once its first 128 KiB are read: the close may come while it is still
	// being written, which then fails.
	_ = third.send(call + strings.Repeat(" ", 200<<10))
	var ce *websocket.CloseError
	if err := third.expectClose(); !errors.As(err, &ce) || ce.Code != websocket.CloseTryAgainLater {
		t.Fatalf("a large message with the budget full: %v; want close 1013", err)
	}
	if a := decodeAnswer(t, dialWS(t, gw.WSURL, nil).call(call)); a.Error != nil {
		t.Fatalf("a small message meanwhile: %+v", a.Error)
	}

	// The messages sent whole: read, answered, given back.
	for i, c := range holders {
		if _, err := c.Write([]byte(strings.Repeat(" ", max-600<<10))); err != nil {
			t.Fatal(err)
		}
		var h [2]byte
		if _, err := io.ReadFull(answers[i], h[:]); err != nil || h[0] != 0x81 || h[1] > 125 {
			t.Fatalf("message %d's answer: % x %v", i, h, err)
		}
		if b := make([]byte, h[1]); func() error { _, err := io.ReadFull(answers[i], b); return err }() != nil ||
			!strings.Contains(string(b), `"result"`) {
			t.Fatalf("message %d's answer: %s", i, b)
		}
	}
	waitFor(t, "the messages' bytes given back", func() bool { return reading() == 0 })
}
