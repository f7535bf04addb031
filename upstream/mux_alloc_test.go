//go:build !race

// The race detector makes sync.Pool drop items on purpose, so allocation counts only
// mean something without it.

package upstream

import (
	"testing"
	"time"
)

// The Mux round trip allocates nothing: pooled calls, reused buffers, frames written
// and read by mux_wire.go without per-message allocations.
func TestMuxCallAllocatesNothing(t *testing.T) {
	u := newRawUpstream(t)
	m := startMux(t, &fakeUpstream{url: u.url}, func(c *MuxConfig) { c.Conns = 1 })
	var buf []byte
	do := func() {
		var err error
		if buf, err = m.Call(buf, benchReq, benchID, time.Now().Add(30*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 100; i++ { // warm the pools and the metric series
		do()
	}
	allocs := testing.AllocsPerRun(2000, do)
	t.Logf("allocs per Mux.Call round trip: %.2f", allocs)
	if allocs > 0.1 {
		t.Fatalf("Mux.Call allocates %.2f times per round trip, want 0", allocs)
	}
	if got := string(buf); got != `{"jsonrpc":"2.0","id":42,"result":"0x1"}` {
		t.Fatalf("answer %s", got)
	}
}
