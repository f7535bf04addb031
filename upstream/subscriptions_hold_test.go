package upstream

import (
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
)

// What a logs group holds during a renewal is bounded in bytes: a push past the bound
// is dropped and counted (the backfill delivers the blocks it reaches), the rest are
// delivered in the order they came, those the backfill delivered already skipped.
func TestHeldLogsBounded(t *testing.T) {
	for _, tc := range []struct {
		name      string
		size      int      // bytes of data per log
		blocks    []uint64 // pushes held, in order
		backfill  []uint64 // delivered by the backfill before the held ones
		delivered []uint64
		drops     uint64
	}{
		{name: "within the bound", size: maxHeldBytes / 4, blocks: []uint64{19, 20, 21}, delivered: []uint64{19, 20, 21}},
		{name: "past the bound", size: maxHeldBytes * 3 / 8, blocks: []uint64{19, 20, 21}, delivered: []uint64{19, 20}, drops: 1},
		{name: "the backfill's skipped", blocks: []uint64{18, 19}, backfill: []uint64{18}, delivered: []uint64{19}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := testRouter(t, Spec{Name: "a", HTTPURL: "http://127.0.0.1:1"})
			sink := newChanSink(8)
			g := &subGroup{s: r.subs, kind: kindLogs, gwQuoted: []byte(`"0x1"`), holders: holders{members: map[Sink]int{sink: 1}}}
			for _, n := range tc.backfill {
				g.seenLogs.add(logKey([]byte(bigLog(n, 0))))
			}
			g.holds.Store(1)
			for _, n := range tc.blocks {
				g.keep(delivery{result: []byte(bigLog(n, tc.size))})
			}
			if g.heldSize > maxHeldBytes {
				t.Fatalf("%d bytes held, bound %d", g.heldSize, maxHeldBytes)
			}
			g.renewalEnded() // a renewal still holds it: nothing delivered
			if len(sink.ch) != 0 {
				t.Fatal("held pushes delivered while a renewal still held the group")
			}
			g.holds.Store(0)
			g.renewalEnded()
			var got []uint64
			for len(sink.ch) > 0 {
				res := NotificationResult(<-sink.ch)
				n, _ := proto.ParseQuantity(proto.FirstMember(res, "blockNumber").Bytes(res))
				got = append(got, n)
			}
			if !slicesEqual(got, tc.delivered) {
				t.Fatalf("delivered the logs of blocks %v, want %v", got, tc.delivered)
			}
			if n := r.m.subDrops.Get(); n != tc.drops {
				t.Fatalf("%d pushes dropped, want %d", n, tc.drops)
			}
			if g.held != nil || g.heldSize != 0 {
				t.Fatalf("%d pushes (%d bytes) still held", len(g.held), g.heldSize)
			}
		})
	}
}

// A renewal's hold ends (renewed, on followHead's goroutine) before the group's
// goroutine runs its backfill (renewalEnded): a push the group takes in between waits
// for the backfill. Before, it was delivered at once: the log of block 19 went out
// before those of 14-18, and moved the group's coverage past them, so the backfill
// queried from block 19 and they were never delivered.
func TestPushBetweenHoldEndAndBackfillWaits(t *testing.T) {
	c := newSilentChain(t, 19)
	r := testRouterWith(t, func(cfg *RouterConfig) { cfg.Mux.RequestTimeout = 10 * time.Second }, Spec{Name: "a", HTTPURL: c.httpURL})
	r.Start()
	t.Cleanup(r.Close)
	u := byName(r, "a")
	waitFor(t, "the head at 19", func() bool { return u.health.Head() == 19 })
	sink := newChanSink(16)
	g := &subGroup{s: r.subs, kind: kindLogs, params: logsParams, gwQuoted: []byte(`"0x1"`),
		holders: holders{members: map[Sink]int{sink: 1}}, renewReq: make(chan struct{}, 1), up: u}
	for n := uint64(11); n <= 13; n++ {
		g.handle([]byte(blockLog(n)))
	}
	g.holds.Store(1) // hold: a renewal under way
	r.subs.renewed([]*subGroup{g}, 13)
	g.pushed(delivery{result: []byte(blockLog(19))}) // taken before the renewReq
	<-g.renewReq
	g.renewalEnded()
	var got []uint64
	for len(sink.ch) > 0 {
		res := NotificationResult(<-sink.ch)
		n, _ := proto.ParseQuantity(proto.FirstMember(res, "blockNumber").Bytes(res))
		got = append(got, n)
	}
	if want := []uint64{11, 12, 13, 14, 15, 16, 17, 18, 19}; !slicesEqual(got, want) {
		t.Fatalf("delivered the logs of blocks %v, want %v", got, want)
	}
}
