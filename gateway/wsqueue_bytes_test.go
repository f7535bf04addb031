package gateway

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The byte budget of a slow client's queue (-ws-client-queue-bytes) counts the
// message being written to it too. The writer took the whole queue at once and the
// count went back to 0 while it wrote: a client that read slowly held the message
// being written and another budget's worth queued behind it (three 7 MiB answers
// under a 16 MiB budget: 21 MiB a client, 20 such clients 620 MiB of heap, none
// dropped). Here the first 10 MiB answer is being written (the client has its first
// bytes and reads no more), two more come: 30 MiB held, over a 25 MiB budget, so the
// client is dropped.
func TestSlowClientQueueCountsTheMessageBeingWritten(t *testing.T) {
	const answerBytes = 10 << 20 // more than the socket buffers take: its write blocks
	gw := startLogsGateway(t, answerBytes, "-cache=false", "-ws-client-queue-bytes", strconv.Itoa(25<<20),
		"-ws-client-write-timeout", "5m")

	// A raw client with a small receive buffer, so the first answer's write blocks.
	c, r := dialSlowSocket(t, gw)
	call := func(id int) {
		t.Helper()
		if _, err := c.Write(maskedFrame(`{"jsonrpc":"2.0","id":` + strconv.Itoa(id) + `,"method":"eth_getLogs","params":[{}]}`)); err != nil {
			t.Fatal(err)
		}
	}
	call(1)
	// The first answer's frame has begun: it is being written, and the client reads
	// no further.
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil || h[0] != 0x81 || h[1]&0x7f != 127 {
		t.Fatalf("the first answer's frame: % x %v", h, err)
	}
	call(2)
	call(3)
	waitFor(t, "the slow client dropped", func() bool { return gw.metric(t, "gateway_ws_slow_clients_dropped_total") == 1 })
	waitFor(t, "every call answered", func() bool { return gw.metric(t, "gateway_pending_request_bytes") == 0 })
}

// dialSlowSocket connects a raw /socket2socket client with a small receive buffer
// (dialSlowReader): an answer larger than the socket buffers stays being written until
// it reads.
func dialSlowSocket(t *testing.T, gw *testGateway) (net.Conn, *bufio.Reader) {
	t.Helper()
	c := dialSlowReader(t, gw.URL)
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(wsWait))
	r := bufio.NewReaderSize(c, 16)
	if _, err := io.WriteString(c, "GET /socket2socket HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		if line == "\r\n" {
			return c, r
		}
	}
}

// A large answer queued or being written to a /socket2socket client stays counted in
// the answer budget (-max-answer-bytes) until it is written, as an HTTP answer does:
// while a client that stops reading holds a 10 MiB answer, another client's large
// answer is refused (-32005) and its small ones are served; once the slow client has
// read it, the bytes come back and large answers are served again. Before, the count
// ended when the Mux routed the answer to its call: 40 clients each asking two 8 MiB
// answers and reading none held 820 MiB of heap under a 256 MiB budget, and any
// number of clients could hold -ws-client-queue-bytes each.
func TestAnswerBudgetHoldsWebsocketAnswers(t *testing.T) {
	const size = 10 << 20 // more than the socket buffers take: its write blocks
	gw := startLogsGateway(t, size, "-cache=false", "-max-response-body", strconv.Itoa(12<<20),
		"-max-answer-bytes", strconv.Itoa(12<<20), "-ws-client-write-timeout", "5m")
	const getLogs = `{"jsonrpc":"2.0","id":1,"method":"eth_getLogs","params":[{}]}`
	held := func() float64 { return gw.metric(t, "gateway_upstream_answer_bytes_held") }

	slow, r := dialSlowSocket(t, gw)
	if _, err := slow.Write(maskedFrame(getLogs)); err != nil {
		t.Fatal(err)
	}
	var h [10]byte // the frame's header: 127, then the length in 8 bytes
	if _, err := io.ReadFull(r, h[:]); err != nil || h[0] != 0x81 || h[1]&0x7f != 127 {
		t.Fatalf("the slow client's answer: % x %v", h, err)
	}
	if got := held(); got < size-(64<<10) {
		t.Fatalf("held %v bytes while a client has not read a %d-byte answer", got, size)
	}

	other := dialWS(t, gw.WSURL, nil)
	if a := decodeAnswer(t, other.call(getLogs)); a.Error == nil || a.Error.Code != -32005 {
		t.Fatalf("a large answer while a slow client holds one: %+v; want -32005", a)
	}
	if a := decodeAnswer(t, other.call(`{"jsonrpc":"2.0","id":2,"method":"eth_chainId"}`)); a.Error != nil {
		t.Fatalf("a small call meanwhile: %+v", a.Error)
	}

	// The slow client reads its answer: the bytes come back once it is written.
	if _, err := io.CopyN(io.Discard, r, int64(binary.BigEndian.Uint64(h[2:]))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the bytes given back once the answer is written", func() bool { return held() == 0 })
	if a := decodeAnswer(t, other.call(getLogs)); a.Error != nil {
		t.Fatalf("a large answer once there is room: %+v", a.Error)
	}
	waitFor(t, "the bytes given back once the second answer is written", func() bool { return held() == 0 })
}

// startLogsGateway starts a gateway with args over a fake upstream whose eth_getLogs
// answer is a string of size bytes, and waits for its upstreams.
func startLogsGateway(t *testing.T, size int, args ...string) *testGateway {
	t.Helper()
	answer := `"` + strings.Repeat("q", size) + `"`
	fake := startFakeUpstream(t, fakeRespond(func(r fakeRequest) fakeAnswer {
		if r.Method == "eth_getLogs" {
			return fakeAnswer{Result: answer}
		}
		return fakeAnswer{}
	}))
	gw := startGateway(t, fake.args(args...)...)
	gw.waitUpstreams(t)
	return gw
}
