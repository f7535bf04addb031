package limit

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/redisconn"
)

// Slots counts concurrent things (websocket connections, subscriptions) of one key,
// across replicas in Redis mode. Create it once per configuration load with
// Limiter.NewSlots and keep it; Acquire and Release are safe for concurrent use.
// Release never waits; Acquire waits only for Redis to answer when this replica's
// reservation is full and the key may have room elsewhere (see Acquire). Every
// successful Acquire must be followed by one Release.
type Slots struct{ s *slotsState }

// slotsRetry is the Retry-After of a refused Acquire: a slot frees when a client leaves,
// which nobody can predict.
const slotsRetry = time.Second

type slotsState struct {
	handle
	max   int64
	spare int64

	// cap<<32 | used: cap is the reservation this replica may fill (Redis mode), used the
	// slots in use here. One word so Acquire is one compare-and-swap.
	state atomic.Uint64

	// An Acquire waiting for the reservation to grow waits on answerCh, closed (and
	// dropped) by the shard after each outcome of this handle's script run. Nil while
	// nobody waits.
	waitMu   sync.Mutex
	answerCh chan struct{}

	// A reload replaces a key's handle while clients hold the old one's slots; both
	// share this replica's one field in Redis (see slotsmove.go).
	pred, succ atomic.Pointer[slotsState]

	// shard-owned
	held      int64 // the reservation Redis holds for this replica
	want, min int64 // the call under way
	predSent  int64 // the replaced handles' slots when the cap was last set
	needSync  bool  // assert the reservation again (Redis came back, or we were expired)
	idleSince int64
	backoff   int64
	refreshAt int64
	spareAt   int64 // when a spare reserved beside the slots in use goes back (0: none held)
}

// NewSlots returns concurrency slots: at most max in use at once, named name (see
// NewBucket).
func (l *Limiter) NewSlots(name string, max int64) (*Slots, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if max < 1 || max > 1<<30 {
		return nil, fmt.Errorf("limit: slots %s: max must be in [1, 2^30], got %d", name, max)
	}
	s := &slotsState{max: max, spare: clamp(max/10, 1, 16)}
	s.handle = handle{lim: l, sh: l.pickShard(), name: name, key: l.cfg.Prefix + "s:" + name, kind: KindSlots, idx: -1}
	s.self = s
	if l.conn != nil {
		s.state.Store(0) // nothing reserved: the first Acquire waits for Redis's grant
		l.replace(s)
	} else {
		s.state.Store(uint64(max) << 32)
	}
	s.sh.register(s)
	h := &Slots{s: s}
	runtime.AddCleanup(h, func(s *slotsState) { s.close() }, s)
	return h, nil
}

// Name is the name the handle was created with.
func (h *Slots) Name() string { return h.s.name }

// Close drops the handle: its shard gives this replica's reservation back to Redis, or,
// when a newer handle of the name replaced it (a reload), leaves it to that one, which
// keeps counting the slots still held here. Otherwise slots still in use on it are no
// longer counted across replicas.
func (h *Slots) Close() { h.s.close() }

// InUse is the number of slots this process holds.
func (h *Slots) InUse() int64 { return h.s.InUse() }

// slotsUsed is the used count in a state word; retiredBit marks a replaced handle gone
// for good (see retire).
const (
	slotsUsed  = 0xffffffff
	retiredBit = 1 << 63
)

// Acquire takes a slot if one is free. It never allocates while this replica's
// reservation has room. In Redis mode, when the reservation is full (always so for the
// first Acquire of a key on this replica, which holds no credit: a credit would admit
// connections past the key's limit across replicas) and Redis has not said lately that
// the key is full, it asks for more and waits for the answer: a Redis round trip, on a
// connection's or a subscription's start, never on a call. Redis silent, it waits
// until the handle goes on the fallback (two lease deadlines) and takes its decision.
func (h *Slots) Acquire() Decision {
	s := h.s
	var timer *time.Timer
	for {
		d, wait := s.tryAcquire()
		if !wait {
			if timer != nil {
				timer.Stop()
			}
			return d
		}
		l := s.lim
		if timer == nil {
			// Long enough for the lease calls that put the handle on the fallback when
			// Redis does not answer: the wait ends with Redis's decision or the fallback's.
			timer = time.NewTimer(failLimit * (l.cfg.LeaseTimeout + failBackoff))
		}
		ch, v := s.waitAnswer(), s.state.Load()
		if capacity, used := int64(v>>32), int64(v&0xffffffff); used < capacity {
			continue // the reservation grew (or a slot was released) meanwhile
		}
		s.wake()
		select {
		case <-ch:
		case <-timer.C:
			return l.refuse(KindSlots, ReasonExceeded, slotsRetry, s.name)
		}
	}
}

// tryAcquire is one attempt of Acquire: its decision, or wait=true when the reservation
// is full but Redis may grant more.
func (s *slotsState) tryAcquire() (d Decision, wait bool) {
	l := s.lim
	leased := l.conn != nil
	if leased {
		if sc := s.succ.Load(); sc != nil {
			return s.acquireVia(sc), false
		}
	}
	if leased && !s.usable() {
		if s.sh.leasing.Load() {
			s.wake()
		}
		if l.cfg.FailClosed {
			return l.refuse(KindSlots, ReasonRedisDown, slotsRetry, s.name), false
		}
		l.fallback[KindSlots].Inc()
		leased = false
	}
	for {
		v := s.state.Load()
		capacity, used := int64(v>>32), int64(v&0xffffffff)
		if !leased {
			capacity = s.max
		}
		if used >= capacity {
			if leased && capacity < s.max && l.nanotime() >= s.retryAt.Load() &&
				capacity+s.predHeld() < s.max { // the replaced handles' slots count
				return Decision{}, true
			}
			if leased {
				s.wake()
			}
			return l.refuse(KindSlots, ReasonExceeded, slotsRetry, s.name), false
		}
		if s.state.CompareAndSwap(v, v+1) {
			if leased && capacity-used-1 < s.spare {
				s.wake()
			}
			return Decision{OK: true}, false
		}
	}
}

// waitAnswer returns the channel the shard closes at its next answer for this handle.
func (s *slotsState) waitAnswer() <-chan struct{} {
	s.waitMu.Lock()
	defer s.waitMu.Unlock()
	if s.answerCh == nil {
		s.answerCh = make(chan struct{})
	}
	return s.answerCh
}

// notify wakes every Acquire waiting for an answer (shard side, after each one).
func (s *slotsState) notify() {
	s.waitMu.Lock()
	if s.answerCh != nil {
		close(s.answerCh)
		s.answerCh = nil
	}
	s.waitMu.Unlock()
}

// Release gives back a slot taken by Acquire (or moved here). Never waits, never
// allocates.
func (h *Slots) Release() { h.s.giveBack() }

func (s *slotsState) giveBack() {
	for {
		v := s.state.Load()
		capacity, used := int64(v>>32), int64(v&slotsUsed)
		if used == 0 {
			if v&retiredBit != 0 {
				s.succ.Load().giveBack() // its slots were taken there (acquireVia)
			}
			return
		}
		if s.state.CompareAndSwap(v, v-1) {
			if s.succ.Load() != nil {
				s.newest().wake() // replaced: the newest handle's reservation counted it
			} else if s.lim.conn != nil && (capacity-used+1 > 2*s.spare || used == 1) {
				s.wake()
			}
			return
		}
	}
}

// setCap replaces the reservation this replica may fill, keeping the used count.
func (s *slotsState) setCap(c int64) {
	for {
		v := s.state.Load()
		if s.state.CompareAndSwap(v, uint64(c)<<32|v&0xffffffff) {
			return
		}
	}
}

func (s *slotsState) exec(min, want int64) redisconn.Exec {
	s.min, s.want = min, want
	l := s.lim
	return redisconn.Exec{
		Keys: []string{s.key, l.cfg.Prefix + "replicas"},
		Args: []string{"s", l.offsetArg(), l.cfg.ReplicaID, itoa(min), itoa(want), itoa(s.max), itoa(l.cfg.SlotTTL.Milliseconds())},
	}
}

func (s *slotsState) plan(now int64) (redisconn.Exec, bool, int64) {
	if s.succ.Load() != nil {
		s.newest().wake() // replaced: the newest handle of the name writes the field
		return redisconn.Exec{}, false, 0
	}
	// The replaced handles' slots are read after the state word, and any CAS on it
	// below fails if a move or an Acquire on them changed it meanwhile: a slot moving
	// between handles is counted twice, never missed.
	v := s.state.Load()
	others := s.predInUse()
	capacity, used := int64(v>>32), int64(v&slotsUsed)
	if c := min(s.held, s.max) - others; others < s.predSent && c > capacity && !s.needSync {
		// Slots left the replaced handles: their share of the reservation is this one's.
		n := uint64(c)<<32 | uint64(used)
		if !s.state.CompareAndSwap(v, n) {
			return redisconn.Exec{}, false, now // raced an Acquire, Release or move: look again
		}
		v, capacity, s.predSent = n, c, others
		s.notify() // an Acquire waiting for room has it
	}
	if used == 0 && others == 0 && s.held > 0 {
		if s.idleSince == 0 {
			s.idleSince = now
		}
		if release := s.idleSince + int64(s.lim.cfg.SlotIdleRelease); now < release {
			return redisconn.Exec{}, false, release
		}
		// Idle long enough: give the reservation back, closed here first, so an
		// Acquire meanwhile waits for a new grant instead of filling a slot Redis
		// is handing to another replica. One that came first keeps the reservation.
		if s.state.CompareAndSwap(v, 0) {
			return s.exec(0, 0), true, 0
		}
		v = s.state.Load()
		others = s.predInUse()
		capacity, used = int64(v>>32), int64(v&slotsUsed)
	}
	if used > 0 || others > 0 {
		s.idleSince = 0
	}
	in := used + others // what the field must cover
	free := capacity - used
	// A spare not taken within SlotIdleRelease of its grant goes back: held for as long
	// as the slots beside it are in use, it would keep another replica of the key from
	// its share (max 6 over three replicas, two clients each: the third got none).
	spareDue := free > 0 && s.spareAt > 0 && now >= s.spareAt
	grow := !spareDue && free < s.spare && capacity+others < s.max
	shrink := free > 2*s.spare || spareDue
	refresh := s.held > 0 && now >= s.refreshAt
	if !(s.needSync || in > s.held || grow || shrink || refresh) {
		next := s.nextRefresh()
		if free > 0 && s.spareAt > 0 {
			next = nextDue(next, s.spareAt)
		}
		return redisconn.Exec{}, false, next
	}
	if grow && !(s.needSync || in > s.held || shrink) && now < s.backoff {
		return redisconn.Exec{}, false, s.backoff
	}
	// The reservation asked for may be smaller than the one held (a shrink, a refresh):
	// this replica's cap comes down to it before the call, so no Acquire while the call
	// is under way fills a slot the call gives up. Growing, the cap rises only with the
	// grant.
	for {
		want := min(in+s.spare, max(s.max, in))
		if s.needSync || spareDue {
			// Asserting again what Redis may have lost (its state after a restart or
			// FLUSHALL, or this replica's expiry) asks for the slots in use only:
			// replicas asserting a spare each before the others' slots are counted
			// again would add up to more than max, and fill it. A spare comes with the
			// next Acquire's grant.
			want = in
		}
		c := min(capacity, want-others)
		if c == capacity || s.state.CompareAndSwap(v, uint64(c)<<32|uint64(used)) {
			return s.exec(in, want), true, 0
		}
		v = s.state.Load()
		others = s.predInUse()
		capacity, used = int64(v>>32), int64(v&slotsUsed)
		in = used + others
	}
}

func (s *slotsState) apply(res []int64, now int64) int64 {
	if len(res) < 1 {
		return s.fail(now)
	}
	grant := res[0]
	defer s.notify()
	s.answered()
	s.needSync = false
	s.held = grant
	s.refreshAt = now + int64(s.lim.cfg.slotRefresh) // keep the key's 24h expiry away
	s.retryAt.Store(0)
	if s.want == 0 {
		s.setCap(0) // released: the next Acquire waits for a new grant
		s.idleSince, s.spareAt = 0, 0
		if s.InUse() > 0 || s.predInUse() > 0 {
			return now // acquired (on the fallback) while the release was under way: reserve again
		}
		return 0
	}
	others := s.capAfter(grant)
	s.spareAt = 0
	if in := s.InUse() + others; grant > in && in > 0 {
		s.spareAt = now + int64(s.lim.cfg.SlotIdleRelease)
	}
	if grant < s.want {
		// The key is full across replicas: Acquires here refuse at once rather than
		// wait until this pause ends.
		s.backoff = now + int64(250*time.Millisecond)
		if grant <= s.InUse()+others {
			s.retryAt.Store(s.backoff)
		}
	}
	if s.InUse()+others > grant {
		s.needSync = true // acquired past the new reservation while the call was under way
		return now
	}
	if grant > 0 && s.InUse()+others == 0 {
		// Reserved with nothing in use (a spare nobody took): it goes back once idle,
		// as after a Release, not only when a later Acquire or Release wakes the handle.
		if s.idleSince == 0 {
			s.idleSince = now
		}
		return s.idleSince + int64(s.lim.cfg.SlotIdleRelease)
	}
	return nextDue(s.nextRefresh(), s.spareAt)
}

// nextRefresh is when a handle holding a reservation writes it again, so the key's
// expiry in Redis (a day) never passes while its slots are in use (0: nothing held).
func (s *slotsState) nextRefresh() int64 {
	if s.held > 0 {
		return s.refreshAt
	}
	return 0
}

// InUse for the shard's side.
func (s *slotsState) InUse() int64 { return int64(s.state.Load() & slotsUsed) }

func (s *slotsState) fail(now int64) int64 {
	defer s.notify() // a waiting Acquire looks again: the handle may be on the fallback now
	s.failed()
	s.backoff = now + int64(failBackoff)
	return s.backoff
}

func (s *slotsState) recover(now int64) int64 {
	defer s.notify()
	s.answered()
	s.backoff = 0
	if s.held > 0 || s.InUse() > 0 || s.pred.Load() != nil {
		s.needSync = true
		return now
	}
	return 0
}

func (s *slotsState) release() (redisconn.Exec, bool) {
	if s.lim.superseded(s) {
		s.held = 0
		s.newest().wake() // it writes the field now, for the slots left here too
		return redisconn.Exec{}, false
	}
	if s.held == 0 {
		return redisconn.Exec{}, false
	}
	s.held = 0
	return s.exec(0, 0), true
}
