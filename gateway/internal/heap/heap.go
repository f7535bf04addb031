// Package heap measures what a test's process really holds on the heap.
package heap

import "runtime"

// AfterGC returns the live heap: what the process holds once two collections ran.
func AfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
