package limit

import (
	"testing"
	"time"
)

func TestLocalBucketBurstRefusalAndRefill(t *testing.T) {
	l := newLocal(t, Config{})
	b, err := l.NewBucket("plan:free:rps", 100, 5)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if d := b.Take(1); !d.OK {
			t.Fatalf("take %d of the burst refused: %+v", i, d)
		}
	}
	d := b.Take(1)
	if d.OK || d.Kind != KindRate || d.Reason != ReasonExceeded || d.Name != "plan:free:rps" {
		t.Fatalf("over the burst: %+v", d)
	}
	if d.RetryAfter <= 0 || d.RetryAfter > 10*time.Millisecond {
		t.Fatalf("retry after %v, want (0, 10ms] at 100/s", d.RetryAfter)
	}
	if d := b.Take(6); d.OK || d.Reason != ReasonTooLarge {
		t.Fatalf("a batch larger than the burst: %+v, want too_large", d)
	}
	// Refills by time: a token every 10ms.
	waitFor(t, 5*time.Second, "a token refills", func() bool { return b.Take(1).OK })
	if d := b.Take(0); !d.OK {
		t.Fatal("Take(0) refused")
	}
}

func TestLocalBucketBatchCostsItsSum(t *testing.T) {
	l := newLocal(t, Config{})
	b, _ := l.NewBucket("k", 1, 10) // refills slowly: only the burst matters here
	if !b.Take(7).OK {
		t.Fatal("a batch of 7 within a burst of 10 refused")
	}
	d := b.Take(4)
	if d.OK {
		t.Fatal("a batch of 4 with 3 left admitted")
	}
	if d.RetryAfter < 900*time.Millisecond || d.RetryAfter > 1100*time.Millisecond {
		t.Fatalf("retry after %v, want ~1s (one unit missing at 1/s)", d.RetryAfter)
	}
	if !b.Take(3).OK {
		t.Fatal("the 3 left refused")
	}
}

func TestLocalBucketRateOverTime(t *testing.T) {
	l := newLocal(t, Config{})
	b, _ := l.NewBucket("k", 200, 1)
	start := time.Now()
	ok := 0
	// due is what a bucket of burst 1 had for this loop as it ran: the refill between
	// two of its looks, at most 1. A loop not scheduled for a while on a loaded machine
	// loses what it did not look for (30 of 102 seen with a fixed floor of 30 %).
	due, last := 0.0, start
	for now := start; now.Sub(start) < 500*time.Millisecond; now = time.Now() {
		due += min(1, 200*now.Sub(last).Seconds())
		last = now
		if b.Take(1).OK {
			ok++
		}
	}
	el := time.Since(start).Seconds()
	// Never more than rate × time + burst; at least half of what was due.
	if want := 200 * el; float64(ok) > want+1 || float64(ok) < due/2 {
		t.Fatalf("admitted %d in %.2fs, want ≤ %.0f and at least half the %.0f due to this loop", ok, el, want+1, due)
	}
}

func TestLocalQuotaRollsOverAtUTCMidnight(t *testing.T) {
	var clk fakeClock
	clk.set(time.Date(2026, 3, 1, 23, 59, 58, 0, time.UTC))
	l := newLocal(t, Config{Now: clk.now})
	q, err := l.NewQuota("key:7:daily", 3)
	if err != nil {
		t.Fatal(err)
	}
	if !q.Take(2).OK || !q.Take(1).OK {
		t.Fatal("within quota refused")
	}
	d := q.Take(1)
	if d.OK || d.Kind != KindQuota || d.Reason != ReasonExceeded {
		t.Fatalf("over quota: %+v", d)
	}
	if d.RetryAfter != 2*time.Second {
		t.Fatalf("retry after %v, want 2s (until UTC midnight)", d.RetryAfter)
	}
	if d := q.Take(4); d.Reason != ReasonTooLarge {
		t.Fatalf("more than the whole quota: %+v", d)
	}
	clk.add(2 * time.Second)
	for i := range 3 {
		if !q.Take(1).OK {
			t.Fatalf("take %d of the new day refused", i)
		}
	}
	if q.Take(1).OK {
		t.Fatal("the new day admitted more than its quota")
	}
}

func TestLocalSlots(t *testing.T) {
	l := newLocal(t, Config{})
	s, err := l.NewSlots("key:7:ws", 2)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Acquire().OK || !s.Acquire().OK {
		t.Fatal("within max refused")
	}
	d := s.Acquire()
	if d.OK || d.Kind != KindSlots || d.RetryAfter != time.Second {
		t.Fatalf("over max: %+v", d)
	}
	s.Release()
	if !s.Acquire().OK {
		t.Fatal("a released slot is not free")
	}
	s.Release()
	s.Release()
	s.Release() // one too many: ignored
	if s.InUse() != 0 {
		t.Fatalf("in use %d, want 0", s.InUse())
	}
}

func TestBadHandles(t *testing.T) {
	l := newLocal(t, Config{})
	for _, f := range []func() error{
		func() error { _, err := l.NewBucket("", 1, 1); return err },
		func() error { _, err := l.NewBucket("a b", 1, 1); return err },
		func() error { _, err := l.NewBucket("k", 0, 1); return err },
		func() error { _, err := l.NewBucket("k", 1, 0); return err },
		func() error { _, err := l.NewQuota("k", 0); return err },
		func() error { _, err := l.NewSlots("k", 0); return err },
	} {
		if f() == nil {
			t.Error("want an error")
		}
	}
}

func TestLocalHandlesCounted(t *testing.T) {
	l := newLocal(t, Config{})
	b, _ := l.NewBucket("a", 1, 1)
	q, _ := l.NewQuota("b", 1)
	if l.Handles() != 2 {
		t.Fatalf("handles %d, want 2", l.Handles())
	}
	b.Close()
	b.Close()
	q.Close()
	if l.Handles() != 0 {
		t.Fatalf("handles %d after Close, want 0", l.Handles())
	}
}
