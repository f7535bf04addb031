// Package cpuhog saturates a test process's cores, the way a gateway pod at load average
// 14 on 2 cores is, for tests of what must still hold then (the limiter's leases).
package cpuhog

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// Start runs 4×GOMAXPROCS goroutines spinning without a call or a yield (preempted only
// by the runtime) until the test ends, so every other goroutine of the process waits
// behind them for a P. The hog stays in this process (no spinning child processes), so
// the packages `go test ./...` runs beside the test keep their share of the machine.
func Start(t testing.TB) {
	t.Helper()
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 4 * runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			x := uint64(1)
			for !stop.Load() {
				for i := 0; i < 1<<16; i++ {
					x = x*6364136223846793005 + 1442695040888963407
				}
			}
			_ = x
		}()
	}
	t.Cleanup(func() {
		stop.Store(true)
		wg.Wait()
	})
}
