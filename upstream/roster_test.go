package upstream

import "testing"

type nopSink struct{ name string }

func (*nopSink) Reply([]byte)  {}
func (*nopSink) Notify([]byte) {}

// The roster keeps a sink indexed under a group for as long as it holds it in any way
// (member or waiter), so LeaveAll always finds what a departing client held.
func TestRosterKeepsWhatASinkHolds(t *testing.T) {
	type step struct {
		op   string // join, wait, confirm, refuse, leave
		sink int
	}
	for _, tc := range []struct {
		name    string
		steps   []step
		indexed []bool // per sink, after the steps: still indexed under the group
		members int64
	}{
		{"member leaves", []step{{"join", 0}, {"leave", 0}}, []bool{false}, 0},
		{"member twice leaves once", []step{{"join", 0}, {"join", 0}, {"leave", 0}}, []bool{true}, 1},
		{"member waits again, leaves the membership", []step{{"join", 0}, {"wait", 0}, {"leave", 0}}, []bool{true}, 0},
		{"waiter refused", []step{{"wait", 0}, {"refuse", -1}}, []bool{false}, 0},
		{"member's second wait refused", []step{{"join", 0}, {"wait", 0}, {"refuse", -1}}, []bool{true}, 1},
		{"waiters confirmed", []step{{"wait", 0}, {"wait", 1}, {"confirm", -1}}, []bool{true, true}, 2},
		{"leave without holding", []step{{"wait", 0}, {"leave", 1}}, []bool{true, false}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r roster[*group]
			g := &group{holders: holders{members: map[Sink]int{}}}
			sinks := []*nopSink{{"a"}, {"b"}}
			for _, s := range tc.steps {
				switch s.op {
				case "join":
					r.join(g, sinks[s.sink])
				case "wait":
					r.wait(g, sinks[s.sink], []byte("1"))
				case "confirm":
					r.confirm(g)
				case "refuse":
					r.refuse(g)
				case "leave":
					r.leave(g, sinks[s.sink])
				}
			}
			for i, want := range tc.indexed {
				if got := len(r.bySink[sinks[i]]) == 1; got != want {
					t.Errorf("sink %d indexed: %v, want %v", i, got, want)
				}
			}
			if r.n != tc.members {
				t.Errorf("memberships %d, want %d", r.n, tc.members)
			}
			// A departing client takes everything with it.
			for _, s := range sinks {
				r.leaveAll(s, func(*group) {})
			}
			if r.n != 0 || len(r.bySink) != 0 || len(g.members) != 0 || len(g.waiters) != 0 {
				t.Errorf("after leaveAll: n %d, index %v, members %v, waiters %v", r.n, r.bySink, g.members, g.waiters)
			}
		})
	}
}
