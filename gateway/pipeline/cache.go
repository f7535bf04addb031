package pipeline

import (
	"bytes"
	"context"
	"errors"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/cache"
	"github.com/infura-gateway/infura-gateway/gateway/network"
	"github.com/infura-gateway/infura-gateway/gateway/sharedcache"
	"github.com/infura-gateway/infura-gateway/proto"
)

// prepare classifies c and builds its key; it reports whether c is cacheable at all.
func (p *Pipeline) cachePrepare(n *network.Network, cl *Call) bool {
	cl.pol, cl.block = cache.Classify(&cl.Req)
	cl.Cached = CacheMiss // for X-Cache: every call through an enabled cache is a hit or a miss
	if cl.pol == cache.NoCache {
		return false
	}
	// Params are canonical (compact): whitespace variants share one key.
	cl.key = append(append(cl.key[:0], byte(cl.Req.Method)), cl.Req.Params...)
	cl.epoch = n.Heads.Epoch()
	return true
}

// hit answers cl from the cache when it can.
func (p *Pipeline) cacheHit(n *network.Network, cl *Call) bool {
	if cl.pol == cache.CoalesceOnly {
		return false
	}
	now := cl.start // the request's time, read when it came
	if now.IsZero() {
		now = time.Now()
	}
	body := n.Cache.Lookup(cl.key, cl.pol, cl.epoch, now)
	if body == nil {
		return false
	}
	n.Cache.Hits.Inc()
	cl.Cached = CacheHit
	cl.setStored(body)
	return true
}

// storeElement keeps the answer (id 1) of a batch element that missed, and offers it
// to the shared tier when no reorg can replace it.
func (p *Pipeline) cacheStoreElement(n *network.Network, cl *Call, ans []byte) {
	n.Cache.Misses.Inc()
	if cl.pol != cache.CoalesceOnly {
		n.Cache.Store(cl.key, cl.Req.Method, cl.pol, cl.block, cl.epoch, bytes.Clone(ans))
	}
	if n.Shared != nil && n.Cache.Sharable(cl.Req.Method, cl.pol, cl.block) && n.Cache.Immutable(cl.pol, ans) && n.SharedOn() {
		n.Shared.SetFor(p.cacheBudget(n, cl), n.SharedKey(cl.key), ans)
	}
}

// lookupShared answers the batch elements in b.shared from the shared tier, in one
// round trip; those it lacks join the upstream batch. Unlike single calls they are not
// coalesced across replicas: a batch does not wait on another replica's fetch.
//
// Lookups go in chunks, and stop once the values found fill the batch's answer budget
// (-max-response-body): the elements left are refused as the answer assembly would
// refuse them, so a batch of large entries never holds more than a chunk over it.
func (p *Pipeline) cacheLookupShared(n *network.Network, b *batch) {
	const chunk = 16
	ctx, cancel := context.WithDeadline(context.Background(), b.calls[b.shared[0]].deadline)
	defer cancel()
	keys := make([]string, 0, chunk)
	found := 0
	for from := 0; from < len(b.shared); from += chunk {
		idx := b.shared[from:min(from+chunk, len(b.shared))]
		if found > p.maxResponseBody {
			for _, i := range idx {
				b.calls[i].setError(proto.ErrBatchAnswerTooLarge)
			}
			continue
		}
		keys = keys[:0]
		for _, i := range idx {
			keys = append(keys, n.SharedKey(b.calls[i].key))
		}
		vals := n.Shared.GetMulti(ctx, keys)
		for k, i := range idx {
			cl := b.calls[i]
			// From Redis: served only if it is what the gateway would have stored itself.
			if v := vals[k]; v != nil && n.Cache.Immutable(cl.pol, v) {
				found += len(v)
				n.Cache.Misses.Inc()
				n.Cache.SharedHits.Inc()
				// v is read-only and owned by nobody else, as stored answers are: kept as is.
				n.Cache.Store(cl.key, cl.Req.Method, cl.pol, cl.block, cl.epoch, v)
				cl.Cached = CacheHit
				cl.setStored(v)
				continue
			}
			b.fwd = append(b.fwd, i)
			b.ub.Add(&cl.Req, RestID)
		}
	}
}

// serve answers cl through the cache: a stored answer, the answer of an identical call
// already in flight, or its own upstream call whose answer it then stores.
func (p *Pipeline) cacheServe(n *network.Network, cl *Call) *proto.Error {
	if !p.cachePrepare(n, cl) {
		return forward(cl, cl.ID)
	}
	if p.cacheHit(n, cl) {
		return nil
	}
	keyLen := len(cl.key)
	// Callers in different head epochs never share a flight: a call made after a new
	// head must not get an answer fetched before it.
	e := cl.epoch
	cl.key = append(cl.key, byte(e), byte(e>>8), byte(e>>16), byte(e>>24), byte(e>>32))
	f, leader := n.Cache.Join(cl.key)
	if !leader {
		n.Cache.Coalesced.Inc()
		t := time.NewTimer(time.Until(cl.deadline))
		defer t.Stop()
		select {
		case <-f.Done():
		case <-t.C:
			return proto.ErrTimeout
		}
		if f.Err != nil {
			return f.Err
		}
		cl.setStored(f.Body)
		return nil
	}
	n.Cache.Misses.Inc()
	if n.Shared != nil && n.Cache.Sharable(cl.Req.Method, cl.pol, cl.block) && n.SharedOn() {
		f.Err = p.cacheFetchShared(n, cl, keyLen)
	} else {
		f.Err = forward(cl, RestID)
	}
	if f.Err == nil {
		f.Body = bytes.Clone(cl.Ans)
		// Store before ending the flight: a network.Caller arriving in between would otherwise
		// find neither the flight nor the answer, and call the upstream again.
		if cl.pol != cache.CoalesceOnly {
			n.Cache.Store(cl.key[:keyLen], cl.Req.Method, cl.pol, cl.block, cl.epoch, f.Body)
		}
	}
	n.Cache.Finish(cl.key, f)
	if f.Err != nil {
		return f.Err
	}
	cl.setStored(f.Body)
	return nil
}

// The shared tier (gateway/sharedcache, in Redis) sits behind the in-process store for
// what every replica can keep: answers by hash, deep blocks, transactions and receipts
// in deep blocks. A miss here asks Redis (bounded by its 50 ms deadline, skipped at once
// while Redis is down), and across replicas one fetches while the others wait for its
// answer briefly; what the upstream answers is stored in Redis only when immutable.

// budget is the shared tier's write budget cl's answer is charged to: its tenant's (a
// key, or an anonymous client address as its limits count it).
func (p *Pipeline) cacheBudget(n *network.Network, cl *Call) *sharedcache.Budget {
	if cl.Who != nil {
		return cl.Who.SharedBudget()
	}
	return n.Cache.Unattributed()
}

// errNotShared marks an upstream answer that is good for this network.Caller but not for the
// shared tier (null, an error, a transaction not yet deep); the answer is in cl.Ans.
var errNotShared = errors.New("answer not immutable")

// fetchShared sets cl.Ans (id 1) from the shared tier or, through it, the upstream.
func (p *Pipeline) cacheFetchShared(n *network.Network, cl *Call, keyLen int) *proto.Error {
	key := n.SharedKey(cl.key[:keyLen])
	ctx, cancel := context.WithDeadline(context.Background(), cl.deadline)
	defer cancel()
	var perr *proto.Error
	body, src, err := n.Shared.GetOrFetchFor(ctx, p.cacheBudget(n, cl), key, func(context.Context) ([]byte, error) {
		if perr = forward(cl, RestID); perr != nil {
			return nil, perr
		}
		if !n.Cache.Immutable(cl.pol, cl.Ans) {
			return nil, errNotShared
		}
		return cl.Ans, nil
	})
	switch {
	case perr != nil:
		return perr
	case errors.Is(err, errNotShared):
		return nil // cl.Ans is the upstream's answer
	case err != nil: // the deadline passed while waiting on another replica
		return proto.ErrTimeout
	case src == sharedcache.SourceFetched:
		return nil // cl.Ans is body
	}
	// From Redis: served only if it is what the gateway would have stored itself.
	if !n.Cache.Immutable(cl.pol, body) {
		return forward(cl, RestID)
	}
	n.Cache.SharedHits.Inc()
	cl.Own = append(cl.Own[:0], body...)
	cl.Ans = cl.Own
	return nil
}
