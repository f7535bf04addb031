package gateway

import (
	"bufio"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
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
	answer := `"` + strings.Repeat("q", answerBytes) + `"`
	fake := startFakeUpstream(t, fakeRespond(func(r fakeRequest) fakeAnswer {
		if r.Method == "eth_getLogs" {
			return fakeAnswer{Result: answer}
		}
		return fakeAnswer{}
	}))
	gw := startGateway(t, fake.args("-cache=false", "-ws-client-queue-bytes", strconv.Itoa(25<<20),
		"-ws-client-write-timeout", "5m")...)
	gw.waitUpstreams(t)

	// A raw client with a small receive buffer, so the first answer's write blocks.
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		if err != nil {
			return err
		}
		return serr
	}}
	c, err := d.Dial("tcp", strings.TrimPrefix(gw.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
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
			break
		}
	}
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
