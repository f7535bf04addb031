package upstream

import (
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
)

// Each call times out at its own deadline, never before, whatever the order calls are
// registered and answered in: the socket's one deadline timer (slot.expire) is moved
// earlier by a call due first, fails only what is due when it fires, and re-arms for
// the rest. Bounds are one-sided (never early) plus a generous late bound, so load
// cannot make the test fail.
func TestMuxDeadlinesPerCall(t *testing.T) {
	type step struct {
		method string        // "silent" (never answered) or "echo"
		after  time.Duration // deadline from the call's start; 0: none (RequestTimeout)
	}
	const reqTimeout = 300 * time.Millisecond
	cases := []struct {
		name  string
		steps []step // registered in this order, each once the previous is pending
	}{
		{"a later call due earlier moves the timer", []step{{"silent", 900 * time.Millisecond}, {"silent", 200 * time.Millisecond}}},
		{"an answered call leaves the others' deadlines", []step{{"silent", 400 * time.Millisecond}, {"echo", 100 * time.Millisecond}, {"silent", 700 * time.Millisecond}}},
		{"no deadline: the request timeout", []step{{"silent", 0}, {"silent", 600 * time.Millisecond}}},
		{"equal deadlines fail together", []step{{"silent", 250 * time.Millisecond}, {"silent", 250 * time.Millisecond}}},
	}
	f := newFakeUpstream(t, false)
	m := startMux(t, f, func(c *MuxConfig) { c.Conns = 1; c.RequestTimeout = reqTimeout })
	s := m.slots[0]
	pending := func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.pending)
	}
	type result struct {
		i       int
		err     error
		elapsed time.Duration
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan result, len(tc.steps))
			silent := 0
			for i, st := range tc.steps {
				start := time.Now()
				var dl time.Time
				if st.after > 0 {
					dl = start.Add(st.after)
				}
				body := `{"jsonrpc":"2.0","id":1,"method":"` + st.method + `","params":[]}`
				go func() {
					_, err := callBody(m, body, dl)
					done <- result{i, err, time.Since(start)}
				}()
				if st.method == "silent" {
					silent++
					waitFor(t, "the call pending", func() bool { return pending() == silent })
				}
			}
			for range tc.steps {
				r := <-done
				st := tc.steps[r.i]
				want := st.after
				if want == 0 {
					want = reqTimeout
				}
				switch {
				case st.method == "echo":
					if r.err != nil {
						t.Errorf("call %d (answered): %v", r.i, r.err)
					}
				case r.err != proto.ErrTimeout:
					t.Errorf("call %d: err %v, want ErrTimeout", r.i, r.err)
				case r.elapsed < want:
					t.Errorf("call %d timed out after %v, before its deadline %v", r.i, r.elapsed, want)
				case r.elapsed > want+10*time.Second:
					t.Errorf("call %d timed out after %v, deadline %v", r.i, r.elapsed, want)
				}
			}
			if n := pending(); n != 0 {
				t.Fatalf("%d calls left pending", n)
			}
			s.mu.Lock()
			armed := s.armed
			s.mu.Unlock()
			if armed != 0 {
				t.Fatalf("timer still armed with nothing pending")
			}
		})
	}
	mustCall(t, m, `{"jsonrpc":"2.0","id":2,"method":"echo","params":[]}`)
}
