package gateway

import (
	"bytes"
	"context"
	"errors"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/cache"
	"github.com/infura-gateway/infura-gateway/gateway/sharedcache"
	"github.com/infura-gateway/infura-gateway/proto"
)

// prepare classifies c and builds its key; it reports whether c is cacheable at all.
func (s *Server) cachePrepare(cl *call) bool {
	cl.pol, cl.block = cache.Classify(&cl.req)
	cl.cached = cacheMiss // for X-Cache: every call through an enabled cache is a hit or a miss
	if cl.pol == cache.NoCache {
		return false
	}
	// Params are canonical (compact): whitespace variants share one key.
	cl.key = append(append(cl.key[:0], byte(cl.req.Method)), cl.req.Params...)
	cl.epoch = s.heads.Epoch()
	return true
}

// hit answers cl from the cache when it can.
func (s *Server) cacheHit(cl *call) bool {
	if cl.pol == cache.CoalesceOnly {
		return false
	}
	body := s.cache.Lookup(cl.key, cl.pol, cl.epoch, time.Now())
	if body == nil {
		return false
	}
	s.cache.Hits.Inc()
	cl.cached = cacheHit
	cl.setStored(body)
	return true
}

// storeElement keeps the answer (id 1) of a batch element that missed, and offers it
// to the shared tier when no reorg can replace it.
func (s *Server) cacheStoreElement(cl *call, ans []byte) {
	s.cache.Misses.Inc()
	if cl.pol != cache.CoalesceOnly {
		s.cache.Store(cl.key, cl.req.Method, cl.pol, cl.block, cl.epoch, bytes.Clone(ans))
	}
	if s.shared != nil && s.cache.Sharable(cl.req.Method, cl.pol, cl.block) && s.cache.Immutable(cl.pol, ans) {
		s.shared.SetFor(s.cacheBudget(cl), cache.SharedKey(cl.key), ans)
	}
}

// lookupShared answers the batch elements in b.shared from the shared tier, in one
// round trip; those it lacks join the upstream batch. Unlike single calls they are not
// coalesced across replicas: a batch does not wait on another replica's fetch.
//
// Lookups go in chunks, and stop once the values found fill the batch's answer budget
// (-max-response-body): the elements left are refused as the answer assembly would
// refuse them, so a batch of large entries never holds more than a chunk over it.
func (s *Server) cacheLookupShared(b *batch) {
	const chunk = 16
	ctx, cancel := context.WithDeadline(context.Background(), b.calls[b.shared[0]].deadline)
	defer cancel()
	keys := make([]string, 0, chunk)
	found := 0
	for from := 0; from < len(b.shared); from += chunk {
		idx := b.shared[from:min(from+chunk, len(b.shared))]
		if found > s.cfg.MaxResponseBody {
			for _, i := range idx {
				b.calls[i].setError(proto.ErrBatchAnswerTooLarge)
			}
			continue
		}
		keys = keys[:0]
		for _, i := range idx {
			keys = append(keys, cache.SharedKey(b.calls[i].key))
		}
		vals := s.shared.GetMulti(ctx, keys)
		for k, i := range idx {
			cl := b.calls[i]
			// From Redis: served only if it is what the gateway would have stored itself.
			if v := vals[k]; v != nil && s.cache.Immutable(cl.pol, v) {
				found += len(v)
				s.cache.Misses.Inc()
				s.cache.SharedHits.Inc()
				// v is read-only and owned by nobody else, as stored answers are: kept as is.
				s.cache.Store(cl.key, cl.req.Method, cl.pol, cl.block, cl.epoch, v)
				cl.cached = cacheHit
				cl.setStored(v)
				continue
			}
			b.fwd = append(b.fwd, i)
			b.ub.Add(&cl.req, restID)
		}
	}
}

// serve answers cl through the cache: a stored answer, the answer of an identical call
// already in flight, or its own upstream call whose answer it then stores.
func (s *Server) cacheServe(cl *call) *proto.Error {
	if !s.cachePrepare(cl) {
		return s.forward(cl, cl.id)
	}
	if s.cacheHit(cl) {
		return nil
	}
	keyLen := len(cl.key)
	// Callers in different head epochs never share a flight: a call made after a new
	// head must not get an answer fetched before it.
	e := cl.epoch
	cl.key = append(cl.key, byte(e), byte(e>>8), byte(e>>16), byte(e>>24), byte(e>>32))
	f, leader := s.cache.Join(cl.key)
	if !leader {
		s.cache.Coalesced.Inc()
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
	s.cache.Misses.Inc()
	if s.shared != nil && s.cache.Sharable(cl.req.Method, cl.pol, cl.block) {
		f.Err = s.cacheFetchShared(cl, keyLen)
	} else {
		f.Err = s.forward(cl, restID)
	}
	if f.Err == nil {
		f.Body = bytes.Clone(cl.ans)
		// Store before ending the flight: a caller arriving in between would otherwise
		// find neither the flight nor the answer, and call the upstream again.
		if cl.pol != cache.CoalesceOnly {
			s.cache.Store(cl.key[:keyLen], cl.req.Method, cl.pol, cl.block, cl.epoch, f.Body)
		}
	}
	s.cache.Finish(cl.key, f)
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
func (s *Server) cacheBudget(cl *call) *sharedcache.Budget {
	if cl.who != nil {
		return cl.who.SharedBudget()
	}
	return s.cache.Unattributed()
}

// errNotShared marks an upstream answer that is good for this caller but not for the
// shared tier (null, an error, a transaction not yet deep); the answer is in cl.ans.
var errNotShared = errors.New("answer not immutable")

// fetchShared sets cl.ans (id 1) from the shared tier or, through it, the upstream.
func (s *Server) cacheFetchShared(cl *call, keyLen int) *proto.Error {
	key := cache.SharedKey(cl.key[:keyLen])
	ctx, cancel := context.WithDeadline(context.Background(), cl.deadline)
	defer cancel()
	var perr *proto.Error
	body, src, err := s.shared.GetOrFetchFor(ctx, s.cacheBudget(cl), key, func(context.Context) ([]byte, error) {
		if perr = s.forward(cl, restID); perr != nil {
			return nil, perr
		}
		if !s.cache.Immutable(cl.pol, cl.ans) {
			return nil, errNotShared
		}
		return cl.ans, nil
	})
	switch {
	case perr != nil:
		return perr
	case errors.Is(err, errNotShared):
		return nil // cl.ans is the upstream's answer
	case err != nil: // the deadline passed while waiting on another replica
		return proto.ErrTimeout
	case src == sharedcache.SourceFetched:
		return nil // cl.ans is body
	}
	// From Redis: served only if it is what the gateway would have stored itself.
	if !s.cache.Immutable(cl.pol, body) {
		return s.forward(cl, restID)
	}
	s.cache.SharedHits.Inc()
	cl.own = append(cl.own[:0], body...)
	cl.ans = cl.own
	return nil
}
