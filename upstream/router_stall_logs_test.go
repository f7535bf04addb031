package upstream

import (
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
)

// After a renewal, the renewed logs subscription can push logs of later blocks before
// the group's backfill (eth_getLogs from the last pushed head) is queried: they are
// held, and the client gets the missed logs first, then the later ones, each once, in
// block order. Before, the later log went out first and moved the group's coverage
// past the missed blocks, whose logs the backfill then skipped: blocks 11, 12, 13, 19,
// and 14-18 never.
func TestSilentLogsBackfilledBeforeLaterLogs(t *testing.T) {
	for _, tc := range []struct {
		name  string
		later int // blocks made, their logs pushed, once the renewal is answered
	}{
		{name: "a later log", later: 1},
		{name: "logs of three later blocks", later: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, r, u, sink := subscribedOnSilentChain(t, logsParams)
			// A Mux subscriber sharing the group's upstream subscription: a log it got
			// was handed to the group's queue in the same notify.
			seen := make(chan uint64, 64)
			unsub, err := u.mux.Subscribe(logsParams, func(res []byte) {
				n, _ := proto.ParseQuantity(proto.FirstMember(res, "blockNumber").Bytes(res))
				select {
				case seen <- n:
				default:
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			defer unsub()

			c.mine(3, true) // 11, 12, 13
			last := 18 + uint64(tc.later)
			var fired atomic.Bool
			// The head read once the renewal is answered, before the backfill's query:
			// the later blocks are made and pushed on the renewed subscription, and the
			// read is answered once their logs are in the group's queue. The read's own
			// deadline (two head polls) may end first, and the hold may end before the
			// group takes them: the order must not depend on when (the group holds
			// them until the backfill ran, TestPushBetweenHoldEndAndBackfillWaits).
			hook := func() {
				if u.metrics.silentSubs.Get() != 1 || !fired.CompareAndSwap(false, true) {
					return
				}
				for n := c.head.Load() + 1; n <= last; n++ {
					c.head.Store(n)
					for _, sub := range c.live(newHeadsParams) {
						c.ws.notify(sub, string(header(n)))
					}
					for _, sub := range c.live(logsParams) {
						c.ws.notify(sub, blockLog(n))
					}
				}
				timeout := time.After(10 * time.Second) // a bound, not a wait: a log lost fails below
				for got := uint64(0); got < last; {
					select {
					case got = <-seen:
					case <-timeout:
						return
					}
				}
			}
			c.onLatest.Store(&hook)
			c.silence()
			c.jump(5) // 14..18: their logs pushed to nobody
			var want, got []uint64
			for n := uint64(11); n <= last; n++ {
				want = append(want, n)
			}
			for len(got) < len(want) {
				var frame []byte
				select {
				case frame = <-sink.ch:
				case <-time.After(20 * time.Second):
					t.Fatalf("the client got the logs of blocks %v, then nothing for 20s: want %v", got, want)
				}
				res := NotificationResult(frame)
				n, _ := proto.ParseQuantity(proto.FirstMember(res, "blockNumber").Bytes(res))
				got = append(got, n)
			}
			if !slicesEqual(got, want) {
				t.Fatalf("the client got the logs of blocks %v, want %v", got, want)
			}
			if !fired.Load() {
				t.Fatal("no later log was pushed before the backfill")
			}
			if n := r.m.subDrops.Get(); n != 0 {
				t.Fatalf("%d pushes dropped", n)
			}
			select {
			case extra := <-sink.ch:
				t.Fatalf("a notification after the last log: %s", extra)
			default:
			}
		})
	}
}

// bigLog is the one log of block n with size bytes of data.
func bigLog(n uint64, size int) string {
	h := strconv.FormatUint(n, 16)
	return `{"blockNumber":"0x` + h + `","blockHash":"0x` + h + `","logIndex":"0x0","data":"0x` + strings.Repeat("00", size/2) + `"}`
}
