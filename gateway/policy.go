package gateway

import (
	"sync/atomic"

	"github.com/infura-gateway/infura-gateway/proto"
)

// policy is the pipeline stage that decides, on the decoded request, whether the
// gateway forwards it at all.
type policy struct {
	deny proto.MethodSet
}

// admit returns the error that answers r instead of the upstream, or nil.
func (p *policy) admit(r *proto.Request) *proto.Error {
	// r.Name is decoded: "admin\u005fnodeInfo" is admin_nodeInfo; so is an
	// eth_subscribe's kind, which a family may deny.
	if p.deny.Names(r) {
		return proto.ErrMethodNotFound
	}
	return nil
}

// budget counts a resource (bytes, subscriptions) against a limit. acquire never
// blocks: over the limit it refuses, and the caller answers with an error.
type budget struct {
	used atomic.Int64
	max  int64
}

func newBudget(max int) *budget { return &budget{max: int64(max)} }

func (b *budget) acquire(n int) bool {
	if b.used.Add(int64(n)) > b.max {
		b.used.Add(-int64(n))
		return false
	}
	return true
}

func (b *budget) release(n int) { b.used.Add(-int64(n)) }

func (b *budget) inUse() int64 { return b.used.Load() }
