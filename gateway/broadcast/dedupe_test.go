package broadcast

import (
	"io"
	"log/slog"
	"testing"
	"time"
)

func hashN(n int) (h [32]byte) { h[0], h[1] = byte(n), byte(n>>8); return h }

// The process's records are bounded: past max_entries the oldest go first; a record
// goes when its window is over; a failed broadcast leaves none, so a resend goes out.
func TestDedupeBounded(t *testing.T) {
	d := newDedupe("n", nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	d.resize(3)
	deadline := time.Now().Add(time.Minute)
	for i := range 10 {
		st, r, err := d.claim(hashN(i), time.Hour, deadline)
		if err != nil || st != claimNew {
			t.Fatalf("claim %d: %v %v", i, st, err)
		}
		d.settle(hashN(i), r, i != 5, time.Hour)
		if len(d.m) > 3 {
			t.Fatalf("%d records kept, max 3", len(d.m))
		}
	}
	cases := []struct {
		n    int
		want claimState
	}{{9, claimDone}, {8, claimDone}, {7, claimDone}, {0, claimNew}, {5, claimNew}}
	for _, c := range cases {
		st, r, _ := d.claim(hashN(c.n), time.Hour, deadline)
		if st != c.want {
			t.Errorf("claim of %d: %v, want %v", c.n, st, c.want)
		}
		if r != nil {
			d.settle(hashN(c.n), r, false, time.Hour)
		}
	}
	if len(d.order)-d.head > 64 {
		t.Errorf("the order queue holds %d entries", len(d.order)-d.head)
	}

	// A short window ends.
	st, r, _ := d.claim(hashN(100), time.Millisecond, deadline)
	d.settle(hashN(100), r, true, time.Millisecond)
	for start := time.Now(); st != claimNew; {
		if time.Since(start) > 30*time.Second {
			t.Fatal("the record outlived its window")
		}
		var r *record
		if st, r, _ = d.claim(hashN(100), time.Millisecond, deadline); r != nil {
			d.settle(hashN(100), r, false, time.Millisecond)
		}
	}
}

// A send of a transaction whose broadcast is under way waits for it: the hash once it
// was accepted, a claim of its own when it failed, an error past its deadline.
func TestDedupeWaitsForABroadcastUnderWay(t *testing.T) {
	d := newDedupe("n", nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for _, c := range []struct {
		name     string
		accepted bool
		want     claimState
	}{{"accepted", true, claimDone}, {"failed", false, claimRetry}} {
		t.Run(c.name, func(t *testing.T) {
			h := hashN(int(c.want) + 1)
			_, r, _ := d.claim(h, time.Hour, time.Now().Add(time.Minute))
			got := make(chan claimState)
			go func() {
				st, _, _ := d.claim(h, time.Hour, time.Now().Add(time.Minute))
				got <- st
			}()
			d.settle(h, r, c.accepted, time.Hour)
			if st := <-got; st != c.want && !(c.want == claimRetry && st == claimNew) {
				t.Errorf("waiter got %v, want %v", st, c.want)
			}
		})
	}
	h := hashN(999)
	_, r, _ := d.claim(h, time.Hour, time.Now().Add(time.Minute))
	defer d.settle(h, r, false, time.Hour)
	if _, _, err := d.claim(h, time.Hour, time.Now().Add(10*time.Millisecond)); err != errStillSending {
		t.Errorf("past its deadline: %v, want errStillSending", err)
	}
}
