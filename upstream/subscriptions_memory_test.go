package upstream

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// A distinct subscription costs what it holds, not buffers allocated whole up front:
// each group's channel of 4,096 deliveries (128 KiB) and newHeads' ring of hashes
// (19 KiB, in logs groups too) took 150 KiB, so one client's 128 distinct logs
// subscriptions (-ws-max-subscriptions) held 19 MiB and the process's 100,000
// (-max-subscriptions) 15 GB. Bytes allocated do not depend on the machine's load;
// the bound is under a tenth of the old cost per group (now about 2.4 KiB).
func TestDistinctSubscriptionCostsNoQueueUpFront(t *testing.T) {
	r := testRouter(t, Spec{Name: "a", HTTPURL: "http://127.0.0.1:1"}) // no websocket: the groups wait
	t.Cleanup(r.subs.Close)
	const groups = 200
	sink := &nopSink{}
	deadline := time.Now().Add(time.Minute)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range groups {
		params := fmt.Appendf(nil, `["logs",{"address":"0x%040x"}]`, i)
		r.subs.Join(params, []byte("1"), sink, deadline)
	}
	runtime.ReadMemStats(&after)
	per := (after.TotalAlloc - before.TotalAlloc) / groups
	t.Logf("%d bytes allocated per distinct subscription", per)
	if per > 12<<10 {
		t.Errorf("a distinct subscription allocated %d bytes at Join, want under 12 KiB (a delivery queue is 128 KiB)", per)
	}
}
