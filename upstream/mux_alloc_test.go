//go:build !race

// The race detector makes sync.Pool drop items on purpose, so allocation counts only
// mean something without it.

package upstream

import (
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// The Mux round trip allocates nothing: pooled calls, reused buffers, frames written
// and read by mux_wire.go without per-message allocations.
func TestMuxDoAllocations(t *testing.T) {
	u := newRawUpstream(t)
	m := startMux(t, &fakeUpstream{url: u.url}, func(c *MuxConfig) { c.Conns = 1 })
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	body := []byte(benchReq)
	do := func() {
		if err := m.Do(MethodNamed("eth_blockNumber"), body, resp, time.Now().Add(30*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 100; i++ { // warm the pools and the metric series
		do()
	}
	allocs := testing.AllocsPerRun(2000, do)
	t.Logf("allocs per Mux.Do round trip: %.2f", allocs)
	if allocs > 0.1 {
		t.Fatalf("Mux.Do allocates %.2f times per round trip, want 0", allocs)
	}
	if got := string(resp.Body()); got != `{"jsonrpc":"2.0","id":42,"result":"0x1"}` {
		t.Fatalf("answer %s", got)
	}
}
