package broadcast

import (
	"context"
	"encoding/hex"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/infura-gateway/infura-gateway/gateway/redisconn"
	"github.com/infura-gateway/infura-gateway/proto"
)

// The dedupe record of a transaction, by its hash, per network: claimed while its
// broadcast runs, then kept for the window once a target accepted it (and dropped
// when none did, so a resend is broadcast again). In the process, a table bounded in
// entries (oldest out first); with Redis, also a key per transaction shared by every
// replica (igw:broadcast:<network>:<hash>, "p" while claimed, "a" once accepted).
// Redis failing never stops a send: the broadcast goes ahead on the process's record.

type claimState uint8

const (
	claimNew   claimState = iota // nobody has sent it: this call broadcasts
	claimDone                    // accepted within the window: answer the hash
	claimRetry                   // a broadcast under way ended without an accept: claim again
)

const (
	redisPrefix = "igw:broadcast:"
	pollEvery   = 20 * time.Millisecond // a claim held by another replica is polled this often
)

var errStillSending = proto.NewError(proto.CodeServer, 504,
	"broadcast: this transaction's broadcast, started by an earlier send, is still under way; retry")

type record struct {
	accepted bool
	expires  time.Time
	seq      uint64
	done     chan struct{} // closed when the broadcast ends
	remote   bool          // this process claimed the Redis key too
}

type dedupe struct {
	network string
	redis   *redisconn.Conn
	log     *slog.Logger

	mu    sync.Mutex
	max   int
	seq   uint64
	m     map[[32]byte]*record
	order []orderEntry // insertion order, oldest first from head
	head  int
}

type orderEntry struct {
	h   [32]byte
	seq uint64
}

func newDedupe(network string, redis *redisconn.Conn, log *slog.Logger) *dedupe {
	return &dedupe{network: network, redis: redis, log: log, max: 100000, m: map[[32]byte]*record{}}
}

func (d *dedupe) resize(max int) {
	d.mu.Lock()
	d.max = max
	d.evict(time.Now())
	d.mu.Unlock()
}

// claim decides what a send of h does: broadcast (claimNew: the record is this call's
// to settle), answer the hash (claimDone), or claim again (claimRetry). It waits,
// until deadline, for a broadcast of h under way here or on another replica.
func (d *dedupe) claim(h [32]byte, window time.Duration, deadline time.Time) (claimState, *record, error) {
	now := time.Now()
	d.mu.Lock()
	r := d.m[h]
	if r != nil && !now.Before(r.expires) {
		delete(d.m, h)
		r = nil
	}
	if r != nil {
		accepted := r.accepted // settleRecord writes it under d.mu
		d.mu.Unlock()
		if accepted {
			return claimDone, nil, nil
		}
		st, err := d.wait(r, deadline)
		return st, nil, err
	}
	d.seq++
	r = &record{expires: now.Add(window), seq: d.seq, done: make(chan struct{})}
	d.m[h] = r
	d.order = append(d.order, orderEntry{h, r.seq})
	d.evict(now)
	d.mu.Unlock()
	if d.redis == nil {
		return claimNew, r, nil
	}
	st, shared, err := d.claimRemote(h, window, deadline)
	r.remote = shared
	switch {
	case err != nil:
		d.settleRecord(h, r, false, 0)
		return 0, nil, err
	case st == claimDone:
		d.settleRecord(h, r, true, window) // known here too from now on
	}
	return st, r, nil
}

// wait waits for r's broadcast to end.
func (d *dedupe) wait(r *record, deadline time.Time) (claimState, error) {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-r.done:
		if r.accepted {
			return claimDone, nil
		}
		return claimRetry, nil
	case <-t.C:
		return 0, errStillSending
	}
}

// claimRemote claims h's key in Redis, or learns it is done, or polls while another
// replica's broadcast holds it. Any Redis failure is claimNew: the send goes ahead.
// shared reports that this call holds the key (claimNew with Redis answering).
func (d *dedupe) claimRemote(h [32]byte, window time.Duration, deadline time.Time) (st claimState, shared bool, err error) {
	key := d.key(h)
	ctx := context.Background()
	// A claim outlives its broadcast by a little: a replica that dies mid-broadcast
	// holds the transaction no longer than that.
	hold := time.Until(deadline) + time.Second
	for {
		ok, err := d.redis.Do(ctx, d.redis.B().Set().Key(key).Value("p").Nx().PxMilliseconds(hold.Milliseconds()).Build()).ToString()
		switch {
		case err == nil && ok == "OK":
			return claimNew, true, nil
		case err != nil && !rueidis.IsRedisNil(err):
			d.log.Debug("broadcast: dedupe record not shared, Redis failed", "err", err)
			return claimNew, false, nil
		}
		v, err := d.redis.Do(ctx, d.redis.B().Get().Key(key).Build()).ToString()
		switch {
		case err == nil && v == "a":
			return claimDone, false, nil
		case err != nil && rueidis.IsRedisNil(err):
			continue // gone between the two: claim it
		case err != nil:
			return claimNew, false, nil
		}
		if !time.Now().Add(pollEvery).Before(deadline) {
			return 0, false, errStillSending
		}
		time.Sleep(pollEvery) // polling another replica's claim: Redis has no wait for a key
	}
}

// settle ends the broadcast of h, claimed as r: kept for the window when accepted,
// dropped otherwise; calls waiting on it go on.
func (d *dedupe) settle(h [32]byte, r *record, accepted bool, window time.Duration) {
	if r.remote && d.redis != nil {
		ctx := context.Background()
		var cmd rueidis.Completed
		if accepted {
			cmd = d.redis.B().Set().Key(d.key(h)).Value("a").PxMilliseconds(window.Milliseconds()).Build()
		} else {
			cmd = d.redis.B().Del().Key(d.key(h)).Build()
		}
		if err := d.redis.Do(ctx, cmd).Error(); err != nil {
			d.log.Warn("broadcast: dedupe record not shared, Redis failed", "err", err)
		}
	}
	d.settleRecord(h, r, accepted, window)
}

func (d *dedupe) settleRecord(h [32]byte, r *record, accepted bool, window time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if accepted {
		r.accepted, r.expires = true, time.Now().Add(window) // (evicted meanwhile: its waiters still learn it)
	} else if d.m[h] == r {
		delete(d.m, h)
	}
	select {
	case <-r.done:
	default:
		close(r.done)
	}
}

// evict drops the oldest records past max, and expired ones at the front. d.mu held.
func (d *dedupe) evict(now time.Time) {
	for d.head < len(d.order) {
		e := d.order[d.head]
		r := d.m[e.h]
		switch {
		case r == nil || r.seq != e.seq: // already gone, or a newer record of the same hash
		case len(d.m) > d.max || (r.accepted && !now.Before(r.expires)):
			delete(d.m, e.h)
		default:
			d.compact()
			return
		}
		d.head++
	}
	d.compact()
}

// compact reclaims the consumed front of order.
func (d *dedupe) compact() {
	if d.head > 1024 && d.head > len(d.order)/2 {
		d.order = append(d.order[:0], d.order[d.head:]...)
		d.head = 0
	}
}

func (d *dedupe) key(h [32]byte) string {
	return redisPrefix + d.network + ":" + hex.EncodeToString(h[:])
}
