package limit

import (
	"container/heap"
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/redisconn"
)

// handle is the part every limit handle shares: identity, the flags a check reads, and
// the shard's bookkeeping. Fields below "shard-owned" are touched only by the goroutine
// of the shard the handle belongs to.
type handle struct {
	lim  *Limiter
	sh   *shard
	self leased // the handle as the shard sees it (set once at creation)
	name string
	key  string
	kind Kind

	queued   atomic.Bool  // a wake is in the shard's channel
	closed   atomic.Bool  // closed by the caller or collected; the shard drops it
	degraded atomic.Bool  // leases failed failLimit times in a row: checks use the fallback
	retryAt  atomic.Int64 // lim.nanotime() before which the allowance is not expected to grow
	wokeAt   atomic.Int64 // lim.nanotime() of the first wake since the last lease went out (0: none)

	// shard-owned
	idx   int   // position in the shard's heap, -1 when not scheduled
	due   int64 // when the shard looks at the handle next
	fails int   // lease calls without an answer in a row
}

// leased is what a shard does with a handle of each kind. All methods run on the shard's
// goroutine.
type leased interface {
	hd() *handle
	// plan returns the script run to send now (send=false: none), or when to look again
	// (next=0: only when woken).
	plan(now int64) (e redisconn.Exec, send bool, next int64)
	// apply takes the script's answer to the run plan returned.
	apply(res []int64, now int64) (next int64)
	// fail is told that the run plan returned did not get an answer.
	fail(now int64) (next int64)
	// recover runs when Redis becomes usable again after an outage.
	recover(now int64) (next int64)
	// release returns the final run for a closed handle (slot reservations).
	release() (e redisconn.Exec, send bool)
}

func (h *handle) hd() *handle { return h }

// wake asks the shard to look at the handle soon. At most one wake per handle is in the
// channel; when the channel is full the wake is dropped (counted) and the next check
// wakes again. Never blocks, never allocates.
func (h *handle) wake() {
	if h.queued.Load() || !h.queued.CompareAndSwap(false, true) {
		return
	}
	// When the need was seen, for the shard's measure of how late renewals land. Once per
	// wake, not per check.
	if h.wokeAt.Load() == 0 {
		h.wokeAt.CompareAndSwap(0, h.lim.nanotime())
	}
	select {
	case h.sh.wakeCh <- h.self:
	default:
		h.queued.Store(false)
		h.lim.wakeDropped.Inc()
	}
}

// close marks the handle closed (idempotent).
func (h *handle) close() {
	if !h.closed.CompareAndSwap(false, true) {
		return
	}
	h.lim.handles.Add(-1)
	if h.lim.conn != nil {
		h.wake()
	}
}

// usable reports whether the handle may spend its leased allowance (Redis mode, Redis
// usable, last lease fine).
func (h *handle) usable() bool { return h.sh.leasing.Load() && !h.degraded.Load() }

// failBackoff is the pause before a handle whose lease call failed is tried again.
const failBackoff = 100 * time.Millisecond

// failLimit is how many lease calls of a handle in a row may go unanswered before its
// checks leave the leased allowance for the fallback.
const failLimit = 2

// failed counts a lease call that got no answer. One missed deadline is not Redis failing
// (on a saturated CPU an answer can land late): the handle keeps spending its allowance
// and tries again after failBackoff. Only failLimit misses in a row put its checks on the
// fallback; when Redis itself is down the Conn's breaker takes every handle there.
func (h *handle) failed() {
	h.fails++
	if h.fails >= failLimit {
		h.degraded.Store(true)
	}
}

// answered notes a lease call that got its answer.
func (h *handle) answered() {
	h.fails = 0
	h.degraded.Store(false)
}

// shard owns a share of a Redis-mode limiter's handles and is the only goroutine that
// leases for them.
type shard struct {
	l       *Limiter
	wakeCh  chan leased
	leasing atomic.Bool // Redis usable as far as this shard knows; checks read it

	mu  sync.Mutex
	reg map[leased]struct{}

	slots atomic.Int64 // slot handles registered: this replica heartbeats while > 0

	// goroutine-owned
	heap    dueHeap
	hbAt    int64 // next heartbeat
	pending []leased
	execs   []redisconn.Exec
}

func newShard(l *Limiter) *shard {
	sh := &shard{l: l, wakeCh: make(chan leased, 1024), reg: map[leased]struct{}{}}
	// Set before any handle exists: a check must not take the fallback just because the
	// shard's goroutine has not run yet.
	sh.leasing.Store(l.conn != nil && l.conn.Up())
	return sh
}

// register adds a new handle; the handle's fields are complete.
func (sh *shard) register(x leased) {
	sh.l.handles.Add(1)
	if sh.l.conn == nil {
		return // local mode keeps no registry: nothing to lease, nothing to leak
	}
	sh.mu.Lock()
	sh.reg[x] = struct{}{}
	sh.mu.Unlock()
	if _, ok := x.(*slotsState); ok {
		sh.slots.Add(1)
	}
}

func (sh *shard) run() {
	defer sh.l.wg.Done()
	conn := sh.l.conn
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	sweep := time.NewTicker(time.Second)
	defer sweep.Stop()
	watch := conn.Watch()
	if up := conn.Up(); up != sh.leasing.Load() {
		if up {
			sh.recoverAll()
		}
		sh.leasing.Store(up)
	}
	for {
		select {
		case <-sh.l.stop:
			sh.shutdown()
			return
		case x := <-sh.wakeCh:
			x.hd().queued.Store(false)
			sh.schedule(x, sh.l.nanotime())
		case <-timer.C:
		case <-watch:
			watch = conn.Watch()
			up := conn.Up()
			if up && !sh.leasing.Load() {
				sh.recoverAll()
			}
			sh.leasing.Store(up)
		case <-sweep.C:
			sh.sweep()
		}
		sh.drainWakes()
		if sh.leasing.Load() {
			sh.runDue()
		}
		sh.resetTimer(timer)
	}
}

func (sh *shard) drainWakes() {
	now := sh.l.nanotime()
	for i := 0; i < cap(sh.wakeCh); i++ {
		select {
		case x := <-sh.wakeCh:
			x.hd().queued.Store(false)
			sh.schedule(x, now)
		default:
			return
		}
	}
}

func (sh *shard) resetTimer(t *time.Timer) {
	next := int64(-1)
	if sh.leasing.Load() {
		if len(sh.heap) > 0 {
			next = sh.heap[0].hd().due
		}
		if sh.slots.Load() > 0 && (next < 0 || sh.hbAt < next) {
			next = sh.hbAt
		}
	}
	d := time.Hour
	if next >= 0 {
		d = max(time.Duration(next-sh.l.nanotime()), 0)
	}
	t.Stop()
	select {
	case <-t.C:
	default:
	}
	t.Reset(d)
}

// schedule makes the shard look at x at (or before) at.
func (sh *shard) schedule(x leased, at int64) {
	h := x.hd()
	if h.idx >= 0 {
		if at < h.due {
			h.due = at
			heap.Fix(&sh.heap, h.idx)
		}
		return
	}
	h.due = at
	heap.Push(&sh.heap, x)
}

// runDue sends one pipelined call with every due handle's lease (up to MaxBatch per call).
func (sh *shard) runDue() {
	for {
		now := sh.l.nanotime()
		sh.pending, sh.execs = sh.pending[:0], sh.execs[:0]
		for len(sh.heap) > 0 && sh.heap[0].hd().due <= now && len(sh.execs) < sh.l.cfg.MaxBatch {
			x := heap.Pop(&sh.heap).(leased)
			if x.hd().closed.Load() {
				sh.remove(x)
				if e, ok := x.release(); ok {
					sh.pending, sh.execs = append(sh.pending, nil), append(sh.execs, e)
				}
				continue
			}
			e, send, next := x.plan(now)
			if send {
				sh.pending, sh.execs = append(sh.pending, x), append(sh.execs, e)
			} else if next > 0 {
				sh.schedule(x, next)
			}
		}
		hb := -1
		if sh.slots.Load() > 0 && now >= sh.hbAt {
			hb = len(sh.execs)
			sh.pending = append(sh.pending, nil)
			sh.execs = append(sh.execs, redisconn.Exec{
				Keys: []string{sh.l.cfg.Prefix + "replicas"},
				Args: []string{"h", sh.l.offsetArg(), sh.l.cfg.ReplicaID, itoa(sh.l.cfg.SlotTTL.Milliseconds())},
			})
			sh.hbAt = now + int64(sh.l.cfg.SlotTTL/3)
		}
		if len(sh.execs) == 0 {
			return
		}
		full := len(sh.execs) >= sh.l.cfg.MaxBatch
		sh.l.leaseBatches.Inc()
		sh.l.leaseCalls.Add(len(sh.execs))
		rs := sh.l.conn.EvalMultiWithin(context.Background(), sh.l.cfg.LeaseTimeout, leaseScript, sh.execs)
		now = sh.l.nanotime()
		for i, r := range rs {
			x := sh.pending[i]
			vals, err := r.AsIntSlice()
			if err != nil {
				sh.l.leaseErrors.Inc()
				if i == hb {
					sh.hbAt = now + int64(failBackoff)
				}
				if x != nil {
					if next := x.fail(now); next > 0 {
						sh.schedule(x, next)
					}
				}
				continue
			}
			if i == hb {
				if len(vals) > 0 && vals[0] == 0 {
					sh.resyncSlots(now) // our reservations may have been dropped
				}
				continue
			}
			if x != nil {
				if next := x.apply(vals, now); next > 0 {
					sh.schedule(x, next)
				}
			}
		}
		clear(sh.pending) // drop references for the collector
		if !full || !sh.leasing.Load() || !sh.l.conn.Up() {
			return
		}
	}
}

func (sh *shard) remove(x leased) {
	sh.mu.Lock()
	if _, ok := sh.reg[x]; ok {
		delete(sh.reg, x)
		if _, isSlots := x.(*slotsState); isSlots {
			sh.slots.Add(-1)
		}
	}
	sh.mu.Unlock()
	if h := x.hd(); h.idx >= 0 {
		heap.Remove(&sh.heap, h.idx)
	}
}

// sweep drops closed handles (a wake may have been lost). While
// Redis is down closed handles are forgotten here, except slots that still hold a
// reservation in Redis: they wait to give it back.
func (sh *shard) sweep() {
	leasing := sh.leasing.Load()
	sh.mu.Lock()
	var closed, drop []leased
	for x := range sh.reg {
		if x.hd().closed.Load() {
			if s, ok := x.(*slotsState); !leasing && (!ok || s.held == 0) {
				delete(sh.reg, x)
				if ok {
					sh.slots.Add(-1)
				}
				drop = append(drop, x)
				continue
			}
			closed = append(closed, x)
		}
	}
	sh.mu.Unlock()
	for _, x := range drop {
		if h := x.hd(); h.idx >= 0 {
			heap.Remove(&sh.heap, h.idx)
		}
	}
	now := sh.l.nanotime()
	for _, x := range closed {
		sh.schedule(x, now)
	}
}

// recoverAll runs when Redis is usable again: every handle gets its credit back and slot
// reservations are asserted again.
func (sh *shard) recoverAll() {
	now := sh.l.nanotime()
	sh.mu.Lock()
	all := make([]leased, 0, len(sh.reg))
	for x := range sh.reg {
		all = append(all, x)
	}
	sh.mu.Unlock()
	for _, x := range all {
		if next := x.recover(now); next > 0 {
			sh.schedule(x, next)
		}
	}
	sh.hbAt = now
}

func (sh *shard) resyncSlots(now int64) {
	sh.mu.Lock()
	var all []*slotsState
	for x := range sh.reg {
		if s, ok := x.(*slotsState); ok {
			all = append(all, s)
		}
	}
	sh.mu.Unlock()
	for _, s := range all {
		// Only a handle with something to assert: one that holds nothing and has
		// nothing in use would reserve a spare no client asked for (and, a reservation
		// no Acquire or Release touches, keep it from the other replicas).
		if s.held > 0 || s.InUse() > 0 || s.pred.Load() != nil {
			s.needSync = true
			sh.schedule(s, now)
		}
	}
}

// shutdown releases this shard's slot reservations (unless the test simulates a crash)
// and leaves the handles on the per-process fallback: nobody leases for them any more.
func (sh *shard) shutdown() {
	wasLeasing := sh.leasing.Swap(false)
	if sh.l.crash.Load() || !wasLeasing {
		return
	}
	sh.mu.Lock()
	var execs []redisconn.Exec
	for x := range sh.reg {
		if e, ok := x.release(); ok {
			execs = append(execs, e)
		}
	}
	sh.mu.Unlock()
	if len(execs) > 0 {
		sh.l.conn.EvalMulti(context.Background(), leaseScript, execs)
	}
}

func (l *Limiter) offsetArg() string { return itoa(l.cfg.clockOffset.Milliseconds()) }

// dueHeap orders handles by when their shard looks at them next.
type dueHeap []leased

func (q dueHeap) Len() int           { return len(q) }
func (q dueHeap) Less(i, j int) bool { return q[i].hd().due < q[j].hd().due }
func (q dueHeap) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].hd().idx = i
	q[j].hd().idx = j
}
func (q *dueHeap) Push(x any) {
	x.(leased).hd().idx = len(*q)
	*q = append(*q, x.(leased))
}
func (q *dueHeap) Pop() any {
	old := *q
	x := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	x.hd().idx = -1
	return x
}
