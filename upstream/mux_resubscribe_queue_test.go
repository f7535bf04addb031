package upstream

import (
	"fmt"
	"testing"
	"time"
)

// A resubscribe that finds the socket's queue full is sent again with the reconnect
// backoff, as one the upstream refuses: every subscription comes back after a reconnect
// however many there are. Before, resubscribeLocked logged "cannot resubscribe" and left
// the group without an upstream subscription for as long as the socket lived (the
// audit: 5,000 distinct logs subscriptions through one gateway, geth restarted: 4,095
// came back, the queue's 4,096 frames less the newHeads; 905 stayed silent, their
// clients told nothing).
func TestMuxResubscribesPastAFullQueue(t *testing.T) {
	cases := []struct {
		name      string
		queue     int
		groups    int
		backoffMx time.Duration
	}{
		{"twenty groups through a queue of one", 1, 20, 50 * time.Millisecond},
		{"a hundred through a queue of four", 4, 100, 50 * time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeUpstream(t, false)
			m := startMux(t, f, func(c *MuxConfig) {
				c.Conns, c.QueueSize = 1, tc.queue
				c.BackoffMax = tc.backoffMx
			})
			sinks := make([]*chanSink, tc.groups)
			for i := range sinks {
				sinks[i] = newChanSink(4)
				params := fmt.Sprintf(`["logs",{"address":"0x%040x"}]`, i+1)
				m.Join([]byte(params), []byte(`1`), sinks[i], time.Now().Add(time.Minute))
				sinks[i].next(t) // its answer
			}
			if n := m.metrics.upstreamSubs.Load(); n != int64(tc.groups) {
				t.Fatalf("%d upstream subscriptions, want %d", n, tc.groups)
			}
			f.dropAll()
			waitFor(t, "every subscription back upstream", func() bool {
				return m.metrics.upstreamSubs.Load() == int64(tc.groups)
			})
		})
	}
}
