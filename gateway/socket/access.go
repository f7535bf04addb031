package socket

import (
	"net/netip"

	"github.com/fasthttp/websocket"
	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/gateway/access"
	"github.com/infura-gateway/infura-gateway/proto"
	"github.com/infura-gateway/infura-gateway/upstream"
)

// A websocket outlives configurations: its key may be removed, its plan changed. Every
// call finds the client's tenant through a access.Ref that a reload swaps, and after each
// reload the socket server reviews its clients (review, rebind; a client that calls
// before its review reviews itself first: caller):
//   - a client whose key was removed (or, keys now required, that has none) gets a
//     JSON-RPC error frame, then close 1008;
//   - a client whose new plan leaves its network out gets a JSON-RPC error frame, then
//     close 1008;
//   - a client whose tenant changed moves its connection and subscription slots to the
//     new tenant's limits; a subscription the new plan denies, or one past its
//     subscription limit, ends with a notification carrying the error.
//
// The slots a client holds are on bound, guarded by whoMu with the subscription count:
// a slot is taken with each count taken, given back with each count given back.

var (
	errKeyRevoked = proto.NewError(proto.CodeServer, fasthttp.StatusUnauthorized,
		"API key revoked: the configuration no longer lists it; this connection closes")
	errKeyNowRequired = proto.NewError(proto.CodeServer, fasthttp.StatusUnauthorized,
		"an API key is now required: this connection closes; reconnect with a key")
)

// bind sets who the client counts against when it connects: who holds the connection
// slot it took. A key's client follows the key's ref; an unkeyed one holds a ref of its
// own, resolved again by its address on each review.
func (c *wsClient) bind(who *access.Tenant, addr netip.Addr) {
	c.bound, c.addr = who, addr
	who.Hold() // an anonymous tenant stays in its table while a socket is bound to it
	if who != nil && who.Ref() != nil {
		c.ref = who.Ref()
		return
	}
	c.ref = &c.own
	c.own.Set(who)
}

// tenant is whom the client's calls count against now; ok is false once its key is gone.
func (c *wsClient) tenant() (*access.Tenant, bool) {
	t, ok := c.ref.Load()
	return t.On(c.h.net.Index, c.h.net.Name), ok
}

// caller is whom the client's next call counts against, or nil and the status of the
// refusal that ends the client: its key gone, keys now required, or a plan that leaves
// its network out. A reload swaps the key table before its review reaches this client
// (rebind): a call in between reviews the client itself first (a key's tenant may be
// swapped before the table's version moves: its network is checked on its own), so no
// call is served on terms the reload ended. The reader goroutine alone calls it: an
// atomic load and a pointer compare a call. id is the call's (nil for a batch): the
// refusal carries it.
func (c *wsClient) caller(id []byte) (*access.Tenant, int) {
	if v := c.h.acc.Version(); v != c.version {
		c.version = v
		// The server's review may run it too: the second finds nothing to move.
		if perr := c.rebind(id); perr != nil {
			return nil, perr.Status
		}
	}
	who, ok := c.tenant()
	if !ok {
		return nil, c.refuseRevoked(id).Status
	}
	if who != c.checked {
		if perr := who.CheckNetwork(c.h.net.Name); perr != nil {
			c.closeFor(id, websocket.ClosePolicyViolation, perr, perr.Message)
			return nil, perr.Status
		}
		c.checked = who
	}
	return who, 0
}

// refuseRevoked answers a call of a client whose key is gone, or that has none now keys
// are required, and closes it; it returns the refusal.
func (c *wsClient) refuseRevoked(id []byte) *proto.Error {
	e, reason := errKeyRevoked, "API key revoked"
	if c.ref == &c.own {
		e, reason = errKeyNowRequired, "API key required"
	}
	c.closeFor(id, websocket.ClosePolicyViolation, e, reason)
	return e
}

// review applies a reload to every client (after access.load).
func (h *Server) Review() {
	h.mu.Lock()
	clients := make([]*wsClient, 0, len(h.clients))
	for c := range h.clients {
		clients = append(clients, c)
	}
	h.mu.Unlock()
	for _, c := range clients {
		c.rebind(nil)
	}
}

// rebind moves the client to the tenant its ref now holds, or closes it and returns the
// refusal, answered to id (the call that made the client review itself; nil from the
// server's review).
func (c *wsClient) rebind(id []byte) *proto.Error {
	if c.ref == &c.own {
		required, perr := c.h.acc.Rebind(&c.own, c.addr)
		switch {
		case required:
			c.closeFor(id, websocket.ClosePolicyViolation, errKeyNowRequired, "API key required")
			return errKeyNowRequired
		case perr != nil: // the new plan's aggregates refuse its address block now
			c.closeFor(id, websocket.CloseTryAgainLater, perr, perr.Message)
			return perr
		}
	}
	cur, ok := c.tenant()
	if !ok {
		return c.refuseRevoked(id)
	}
	c.whoMu.Lock()
	old := c.bound
	if cur == old || c.gone {
		c.whoMu.Unlock()
		return nil
	}
	// A new plan that leaves the client's network out ends it, as the upgrade would
	// have been refused (403) on it.
	if perr := cur.CheckNetwork(c.h.net.Name); perr != nil {
		c.whoMu.Unlock()
		c.closeFor(id, websocket.ClosePolicyViolation, perr, perr.Message)
		return perr // bound stays: the handler gives its slot back when it ends
	}
	// Slots move in one step: at a key's max, a slot taken before the old one is given
	// back would be refused (a reload of the key's plan).
	if perr := cur.Move(old.ConnSlots(), cur.ConnSlots(), access.RefusedConnections); perr != nil {
		c.whoMu.Unlock()
		c.closeFor(id, websocket.ClosePolicyViolation, perr, perr.Message)
		return perr // bound stays: the handler gives its slot back when it ends
	}
	cur.Hold()
	old.Unhold()
	// The subscription slots follow: as many as the client counts, as far as the new
	// plan has room; the rest are ended below.
	n := c.nsubs.Load()
	var short int32
	var full *proto.Error
	from, to := old.SubSlots(), cur.SubSlots()
	for i := range n {
		var perr *proto.Error
		if i < n-c.unbacked { // held on the old tenant's slots
			if perr = cur.Move(from, to, access.RefusedSubscriptions); perr != nil {
				access.Release(from) // its subscription ends below
			}
		} else {
			perr = cur.Acquire(to, access.RefusedSubscriptions)
		}
		if perr != nil {
			short, full = short+1, perr
		}
	}
	c.bound, c.unbacked = cur, short
	c.whoMu.Unlock()

	// Subscriptions the new plan denies end; then, newest last, as many as found no slot.
	var r proto.Request
	var msg []byte
	held := c.subs.Holdings(c)
	for _, hd := range held {
		msg = proto.AppendRequest(msg[:0], []byte("1"), "eth_subscribe", hd.Params)
		if r.Parse(msg) == nil && cur.Allows(&r) {
			continue
		}
		c.endSubscription(hd, hd.N, access.ErrMethodPlan)
	}
	for i := len(held) - 1; i >= 0 && short > 0; i-- {
		hd := held[i]
		msg = proto.AppendRequest(msg[:0], []byte("1"), "eth_subscribe", hd.Params)
		if r.Parse(msg) != nil || !cur.Allows(&r) {
			continue // ended above
		}
		k := min(int(short), hd.N)
		short -= int32(c.endSubscription(hd, k, full))
	}
	return nil
}

// endSubscription ends k of the client's memberships of a subscription, newest first,
// and tells it with a notification carrying e under each id it ended; it returns how
// many it ended.
func (c *wsClient) endSubscription(hd upstream.Holding, k int, e *proto.Error) int {
	ended := 0
	gw := []byte(hd.GWID)
	for range k {
		if !c.subs.Leave(c, gw) {
			break
		}
		id := c.releaseNewest(gw)
		c.dropSub()
		ended++
		buf := getMsgBuf()
		*buf = appendSubscriptionError((*buf)[:0], string(id), e)
		c.enqueue(outMsg{b: *buf, buf: buf})
	}
	return ended
}

// appendSubscriptionError is a notification of subscription gwID that carries an error
// instead of a result: the subscription has ended.
func appendSubscriptionError(dst []byte, gwID string, e *proto.Error) []byte {
	dst = append(dst, `{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":"`...)
	dst = append(dst, gwID...)
	dst = append(dst, `","error":`...)
	// AppendError writes a whole response; its error object is what follows "error":.
	resp := proto.AppendError(nil, nil, e)
	dst = append(dst, proto.FirstMember(resp, "error").Bytes(resp)...)
	return append(dst, "}}"...)
}

// takeSub counts one more subscription of the client: its connection's and the
// gateway's budgets, then a slot on its tenant. The error says which refused.
func (c *wsClient) takeSub() *proto.Error {
	c.whoMu.Lock()
	defer c.whoMu.Unlock()
	if c.nsubs.Add(1) > int32(c.h.cfg.WSMaxSubscriptions) {
		c.nsubs.Add(-1)
		c.h.refused.Inc()
		return errTooManySubscriptions
	}
	if !c.h.addrSubs.acquire(c.addr) {
		c.nsubs.Add(-1)
		c.h.refused.Inc()
		return errAddrSubscriptions
	}
	if !c.h.subs.Acquire(1) {
		c.nsubs.Add(-1)
		c.h.addrSubs.release(c.addr, 1)
		c.h.refused.Inc()
		return errGatewaySubscriptions
	}
	if perr := c.bound.Acquire(c.bound.SubSlots(), access.RefusedSubscriptions); perr != nil {
		c.nsubs.Add(-1)
		c.h.addrSubs.release(c.addr, 1)
		c.h.subs.Release(1)
		return perr
	}
	return nil
}

// dropSub gives back what takeSub took.
func (c *wsClient) dropSub() {
	c.whoMu.Lock()
	defer c.whoMu.Unlock()
	if c.nsubs.Load() <= 0 {
		// dropAll gave everything back (the client is gone): a subscribe's refusal
		// already on its way when LeaveAll ran has nothing left to give.
		return
	}
	c.nsubs.Add(-1)
	c.h.subs.Release(1)
	c.h.addrSubs.release(c.addr, 1)
	if c.unbacked > 0 {
		c.unbacked--
		return
	}
	access.Release(c.bound.SubSlots())
}

// dropAll gives back every subscription (the client is gone).
func (c *wsClient) dropAll() {
	c.whoMu.Lock()
	defer c.whoMu.Unlock()
	held := c.nsubs.Swap(0)
	c.h.subs.Release(int(held))
	c.h.addrSubs.release(c.addr, held)
	if s := c.bound.SubSlots(); s != nil {
		for range held - c.unbacked {
			s.Release()
		}
	}
	c.unbacked = 0
}

// releaseConn gives back the connection slot (the handler ends).
func (c *wsClient) releaseConn() {
	c.whoMu.Lock()
	defer c.whoMu.Unlock()
	c.gone = true // a review running late takes nothing more
	access.Release(c.bound.ConnSlots())
	c.bound.Unhold()
}
