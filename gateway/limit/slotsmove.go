package limit

// A reload that changes a key's plan creates a new slots handle of the same name while
// the key's clients still hold slots on the old one; the socket server then moves each
// client (MoveFrom) and the old handle is closed. Both handles share this replica's one
// field of the name in Redis, so one of them alone must write it, for both:
//
//   - the newest handle of a name owns the field. It reserves for its own slots and for
//     those still held on the handles it replaced (pred, a chain oldest last); a
//     replaced handle (succ set) neither plans nor, closed, gives the field back;
//   - every handle of a chain is on the shard of the first, so the field is written by
//     one goroutine, in order: no replaced handle's call lands after the newest's;
//   - an Acquire on a replaced handle (a client that found the old tenant just before
//     the reload) takes the slot on the newest, within its reservation, and hands it
//     back (acquireVia); moves and these hand-backs count a slot on its new handle
//     before taking it off the old, so a slot in transit is counted twice, never missed;
//   - a replaced handle closed with no slot left is retired: cut from the chain, its
//     Acquires and Releases go to its successor for good.
//
// Local mode has no field: a move there checks the new handle's max and nothing else.

// replace makes s the newest handle of its name (Redis mode, in NewSlots, before s is
// registered or returned).
func (l *Limiter) replace(s *slotsState) {
	l.slotsMu.Lock()
	defer l.slotsMu.Unlock()
	if p := l.slotsNewest[s.name]; p != nil {
		s.sh = p.sh
		s.pred.Store(p)
		s.needSync = true // the field is p's until s writes it for both
		p.succ.Store(s)
	}
	l.slotsNewest[s.name] = s
}

// superseded reports whether a newer handle of s's name writes the field s shared;
// if s is the newest, it is forgotten (s is being released).
func (l *Limiter) superseded(s *slotsState) bool {
	l.slotsMu.Lock()
	defer l.slotsMu.Unlock()
	if l.slotsNewest[s.name] == s {
		delete(l.slotsNewest, s.name)
		return false
	}
	return s.succ.Load() != nil
}

// newest is the handle that replaced s last (s itself if none did).
func (s *slotsState) newest() *slotsState {
	for n := s.succ.Load(); n != nil; n = s.succ.Load() {
		s = n
	}
	return s
}

// alias is the handle s's slots are on: s, or, s retired, its first live successor.
func (s *slotsState) alias() *slotsState {
	for s.state.Load()&retiredBit != 0 {
		s = s.succ.Load()
	}
	return s
}

// predInUse is the slots held on the handles s replaced (shard side). A replaced
// handle closed with none left is retired and cut from the chain.
func (s *slotsState) predInUse() int64 {
	var n int64
	q := s
	for p := q.pred.Load(); p != nil; p = q.pred.Load() {
		if p.closed.Load() && p.retire() {
			q.pred.Store(p.pred.Load())
			continue
		}
		n += p.InUse()
		q = p
	}
	return n
}

// predHeld is predInUse without the cuts, for a caller off the shard.
func (s *slotsState) predHeld() int64 {
	var n int64
	for p := s.pred.Load(); p != nil; p = p.pred.Load() {
		n += p.InUse()
	}
	return n
}

// retire marks a replaced, closed handle with no slot in use as gone for good.
func (s *slotsState) retire() bool {
	for {
		v := s.state.Load()
		if v&retiredBit != 0 {
			return true
		}
		if v&slotsUsed != 0 {
			return false
		}
		if s.state.CompareAndSwap(v, retiredBit) {
			return true
		}
	}
}

// capAfter sets the cap to what grant leaves after the replaced handles' slots and
// returns those (shard side).
func (s *slotsState) capAfter(grant int64) (others int64) {
	for {
		v := s.state.Load()
		others = s.predInUse()
		if s.state.CompareAndSwap(v, uint64(max(grant-others, 0))<<32|v&slotsUsed) {
			s.predSent = others
			return others
		}
	}
}

// acquireVia takes a slot for s, a replaced handle, on sc (its successor, counted by
// the newest's reservation) and hands it back to s, where the client releases it.
func (s *slotsState) acquireVia(sc *slotsState) Decision {
	d := (&Slots{s: sc}).Acquire()
	if !d.OK {
		return d
	}
	for {
		v := s.state.Load()
		if v&retiredBit != 0 {
			return d // s is gone: the slot stays on sc, where s's Release goes
		}
		if s.state.CompareAndSwap(v, v+1) {
			break
		}
	}
	// Off sc, with its room: the newest's reservation counts the slot on s now.
	for {
		v := sc.state.Load()
		c := max(int64(v>>32)-1, 0) // sc holds the slot: not retired
		if sc.state.CompareAndSwap(v, uint64(c)<<32|(v&slotsUsed-1)) {
			return d
		}
	}
}

// MoveFrom hands a slot held on old to h: a client moving to a reloaded plan. When h
// replaced old (same name, same Limiter: a reload), the slot moves locally, without
// Redis and without needing a free slot beside it: h's reservation in Redis already
// counts it, and keeps counting every slot held on either handle after old is closed.
// It is refused only when h itself holds its max already; the slot then stays on old.
// Between handles of different names it is an Acquire on h, then old's Release.
func (h *Slots) MoveFrom(old *Slots) Decision {
	s, p := h.s.alias(), old.s.alias()
	if s == p {
		return Decision{OK: true}
	}
	if s.lim != p.lim || s.name != p.name || s.lim.conn != nil && !s.replaced(p) {
		d := h.Acquire()
		if d.OK {
			p.giveBack()
		}
		return d
	}
	for {
		v := s.state.Load()
		if int64(v&slotsUsed) >= s.max {
			return s.lim.refuse(KindSlots, ReasonExceeded, slotsRetry, s.name)
		}
		// Counted here before it leaves old. The cap stays: in Redis mode the shard
		// gives h old's share of the reservation once old's count has dropped.
		if s.state.CompareAndSwap(v, v+1) {
			break
		}
	}
	p.giveBack()
	return Decision{OK: true}
}

// replaced reports whether p is in s's chain of replaced handles.
func (s *slotsState) replaced(p *slotsState) bool {
	for q := s.pred.Load(); q != nil; q = q.pred.Load() {
		if q == p {
			return true
		}
	}
	return false
}
