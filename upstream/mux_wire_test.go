package upstream

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"net"
	"testing"
	"time"
)

// discardConn accepts writes (pongs, close frames) and reads nothing.
type discardConn struct{ net.Conn }

func (discardConn) Write(p []byte) (int, error)      { return len(p), nil }
func (discardConn) SetWriteDeadline(time.Time) error { return nil }

func wireFrom(stream []byte, limit int) *wireConn {
	return &wireConn{mc: &meteredConn{Conn: discardConn{}}, br: bufio.NewReader(bytes.NewReader(stream)), limit: limit}
}

func frame(fin bool, op byte, payload string) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	out := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		out = append(out, byte(n))
	case n <= 0xffff:
		out = append(out, 126, byte(n>>8), byte(n))
	default:
		out = append(out, 127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	return append(out, payload...)
}

func TestWireReadMessage(t *testing.T) {
	long := string(bytes.Repeat([]byte("x"), 70000))
	// f reads the messages of stream, then expects an error (end of stream or violation).
	f := func(stream []byte, limit int, want []string) {
		t.Helper()
		w := wireFrom(stream, limit)
		for _, m := range want {
			got, err := w.readMessage(nil)
			if err != nil || string(got) != m {
				t.Fatalf("got %q %v, want %q", got, err, m)
			}
		}
		if got, err := w.readMessage(nil); err == nil {
			t.Fatalf("after the messages: read %q, want an error", got)
		}
	}
	var s []byte
	s = append(s, frame(true, opText, `{"a":1}`)...)
	s = append(s, frame(true, opPing, "p")...) // between messages
	s = append(s, frame(false, opText, `{"b":`)...)
	s = append(s, frame(true, opPong, "")...) // inside a fragmented message
	s = append(s, frame(false, opContinuation, `2`)...)
	s = append(s, frame(true, opContinuation, `}`)...)
	s = append(s, frame(true, opBinary, long)...)
	f(s, 1<<20, []string{`{"a":1}`, `{"b":2}`, long})
	f(frame(true, opContinuation, "x"), 1000, nil)                               // continuation first
	f(append(frame(false, opText, "x"), frame(true, opText, "y")...), 1000, nil) // text inside text
	f([]byte{0x81 | 0x40, 0}, 1000, nil)                                         // reserved bit
	f([]byte{0x81, 0x80, 0, 0, 0, 0}, 1000, nil)                                 // masked by the server
	f(frame(false, opPing, ""), 1000, nil)                                       // fragmented control
	f(frame(true, opClose, "\x03\xe8"), 1000, nil)                               // close 1000
}

// A message over the limit is skipped, not buffered: its first bytes come back with
// errTooLarge, and the next message reads normally.
func TestWireSkipsOversizedMessage(t *testing.T) {
	big := `{"jsonrpc":"2.0","id":7,"result":"` + string(bytes.Repeat([]byte("x"), 200000)) + `"}`
	var s []byte
	s = append(s, frame(false, opText, big[:100000])...)
	s = append(s, frame(true, opPing, "p")...)
	s = append(s, frame(true, opContinuation, big[100000:])...)
	s = append(s, frame(true, opText, `{"next":1}`)...)
	s = append(s, frame(true, opText, big)...)
	w := wireFrom(s, 1000)
	got, err := readPrefix(w, nil)
	if err != errTooLarge || len(got) != keepPrefix || string(got) != big[:keepPrefix] {
		t.Fatalf("oversized fragmented message: %d bytes, %v", len(got), err)
	}
	if got, err := w.readMessage(got); err != nil || string(got) != `{"next":1}` {
		t.Fatalf("after it: %q %v", got, err)
	}
	if got, err = readPrefix(w, got); err != errTooLarge || len(got) != keepPrefix {
		t.Fatalf("oversized single frame: %d bytes, %v", len(got), err)
	}
	if cap(got) > 2*keepPrefix {
		t.Fatalf("buffered %d bytes for an oversized message", cap(got))
	}
}

// readPrefix reads the next message as the Mux's reader does with an oversized one:
// its prefix grown to keepPrefix bytes, with errTooLarge.
func readPrefix(w *wireConn, dst []byte) ([]byte, error) {
	msg, err := w.readMessage(dst)
	for more := err == errTooLarge; more; {
		var gerr error
		if msg, more, gerr = w.growPrefix(msg); gerr != nil {
			return msg, gerr
		}
	}
	return msg, err
}

// FuzzWireRead feeds arbitrary bytes to the frame reader: no panic, no message over
// the limit, and every message is the concatenation of its data frames.
func FuzzWireRead(f *testing.F) {
	f.Add(frame(true, opText, `{"jsonrpc":"2.0","id":1,"result":"0x1"}`))
	f.Add(append(frame(false, opText, "ab"), frame(true, opContinuation, "cd")...))
	f.Add(append(frame(true, opPing, "x"), frame(true, opText, "y")...))
	f.Add([]byte{0x81, 127, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x81, 127, 0x40, 0, 0, 0, 0, 0, 0, 0, '{', '"', 'i', 'd', '"', ':', '1'})
	f.Fuzz(func(t *testing.T, stream []byte) {
		const limit = 4096
		w := wireFrom(stream, limit)
		for i := 0; i < 64; i++ {
			msg, err := readPrefix(w, nil)
			if err == errTooLarge {
				if len(msg) > keepPrefix {
					t.Fatalf("kept %d bytes of an oversized message", len(msg))
				}
				continue
			}
			if err != nil {
				return
			}
			if len(msg) > limit {
				t.Fatalf("message of %d bytes over the %d limit", len(msg), limit)
			}
		}
	})
}

// writeDeadlines is a connection that takes every write and records its write deadlines.
type writeDeadlines struct {
	discardConn
	set []time.Time
}

func (w *writeDeadlines) SetWriteDeadline(t time.Time) error {
	w.set = append(w.set, t)
	return nil
}

// Bursts set their write deadline on the grid: never earlier than asked, at most
// burstGrain later, not again while the one set covers the next burst's; a control
// frame's own deadline makes the next burst set its own again.
func TestBurstWriteDeadlineGrid(t *testing.T) {
	w := &writeDeadlines{}
	c := &meteredConn{Conn: w}
	burst := func(d time.Time) {
		t.Helper()
		c.hold()
		c.appendFrame([]byte(`{"id":1}`))
		if err := c.flush(d); err != nil {
			t.Fatal(err)
		}
	}
	d := time.Now().Add(10 * time.Second)
	burst(d)
	if len(w.set) != 1 {
		t.Fatalf("first burst: deadlines set %v, want one", w.set)
	}
	got := w.set[0]
	if got.Before(d) || got.Sub(d) > time.Duration(burstGrain) {
		t.Fatalf("deadline %v for %v: want at most %v later, never earlier", got, d, time.Duration(burstGrain))
	}
	burst(d)
	burst(got) // the deadline set covers it exactly
	if len(w.set) != 1 {
		t.Fatalf("covered bursts set deadlines again: %v", w.set)
	}
	burst(got.Add(time.Nanosecond)) // past it: set, on the next grid step
	if len(w.set) != 2 || w.set[1].Before(got.Add(time.Nanosecond)) {
		t.Fatalf("a burst past the deadline set: %v", w.set)
	}
	if err := c.writeNow([]byte{0x8a, 0x80, 0, 0, 0, 0}, d.Add(-5*time.Second)); err != nil { // a pong, its own deadline
		t.Fatal(err)
	}
	burst(got.Add(time.Nanosecond))
	if len(w.set) != 4 || !w.set[2].Equal(d.Add(-5*time.Second)) {
		t.Fatalf("after a control frame's deadline, the next burst must set its own: %v", w.set)
	}
	// A deadline well before the one set (the clock stepped back): set again.
	burst(d.Add(-time.Second))
	if len(w.set) != 5 || w.set[4].Before(d.Add(-time.Second)) || w.set[4].Sub(d.Add(-time.Second)) > time.Duration(burstGrain) {
		t.Fatalf("an earlier deadline: %v", w.set)
	}
}
