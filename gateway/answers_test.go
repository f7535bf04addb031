package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// heldReader is an answer body sent in two parts: the first at once, the rest once
// release is closed.
type heldReader struct {
	first, rest string
	release     chan struct{}
	sent        bool
}

func (r *heldReader) Read(p []byte) (int, error) {
	if !r.sent {
		if len(r.first) > 0 {
			n := copy(p, r.first)
			r.first = r.first[n:]
			return n, nil
		}
		<-r.release
		r.sent = true
	}
	if len(r.rest) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.rest)
	r.rest = r.rest[n:]
	return n, nil
}

// While the gateway holds -max-answer-bytes of upstream answers (one large answer
// half read), another large answer is refused with 503, Retry-After and a JSON-RPC
// error saying why (no upstream address), a small one is still served, the upstream is
// not held responsible, and once the first answer is done the budget is back to 0.
func TestAnswerBudgetRefusesWith503(t *testing.T) {
	const size = 900 << 10
	result := `"0x` + strings.Repeat("ab", size/2) + `"`
	held := &heldReader{release: make(chan struct{})}
	body := `{"jsonrpc":"2.0","id":1,"result":` + result + `}`
	held.first, held.rest = body[:700<<10], body[700<<10:]
	fake := startFakeUpstream(t, fakeRespond(func(r fakeRequest) fakeAnswer {
		switch {
		case r.Method == "eth_call" && strings.Contains(string(r.Params), "hold"):
			return fakeAnswer{Stream: held}
		case r.Method == "eth_call" && strings.Contains(string(r.Params), "big"):
			return fakeAnswer{Result: result}
		}
		return fakeAnswer{}
	}))
	gw := startGateway(t, "-upstream-http", fake.HTTPURL, "-upstream-ws", "off", "-cache=false",
		"-max-response-body", strconv.Itoa(1<<20), "-max-answer-bytes", strconv.Itoa(1<<20))
	// Given back first on any failure too: the gateway's and the fake's shutdowns wait
	// for the held answer.
	release := sync.OnceFunc(func() { close(held.release) })
	t.Cleanup(release)
	call := func(param string) string {
		return `{"jsonrpc":"2.0","id":7,"method":"eth_call","params":[{"to":"0x0000000000000000000000000000000000000001","data":"0x"},"` + param + `"]}`
	}
	first := make(chan error, 1)
	go func() {
		code, b, err := tryDo("POST", gw.URL, call("hold"))
		if err == nil && (code != 200 || len(b) < size) {
			err = fmt.Errorf("%d, %d bytes", code, len(b))
		}
		first <- err
	}()
	waitFor(t, "the first answer half read", func() bool {
		return gw.metric(t, "gateway_upstream_answer_bytes_held") >= 600<<10
	})

	code, h, b := post(t, gw.URL, call("big"), nil)
	var e struct {
		Error struct {
			Code    int
			Message string
		}
	}
	if err := json.Unmarshal([]byte(b), &e); err != nil || code != 503 || e.Error.Code != -32005 ||
		!strings.Contains(e.Error.Message, "too many large upstream answers") {
		t.Fatalf("a large answer while the budget is held: %d %s; want 503 -32005 saying why", code, b)
	}
	if ra, err := strconv.Atoi(h.Get("Retry-After")); err != nil || ra < 1 || ra > 2 {
		t.Errorf("Retry-After %q, want 1 or 2 seconds", h.Get("Retry-After"))
	}
	if strings.Contains(b, "127.0.0.1") || strings.Contains(b, fake.HTTPURL) {
		t.Errorf("the refusal names the upstream: %s", b)
	}
	if code, _, b := post(t, gw.URL, call("small"), nil); code != 200 {
		t.Fatalf("a small call while the budget is held: %d %s", code, b)
	}
	if got := gw.metric(t, `gateway_upstream_answer_budget_refusals_total{transport="http"}`); got != 1 {
		t.Errorf("refusals counted: %v, want 1", got)
	}
	for _, n := range gw.srv.nets.List() {
		for _, u := range n.Router.Upstreams() {
			if s := u.Health().State(); s.String() != "healthy" {
				t.Errorf("upstream %s is %s after the gateway's own refusal", u.Name(), s)
			}
		}
	}

	release()
	if err := <-first; err != nil {
		t.Fatalf("the held answer: %v", err)
	}
	if code, _, b := post(t, gw.URL, call("big"), nil); code != 200 || len(b) < size {
		t.Fatalf("a large answer once there is room: %d, %d bytes", code, len(b))
	}
	// A large answer is counted until its write returns, which may be just after the
	// client has its last byte.
	waitFor(t, "the budget back to 0 once every answer is written", func() bool {
		return gw.metric(t, "gateway_upstream_answer_bytes_held") == 0
	})
}

// An answer being written to a client stays counted in the answer budget until its
// last byte is written: a client that stops reading holds its large answer's bytes, so
// another large answer is refused meanwhile (a small one is served), and the bytes
// come back when that client goes. Before, the count ended when the upstream layer
// handed the answer over, and any number of slow clients each held an answer of up to
// -max-response-body outside the bound for up to -write-timeout. A single call's
// answer and a batch's are written on different paths; each is checked. The answer is
// larger than the kernel's socket buffers can take (4 MiB at most here).
func TestAnswerBudgetHoldsAnswersBeingWritten(t *testing.T) {
	const size = 12 << 20
	result := `"0x` + strings.Repeat("ab", size/2) + `"`
	fake := startFakeUpstream(t, fakeRespond(func(r fakeRequest) fakeAnswer {
		if r.Method == "eth_call" && strings.Contains(string(r.Params), "big") {
			return fakeAnswer{Result: result}
		}
		return fakeAnswer{}
	}))
	gw := startGateway(t, "-upstream-http", fake.HTTPURL, "-upstream-ws", "off", "-cache=false",
		"-max-response-body", strconv.Itoa(20<<20), "-max-answer-bytes", strconv.Itoa(20<<20))
	call := func(id int, param string) string {
		return `{"jsonrpc":"2.0","id":` + strconv.Itoa(id) +
			`,"method":"eth_call","params":[{"to":"0x0000000000000000000000000000000000000001","data":"0x"},"` + param + `"]}`
	}
	held := func() float64 { return gw.metric(t, "gateway_upstream_answer_bytes_held") }
	served := func() float64 { return gw.metric(t, `gateway_requests_total{route="rpc",code="200"}`) }
	for _, tc := range []struct{ name, body string }{
		{"call", call(1, "big")},
		{"batch", "[" + call(1, "big") + "," + call(2, "small") + "]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := served()
			slow := dialSlowReader(t, gw.URL)
			defer slow.Close()
			if _, err := fmt.Fprintf(slow, "POST / HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
				len(tc.body), tc.body); err != nil {
				t.Fatal(err)
			}
			// Counted once its handler has returned: the answer is the response's then.
			waitFor(t, "the slow client's call answered", func() bool { return served() == before+1 })
			if got := held(); got < size-(64<<10) {
				t.Fatalf("held %v bytes while a client has not read a %d-byte answer", got, size)
			}

			if code, _, b := post(t, gw.URL, call(3, "big"), nil); code != 503 || !strings.Contains(b, "-32005") {
				t.Fatalf("a large answer while a slow client holds one: %d %.200s; want 503 -32005", code, b)
			}
			if code, _, b := post(t, gw.URL, call(4, "small"), nil); code != 200 {
				t.Fatalf("a small call meanwhile: %d %s", code, b)
			}
			slow.Close()
			waitFor(t, "the bytes given back once the client is gone", func() bool { return held() == 0 })
			if code, _, b := post(t, gw.URL, call(5, "big"), nil); code != 200 || len(b) < size {
				t.Fatalf("a large answer once there is room: %d, %d bytes", code, len(b))
			}
			// Given back when the write returns, which may be just after the client has
			// the last byte.
			waitFor(t, "the bytes given back once the answer is written", func() bool { return held() == 0 })
		})
	}
}

// dialSlowReader connects to the gateway with a small receive buffer, for a client
// that sends a request and never reads the answer.
func dialSlowReader(t *testing.T, gwURL string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		}); err != nil {
			return err
		}
		return serr
	}}
	c, err := d.Dial("tcp", strings.TrimPrefix(gwURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}
