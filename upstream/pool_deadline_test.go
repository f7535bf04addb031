package upstream

import (
	"net"
	"testing"
	"time"
)

// deadlineRecorder is a net.Conn that records the deadlines set on it.
type deadlineRecorder struct {
	net.Conn
	reads []time.Time
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
