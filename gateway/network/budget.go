package network

import "sync/atomic"

// Budget counts a resource (bytes, subscriptions) against a limit. Acquire never
// blocks: over the limit it refuses, and the caller answers with an error.
type Budget struct {
	used atomic.Int64
	max  int64
}

// NewBudget is a budget of max.
func NewBudget(max int) *Budget { return &Budget{max: int64(max)} }

// Acquire takes n, or reports false (over the limit: nothing taken).
func (b *Budget) Acquire(n int) bool {
	if b.used.Add(int64(n)) > b.max {
		b.used.Add(-int64(n))
		return false
	}
	return true
}

// Release gives n back.
func (b *Budget) Release(n int) { b.used.Add(-int64(n)) }

// InUse is what is taken now.
func (b *Budget) InUse() int64 { return b.used.Load() }
