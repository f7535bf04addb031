package upstream

import (
	"testing"
)

// headOptsParams is a newHeads subscription with options: an upstream subscription of
// its own, not the router's ["newHeads"].
var headOptsParams = []byte(`["newHeads",{"includeTransactions":false}]`)

// A provider drops only a client's newHeads-with-options subscription (or the one on
// a socket other than the router's): the router's own keeps pushing, so its silence
// check never fires. The group finds it from its own pushes against the upstream's
// head: two blocks past the last push, or one past it on two checks in a row with no
// push between. Then the upstream's subscriptions are renewed once, and the client
// gets every head once and in order, the missed ones fetched. One that keeps pushing
// is never renewed. Before, the client got nothing more, with no error, while the
// gateway's head moved on.
func TestSilentHeadsWithOptionsRenewed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		silent bool
		mined  uint64 // blocks made (pushed to the router's subscription) after the silence
	}{
		{name: "two blocks past its last push", silent: true, mined: 2},
		{name: "one block past it on two checks", silent: true, mined: 1},
		{name: "still pushing", silent: false, mined: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, r, u, sink := subscribedOnSilentChain(t, headOptsParams)
			if n := len(c.live(nil)); n != 2 {
				t.Fatalf("%d upstream subscriptions, want the router's and the client's", n)
			}
			c.mine(3, true) // 11, 12, 13
			if got, want := headNumbers(t, sink, 3), []uint64{11, 12, 13}; !slicesEqual(got, want) {
				t.Fatalf("the client got heads %v, want %v", got, want)
			}
			if tc.silent {
				c.silenceOf(headOptsParams)
			}
			c.mine(tc.mined, true)
			head := 13 + tc.mined
			waitFor(t, "the served head moved", func() bool { return r.ServedHead() == head })
			if tc.silent {
				waitFor(t, "the silent subscription renewed, and the router's with it", func() bool {
					return u.metrics.silentSubs.Get() == 1 && u.mux.live(headOptsParams) && len(c.live(headOptsParams)) == 1 &&
						u.mux.live(newHeadsParams) && len(c.live(newHeadsParams)) == 1
				})
			} else {
				// The chain stands: its silence checks find nothing (each a stall period
				// apart, as the router's own, which reads the head over HTTP meanwhile).
				reads := c.latest.Load()
				waitFor(t, "three stall periods", func() bool { return c.latest.Load() >= reads+3 })
			}
			c.mine(1, true) // pushed on the (new) subscription
			want := make([]uint64, 0, tc.mined+1)
			for n := uint64(14); n <= head+1; n++ {
				want = append(want, n)
			}
			if got := headNumbers(t, sink, len(want)); !slicesEqual(got, want) {
				t.Fatalf("the client got heads %v, want %v", got, want)
			}
			wantRenewals := uint64(0)
			if tc.silent {
				wantRenewals = 1
			}
			if n := u.metrics.silentSubs.Get(); n != wantRenewals {
				t.Fatalf("gateway_upstream_ws_silent_subscriptions_total = %d, want %d", n, wantRenewals)
			}
			select {
			case extra := <-sink.ch:
				t.Fatalf("a notification after the last head: %s", extra)
			default:
			}
		})
	}
}
