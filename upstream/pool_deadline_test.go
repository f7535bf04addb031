package upstream

import (
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
)

// deadlineRecorder is a net.Conn that records the deadlines set on it.
type deadlineRecorder struct {
	net.Conn
	reads []time.Time
	both  []time.Time // SetDeadline
}

func (d *deadlineRecorder) SetDeadline(t time.Time) error {
	d.both = append(d.both, t)
	return nil
}

func (d *deadlineRecorder) SetReadDeadline(t time.Time) error {
	d.reads = append(d.reads, t)
	return nil
}

// TestCoarseConnDeadlines: a deadline is never set earlier than asked, at most 1/64 of
// the time left (and ~34 ms) later, and one already covered by the grain is not set again.
func TestCoarseConnDeadlines(t *testing.T) {
	for _, tc := range []struct {
		name string
		left time.Duration
	}{
		{"10s timeout", 10 * time.Second},
		{"1s timeout", time.Second},
		{"100ms timeout", 100 * time.Millisecond},
		{"1ms timeout", time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &deadlineRecorder{}
			c := &coarseConn{Conn: rec}
			want := time.Now().Add(tc.left)
			if err := c.SetReadDeadline(want); err != nil {
				t.Fatal(err)
			}
			if len(rec.reads) != 1 {
				t.Fatalf("deadline not set: %v", rec.reads)
			}
			got := rec.reads[0]
			if got.Before(want) {
				t.Fatalf("deadline %v set earlier than asked %v", got, want)
			}
			if late := got.Sub(want); late > tc.left/64 || late > 34*time.Millisecond {
				t.Fatalf("deadline %v later than asked: more than 1/64 of %v", late, tc.left)
			}
			// The same deadline again, and one inside the grain: nothing to set.
			_ = c.SetReadDeadline(want)
			_ = c.SetReadDeadline(got)
			if len(rec.reads) != 1 {
				t.Fatalf("a covered deadline set again: %v", rec.reads)
			}
			// One past the grain is set; clearing is passed on once.
			_ = c.SetReadDeadline(got.Add(time.Nanosecond))
			_ = c.SetReadDeadline(time.Time{})
			_ = c.SetReadDeadline(time.Time{})
			if len(rec.reads) != 3 || !rec.reads[2].IsZero() {
				t.Fatalf("deadlines set: %v", rec.reads)
			}
		})
	}
	t.Run("past", func(t *testing.T) {
		rec := &deadlineRecorder{}
		c := &coarseConn{Conn: rec}
		past := time.Now().Add(-time.Second)
		_ = c.SetReadDeadline(past)
		_ = c.SetReadDeadline(past)
		if len(rec.reads) != 2 || !rec.reads[0].Equal(past) {
			t.Fatalf("a deadline due now must be set as asked, each time: %v", rec.reads)
		}
	})
}

// setCall (callTransport's deadline, both directions in one set, no clock read): never
// earlier than asked, at most 1/64 of the call's time (and ~34 ms) later, not set again
// inside the grain, and past due set exactly; also under TLS, whose deadlines are its
// connection's.
func TestCoarseConnSetCall(t *testing.T) {
	for _, tc := range []struct {
		name string
		left time.Duration
		tls  bool
	}{
		{"10s timeout", 10 * time.Second, false},
		{"1s timeout", time.Second, false},
		{"1ms timeout", time.Millisecond, false},
		{"1s timeout under TLS", time.Second, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &deadlineRecorder{}
			var conn net.Conn = &coarseConn{Conn: rec}
			if tc.tls {
				conn = tls.Client(conn, &tls.Config{ServerName: "upstream.test"}) // no handshake: only its deadlines are used
			}
			want := time.Now().Add(tc.left)
			if err := setCallDeadline(conn, want, tc.left); err != nil {
				t.Fatal(err)
			}
			if len(rec.both) != 1 || len(rec.reads) != 0 {
				t.Fatalf("want one SetDeadline: set %v, read deadlines %v", rec.both, rec.reads)
			}
			got := rec.both[0]
			if got.Before(want) {
				t.Fatalf("deadline %v set earlier than asked %v", got, want)
			}
			if late := got.Sub(want); late > tc.left/64 || late > 34*time.Millisecond {
				t.Fatalf("deadline %v later than asked: more than 1/64 of %v", late, tc.left)
			}
			// The same deadline, and the next call's inside the grain: nothing to set.
			_ = setCallDeadline(conn, want, tc.left)
			_ = setCallDeadline(conn, got, tc.left)
			if len(rec.both) != 1 {
				t.Fatalf("a covered deadline set again: %v", rec.both)
			}
			_ = setCallDeadline(conn, got.Add(time.Nanosecond), tc.left)
			if len(rec.both) != 2 || rec.both[1].Before(got.Add(time.Nanosecond)) {
				t.Fatalf("a deadline past the grain: set %v", rec.both)
			}
		})
	}
	t.Run("past due", func(t *testing.T) {
		rec := &deadlineRecorder{}
		c := &coarseConn{Conn: rec}
		past := time.Now().Add(-time.Second)
		_ = setCallDeadline(c, past, 0)
		_ = setCallDeadline(c, past, 0)
		if len(rec.both) != 2 || !rec.both[0].Equal(past) {
			t.Fatalf("a deadline due now must be set as asked, each time: %v", rec.both)
		}
	})
}

// A call to an upstream that takes the request and never answers ends with a timeout,
// not before its deadline; one already past due is not sent.
func TestPoolCallEndsAtItsDeadline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c // read nothing, answer nothing
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		close(accepted)
		for c := range accepted {
			c.Close()
		}
	})
	p := testPool(t, "http://"+ln.Addr().String())
	deadline := time.Now().Add(300 * time.Millisecond)
	done := make(chan error, 1)
	go func() {
		_, err := p.Call(nil, request("eth_blockNumber", ""), []byte("1"), deadline)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, proto.ErrTimeout) {
			t.Fatalf("call to a silent upstream: %v, want ErrTimeout", err)
		}
		if now := time.Now(); now.Before(deadline) {
			t.Fatalf("timed out %v before its deadline", deadline.Sub(now))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a call to a silent upstream outlived its deadline by 30s: no deadline on the connection")
	}
	if _, err := p.Call(nil, request("eth_blockNumber", ""), []byte("1"), time.Now().Add(-time.Millisecond)); !errors.Is(err, proto.ErrTimeout) {
		t.Fatalf("a call past due: %v, want ErrTimeout", err)
	}
}
