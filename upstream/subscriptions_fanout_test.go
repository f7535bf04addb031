package upstream

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// writerSink starts a goroutine per notification, as a websocket client starts its
// writer when its queue was empty, and counts how many exist at once.
type writerSink struct {
	live, peak *atomic.Int64
	wg         *sync.WaitGroup
}

func (w writerSink) Reply([]byte) {}

func (w writerSink) Notify([]byte) {
	n := w.live.Add(1)
	for p := w.peak.Load(); n > p && !w.peak.CompareAndSwap(p, n); p = w.peak.Load() {
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		w.live.Add(-1)
	}()
}

// A fan-out to many subscribers lets the writers it starts run before it starts more:
// one head for 10,000 subscribers must not hold 10,000 goroutine stacks at once (the
// process keeps that peak as RSS). One P makes the count exact: without yields the loop
// runs to its end before any writer does.
func TestFanOutPacesWriters(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	for _, tc := range []struct {
		members int
		maxPeak int64
	}{
		{members: 100, maxPeak: 1000},
		{members: 5000, maxPeak: 1000},
	} {
		var live, peak atomic.Int64
		var wg sync.WaitGroup
		g := &subGroup{s: &Subscriptions{}, kind: kindOther, gwQuoted: []byte(`"0x1"`), holders: holders{members: map[Sink]int{}}}
		for range tc.members {
			g.members[&writerSink{live: &live, peak: &peak, wg: &wg}] = 1
		}
		g.fanOut([]byte(`{"number":"0x1"}`))
		wg.Wait()
		if peak.Load() > tc.maxPeak {
			t.Errorf("%d members: %d writer goroutines at once, want ≤ %d", tc.members, peak.Load(), tc.maxPeak)
		}
	}
}
