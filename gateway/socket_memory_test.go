package gateway

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// What a connected /socket2socket subscriber costs the gateway, measured in-process:
// the live heap and goroutine stacks it adds, and its goroutines. The clients are raw
// sockets without a goroutine or buffers of their own, so nearly all that is added is
// the gateway's. The fake upstream stands in for a node: heads come when the test
// pushes them, so no notification is in flight while memory is read.
func TestSocket2SocketSubscriberMemory(t *testing.T) {
	for _, tc := range []struct {
		name    string
		clients int
		// maxHeapKiB bounds the live heap per subscriber. RSS adds the garbage
		// collector's headroom (GOGC) on top of it and the goroutine's stack: the
		// bench's memory step holds RSS to 12 KiB per subscriber.
		maxHeapKiB float64
		// maxStackKiB bounds the stacks per subscriber: one goroutine's, which starts
		// at the runtime's average stack size (adaptive: 4 or 8 KiB here).
		maxStackKiB float64
	}{
		{name: "subscribed newHeads", clients: 200, maxHeapKiB: 6, maxStackKiB: 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := startFakeUpstream(t)
			gw := startGateway(t, fake.args("-cache=false")...)
			gw.waitUpstreams(t)
			addr := strings.TrimPrefix(gw.URL, "http://")

			// One subscriber first: the upstream subscription, its group and the pools
			// are one-time costs, in the baseline.
			warm := dialRawSubscriber(t, addr)
			head := fake.head.Load()
			fake.pushHead(head + 1)
			warm.expectHead(t, head+1)

			g0, m0 := settledMemory()
			subs := make([]*rawSubscriber, tc.clients)
			for i := range subs {
				subs[i] = dialRawSubscriber(t, addr)
			}
			// Every subscriber gets the next head once, with its id: nothing is traded
			// away for memory. The frames written, no write buffer is left in flight.
			fake.pushHead(head + 2)
			for _, s := range append(subs, warm) {
				s.expectHead(t, head+2)
			}
			g1, m1 := settledMemory()

			n := float64(tc.clients)
			heap := (float64(m1.HeapAlloc) - float64(m0.HeapAlloc)) / n / 1024
			stack := (float64(m1.StackInuse) - float64(m0.StackInuse)) / n / 1024
			perClient := float64(g1-g0) / n
			t.Logf("%d subscribers: %.2f KiB heap + %.2f KiB stacks each, %.2f goroutines each",
				tc.clients, heap, stack, perClient)
			if heap > tc.maxHeapKiB {
				t.Errorf("%.2f KiB of live heap per subscriber, want ≤ %.0f KiB", heap, tc.maxHeapKiB)
			}
			// Under -race frames are larger and the runtime starts goroutines at the
			// average stack it scanned (8 or 16 KiB then): CI failed at 8.96 KiB with the
			// same code that measured 6.9-8.5 and 5.8 without the detector. The bound is
			// the product's without it (test:allocs runs this test so); with it, twice.
			maxStack := tc.maxStackKiB
			if raceDetector {
				maxStack *= 2
			}
			if stack > maxStack {
				t.Errorf("%.2f KiB of stacks per subscriber, want ≤ %.0f KiB", stack, maxStack)
			}
			// One goroutine per idle client, the one that waits for its messages.
			if g1-g0 > tc.clients+5 {
				t.Errorf("%d goroutines for %d idle subscribers, want at most one each", g1-g0, tc.clients)
			}
		})
	}
}

// settledMemory collects garbage (pools included: two cycles empty them) and returns
// the goroutine count and memory statistics.
func settledMemory() (int, runtime.MemStats) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return runtime.NumGoroutine(), m
}

// rawSubscriber is a websocket client written by hand on a TCP socket: a handshake, one
// masked frame (eth_subscribe newHeads) and unmasked frames read back. No goroutine and
// no buffers beyond a small reader, so it adds almost nothing to the process's memory.
type rawSubscriber struct {
	c   net.Conn
	r   *bufio.Reader
	sub string
}

func dialRawSubscriber(t testing.TB, addr string) *rawSubscriber {
	t.Helper()
	return dialRawSubscriberEarly(t, addr, false)
}

// dialRawSubscriberEarly is dialRawSubscriber; with early, the eth_subscribe frame goes
// out in the same write as the handshake, before the 101 is read (RFC 6455 says to wait;
// a client that does not is still served).
func dialRawSubscriberEarly(t testing.TB, addr string, early bool) *rawSubscriber {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(wsWait))
	s := &rawSubscriber{c: c, r: bufio.NewReaderSize(c, 16)}
	const subscribe = `{"jsonrpc":"2.0","id":7,"method":"eth_subscribe","params":["newHeads"]}`
	hs := []byte("GET /socket2socket HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\n" +
		"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	if early {
		hs = append(hs, maskedFrame(subscribe)...)
	}
	if _, err := c.Write(hs); err != nil {
		t.Fatal(err)
	}
	status, err := s.r.ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 101") {
		t.Fatalf("handshake: %q %v", status, err)
	}
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			t.Fatalf("handshake headers: %v", err)
		}
		if line == "\r\n" {
			break
		}
	}
	if !early {
		s.write(t, subscribe)
	}
	answer := s.read(t)
	const prefix = `{"jsonrpc":"2.0","id":7,"result":"`
	if !strings.HasPrefix(answer, prefix) {
		t.Fatalf("eth_subscribe answered %s", answer)
	}
	s.sub = strings.TrimSuffix(strings.TrimPrefix(answer, prefix), `"}`)
	return s
}

// write sends msg as one masked text frame (a client's frames are masked).
func (s *rawSubscriber) write(t testing.TB, msg string) {
	t.Helper()
	if _, err := s.c.Write(maskedFrame(msg)); err != nil {
		t.Fatal(err)
	}
}

// maskedFrame is msg (at most 125 bytes) as a client's text frame.
func maskedFrame(msg string) []byte {
	mask := [4]byte{1, 2, 3, 4}
	f := append([]byte{0x81, 0x80 | byte(len(msg))}, mask[:]...)
	for i := range len(msg) {
		f = append(f, msg[i]^mask[i%4])
	}
	return f
}

// read returns the next text frame's payload (the server's frames are not masked).
func (s *rawSubscriber) read(t testing.TB) string {
	t.Helper()
	_ = s.c.SetReadDeadline(time.Now().Add(wsWait))
	var h [2]byte
	if _, err := io.ReadFull(s.r, h[:]); err != nil {
		t.Fatalf("frame header: %v", err)
	}
	if h[0] != 0x81 {
		t.Fatalf("frame 0x%x, want one final text frame", h[0])
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(s.r, b[:]); err != nil {
			t.Fatal(err)
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(s.r, b[:]); err != nil {
			t.Fatal(err)
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(s.r, p); err != nil {
		t.Fatalf("frame payload: %v", err)
	}
	return string(p)
}

// expectHead reads the next message: the newHeads notification of head n, on its id.
func (s *rawSubscriber) expectHead(t testing.TB, n uint64) {
	t.Helper()
	msg := s.read(t)
	want := `"number":"0x` + strconv.FormatUint(n, 16) + `"`
	if !bytes.Contains([]byte(msg), []byte(`"subscription":"`+s.sub+`"`)) || !strings.Contains(msg, want) {
		t.Fatalf("want head %d on %s, got %s", n, s.sub, msg)
	}
}

// A frame sent right behind the handshake request, before the 101 (RFC 6455 forbids
// it), reaches fasthttp's request reader, not the socket: taking the connection over
// raw must not lose it.
func TestSocket2SocketFrameBeforeHandshakeAnswer(t *testing.T) {
	fake := startFakeUpstream(t)
	gw := startGateway(t, fake.args("-cache=false")...)
	gw.waitUpstreams(t)
	addr := strings.TrimPrefix(gw.URL, "http://")
	for _, early := range []bool{true, false} {
		s := dialRawSubscriberEarly(t, addr, early) // fails unless eth_subscribe is answered
		head := fake.head.Load() + 1
		fake.pushHead(head)
		s.expectHead(t, head)
	}
}
