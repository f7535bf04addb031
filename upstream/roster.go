package upstream

import "bytes"

// holders is who holds one subscription group: the sinks that joined it (each with how
// many of its subscriptions) and those waiting for the upstream's first answer. The
// Mux's groups (one socket) and the Router's (across upstreams) both embed it.
type holders struct {
	members map[Sink]int
	waiters []waiter // joined before the upstream confirmed
}

type waiter struct {
	sink Sink
	id   []byte
}

func (h *holders) hold() *holders { return h }

// holds reports whether sink is a member of the group or waits for it.
func (h *holders) holds(sink Sink) bool {
	if h.members[sink] > 0 {
		return true
	}
	for _, w := range h.waiters {
		if w.sink == sink {
			return true
		}
	}
	return false
}

// roster is a subscription registry's bookkeeping of holders, guarded by its owner's
// lock: the groups each sink joined or waits for, so a client leaving ends its
// memberships without a walk over every group (a sink holds few, so a slice is
// searched), and the memberships held in all.
type roster[G interface {
	comparable
	hold() *holders
}] struct {
	bySink map[Sink][]G
	n      int64
}

func (r *roster[G]) index(sink Sink, g G) {
	if r.bySink == nil {
		r.bySink = make(map[Sink][]G)
	}
	for _, x := range r.bySink[sink] {
		if x == g {
			return
		}
	}
	r.bySink[sink] = append(r.bySink[sink], g)
}

func (r *roster[G]) unindex(sink Sink, g G) {
	gs := r.bySink[sink]
	for i, x := range gs {
		if x == g {
			gs = append(gs[:i], gs[i+1:]...)
			break
		}
	}
	if len(gs) == 0 {
		delete(r.bySink, sink)
	} else {
		r.bySink[sink] = gs
	}
}

// join makes sink a member of g, which the upstream has confirmed.
func (r *roster[G]) join(g G, sink Sink) {
	g.hold().members[sink]++
	r.n++
	r.index(sink, g)
}

// wait has sink wait for g's confirmation; id is the client's eth_subscribe id.
func (r *roster[G]) wait(g G, sink Sink, id []byte) {
	h := g.hold()
	h.waiters = append(h.waiters, waiter{sink: sink, id: bytes.Clone(id)})
	r.index(sink, g)
}

// confirm makes g's waiters members and returns them, for the caller to answer.
func (r *roster[G]) confirm(g G) []waiter {
	h := g.hold()
	ws := h.waiters
	h.waiters = nil
	for _, w := range ws {
		h.members[w.sink]++
		r.n++
	}
	return ws
}

// refuse drops g's waiters and returns them, for the caller to answer.
func (r *roster[G]) refuse(g G) []waiter {
	h := g.hold()
	ws := h.waiters
	h.waiters = nil
	for _, w := range ws {
		if !h.holds(w.sink) {
			r.unindex(w.sink, g)
		}
	}
	return ws
}

// leave ends one of sink's memberships of g; it reports whether sink held one.
func (r *roster[G]) leave(g G, sink Sink) bool {
	h := g.hold()
	if h.members[sink] == 0 {
		return false
	}
	r.n--
	if h.members[sink]--; h.members[sink] == 0 {
		delete(h.members, sink)
		if !h.holds(sink) {
			r.unindex(sink, g)
		}
	}
	return true
}

// leaveAll ends every membership and wait of sink, calls ended for each group it held,
// and returns how many memberships it had.
func (r *roster[G]) leaveAll(sink Sink, ended func(G)) int {
	n := 0
	for _, g := range r.bySink[sink] {
		h := g.hold()
		n += h.members[sink]
		r.n -= int64(h.members[sink])
		delete(h.members, sink)
		h.waiters = removeWaiters(h.waiters, sink)
		ended(g)
	}
	delete(r.bySink, sink)
	return n
}

func removeWaiters(ws []waiter, sink Sink) []waiter {
	out := ws[:0]
	for _, w := range ws {
		if w.sink != sink {
			out = append(out, w)
		}
	}
	clear(ws[len(out):])
	return out
}

// Holding is one subscription a sink holds: the gateway id (no quotes), the canonical
// params, and how many times the sink joined it.
type Holding struct {
	GWID   string
	Params []byte
	N      int
}

// holdings lists the groups sink is a member of (not those it waits for); ident gives
// a group's gateway id and params.
func (r *roster[G]) holdings(sink Sink, ident func(G) (string, []byte)) []Holding {
	var out []Holding
	for _, g := range r.bySink[sink] {
		if n := g.hold().members[sink]; n > 0 {
			gw, params := ident(g)
			out = append(out, Holding{GWID: gw, Params: params, N: n})
		}
	}
	return out
}
