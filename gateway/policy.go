package gateway

import (
	"strings"
	"sync/atomic"

	"github.com/infura-gateway/infura-gateway/proto"
)

// policy is the pipeline stage that decides, on the decoded request, whether the
// gateway forwards it at all.
type policy struct {
	deny denyList
}

// admit returns the error that answers r instead of the upstream, or nil.
func (p *policy) admit(r *proto.Request) *proto.Error {
	if p.deny.denied(r.Name) {
		return proto.ErrMethodNotFound
	}
	return nil
}

// denyList answers methods by exact name or by prefix (entries ending in '_' or '*').
// Names are compared after decoding: "admin\u005fnodeInfo" is admin_nodeInfo.
type denyList struct {
	exact    map[string]struct{}
	prefixes []string
}

func newDenyList(entries []string) denyList {
	d := denyList{exact: map[string]struct{}{}}
	for _, e := range entries {
		if strings.HasSuffix(e, "_") || strings.HasSuffix(e, "*") {
			d.prefixes = append(d.prefixes, strings.TrimSuffix(e, "*"))
		} else {
			d.exact[e] = struct{}{}
		}
	}
	return d
}

func (d denyList) denied(method []byte) bool {
	for _, p := range d.prefixes {
		if len(method) >= len(p) && string(method[:len(p)]) == p {
			return true
		}
	}
	_, ok := d.exact[string(method)]
	return ok
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
