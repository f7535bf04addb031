package testnode

import (
	"testing"
	"time"
)

// A nudge seals a block on a node that mines only on transactions, without a
// transaction, once its wait is due; on a node with a block period it does nothing.
func TestNudgeSealsABlock(t *testing.T) {
	for _, tc := range []struct {
		name   string
		period int
	}{{"on demand", 0}, {"every second", 1}} {
		t.Run(tc.name, func(t *testing.T) {
			n := Start(t, Period(tc.period))
			var w nudger
			n.nudge(&w) // the wait begins: not due yet
			if w.n != 0 {
				t.Fatalf("nudged %d times at the wait's start", w.n)
			}
			if tc.period != 0 {
				w.next = time.Now().Add(-time.Second)
				n.nudge(&w)
				if w.n != 0 {
					t.Fatalf("a node with a block period nudged")
				}
				return
			}
			before := n.BlockNumber(t)
			w.next = time.Now().Add(-time.Second) // due
			n.nudge(&w)
			if w.n != 1 {
				t.Fatalf("%d nudges, want 1", w.n)
			}
			deadline := time.Now().Add(StartTimeout)
			for n.BlockNumber(t) == before {
				if time.Now().After(deadline) {
					t.Fatalf("no block sealed after a nudge at block %d", before)
				}
				time.Sleep(20 * time.Millisecond) // waiting on the node's block production
			}
		})
	}
}
