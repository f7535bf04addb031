package upstream

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
)

// Subscriptions. Subscribers asking with the same params bytes share one upstream
// subscription (a group) and one gateway subscription id, so a notification is
// rewritten once and the same bytes go to every subscriber. A group lives on one
// socket; when the socket is lost it is re-subscribed from its stored params on the next
// socket that comes up, and its gateway id stays the same.

// subState is guarded by mu. Lock order: subState.mu, then slot.mu.
type subState struct {
	mu     sync.Mutex
	prefix uint64
	seq    uint64
	groups map[string]*group // by params bytes
	byGW   map[string]*group // by gateway id (0x…, no quotes)
	roster roster[*group]    // who holds what
}

func (st *subState) init() {
	st.groups = make(map[string]*group)
	st.byGW = make(map[string]*group)
}

type group struct {
	params    []byte
	gwID      string
	gwQuoted  []byte
	slot      *slot     // socket carrying (or last carrying) the subscription
	upID      string    // upstream id as raw JSON (with quotes); "" while not live
	pending   bool      // an eth_subscribe for it is in flight
	downSince time.Time // when it lost its socket; zero while live
	// retryIn is the wait before the next resubscribe after the upstream refused one
	// (BackoffMin, doubled per refusal up to BackoffMax); 0 while none was refused.
	retryIn time.Duration
	// renewing is the renewal (mux_renew.go) waiting for this group's eth_subscribe.
	renewing *renewal
	holders
}

// Join subscribes sink to the upstream subscription eth_subscribe(params) and answers
// the client's eth_subscribe (id: the client's raw id) through sink.Reply: the gateway
// subscription id, or an error carrying id. Notifications then go to sink.Notify, the
// first always after the answer. A subscription whose socket is down is joined at once
// and resumes on reconnect.
func (m *Mux) Join(params, id []byte, sink Sink, deadline time.Time) {
	st := &m.subs
	st.mu.Lock()
	defer st.mu.Unlock()
	g := st.groups[string(params)]
	if g != nil && !g.pending {
		st.roster.join(g, sink)
		sink.Reply(appendSubResult(nil, id, g.gwQuoted))
		return
	}
	if g == nil {
		s := m.pick()
		if s == nil {
			sink.Reply(proto.AppendError(nil, id, proto.ErrUnreachable))
			return
		}
		st.seq++
		gw := fmt.Sprintf("0x%016x%016x", st.prefix, st.seq)
		g = &group{params: bytes.Clone(params), gwID: gw, gwQuoted: []byte(`"` + gw + `"`),
			holders: holders{members: make(map[Sink]int)}}
		if perr := m.subscribeUpstream(g, s, m.timeout(deadline)); perr != nil {
			sink.Reply(proto.AppendError(nil, id, perr))
			return
		}
		st.groups[string(g.params)] = g
		st.byGW[gw] = g
	}
	st.roster.wait(g, sink, id)
}

// Leave ends sink's subscription gwID (without quotes); it reports whether sink held it.
func (m *Mux) Leave(sink Sink, gwID []byte) bool {
	st := &m.subs
	st.mu.Lock()
	defer st.mu.Unlock()
	g := st.byGW[string(gwID)]
	if g == nil || !st.roster.leave(g, sink) {
		return false
	}
	m.maybeDropLocked(g)
	return true
}

// LeaveAll ends every subscription of sink (a client went away) and returns how many
// it held.
func (m *Mux) LeaveAll(sink Sink) int {
	st := &m.subs
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.roster.leaveAll(sink, m.maybeDropLocked)
}

// Memberships returns how many subscriptions sinks hold on this Mux; several share one
// upstream subscription when their params match.
func (m *Mux) Memberships() int64 {
	m.subs.mu.Lock()
	defer m.subs.mu.Unlock()
	return m.subs.roster.n
}

// maybeDropLocked forgets a group nobody holds or waits for, and unsubscribes upstream.
func (m *Mux) maybeDropLocked(g *group) {
	if len(g.members) > 0 || len(g.waiters) > 0 || g.pending {
		return // a pending group is dropped when its answer arrives
	}
	st := &m.subs
	delete(st.groups, string(g.params))
	delete(st.byGW, g.gwID)
	if g.upID == "" {
		return
	}
	delete(g.slot.subs, g.upID)
	m.metrics.upstreamSubs.Add(-1)
	m.unsubscribeUpstream(g.slot, g.upID)
	g.upID = ""
}

// unsubscribeUpstream sends eth_unsubscribe(upID) on s, its answer dropped.
func (m *Mux) unsubscribeUpstream(s *slot, upID string) {
	c := getCall(kindFire)
	params := append(append(append(c.resp[:0], '['), upID...), ']')
	var r proto.Request
	r.Set(methodUnsubscribe, params)
	c.prepare(&r, gatewayID1, m.nextID())
	if s.register(c, m.cfg.RequestTimeout) != nil {
		putCall(c) // the socket is gone, and the subscription with it
	}
}

var (
	methodSubscribe   = []byte("eth_subscribe")
	methodUnsubscribe = []byte("eth_unsubscribe")
)

// subscribeUpstream sends eth_subscribe for g on s. Called with subState.mu held.
func (m *Mux) subscribeUpstream(g *group, s *slot, d time.Duration) *proto.Error {
	c := getCall(kindSub)
	c.group = g
	var r proto.Request
	r.Set(methodSubscribe, g.params)
	c.prepare(&r, gatewayID1, m.nextID())
	if perr := s.register(c, d); perr != nil {
		putCall(c)
		return perr
	}
	g.slot, g.pending = s, true
	return nil
}

// subscribed completes an eth_subscribe call: it records the upstream id before the
// reader reads the next message, answers whoever waited, and counts a resubscription.
func (m *Mux) subscribed(c *call, e *proto.Error) {
	st := &m.subs
	st.mu.Lock()
	defer st.mu.Unlock()
	g := c.group
	g.pending = false
	defer g.renewed() // once the group is live (or refused) and counted
	var msg proto.Message
	var result []byte
	if e == nil {
		if _, err := proto.ScanMessage(c.resp, &msg); err == nil && msg.Result.Present() && c.resp[msg.Result.Start] == '"' {
			result = msg.Result.Bytes(c.resp)
		}
	}
	if result == nil {
		for _, w := range st.roster.refuse(g) {
			if e != nil {
				w.sink.Reply(proto.AppendError(nil, w.id, e))
			} else {
				w.sink.Reply(appendErrorReply(nil, w.id, c.resp, msg.Error))
			}
		}
		if len(g.members) > 0 {
			// Its subscribers hold it: subscribe it again after a backoff rather than
			// on the next reconnect (the socket may live for days, the subscription
			// silent meanwhile).
			d := m.retryLater(g)
			m.cfg.Logger.Warn("upstream websocket: resubscribe failed; retrying",
				"subscription", g.gwID, "retry_in", d, "err", errString(e))
		}
		m.maybeDropLocked(g)
		return
	}
	g.retryIn = 0
	g.upID = string(result)
	g.slot.subs[g.upID] = g
	m.metrics.upstreamSubs.Add(1)
	if !g.downSince.IsZero() {
		m.metrics.reconnectGap.Update(time.Since(g.downSince).Seconds())
		m.metrics.resubscribes.Inc()
		g.downSince = time.Time{}
	}
	for _, w := range st.roster.confirm(g) {
		w.sink.Reply(appendSubResult(nil, w.id, g.gwQuoted))
	}
	m.maybeDropLocked(g)
}

func errString(e *proto.Error) string {
	if e == nil {
		return "upstream error answer"
	}
	return e.Message
}

// notify routes a notification to the subscribers of its upstream subscription, with
// the gateway id spliced in once for all of them.
func (m *Mux) notify(s *slot, frame []byte, msg *proto.Message) {
	st := &m.subs
	st.mu.Lock()
	defer st.mu.Unlock()
	g := s.subs[string(msg.Subscription.Bytes(frame))]
	if g == nil {
		return // unsubscribed already: notifications may still be in flight
	}
	out := proto.Splice(make([]byte, 0, len(frame)+len(g.gwQuoted)), frame, msg.Subscription, g.gwQuoted)
	for sink := range g.members {
		sink.Notify(out)
	}
}

// subsDown marks the groups of a lost socket as down. They move at once to another
// socket that is up, if any; otherwise they resubscribe when a socket comes back.
func (m *Mux) subsDown(s *slot) {
	st := &m.subs
	st.mu.Lock()
	defer st.mu.Unlock()
	now := time.Now()
	if len(s.subs) > 0 {
		// Before they are sent again, on another socket or this one back.
		if m.cfg.OnDown != nil {
			m.cfg.OnDown()
		}
		m.downs.Add(1)
	}
	for id, g := range s.subs {
		delete(s.subs, id)
		g.upID = ""
		g.downSince = now
		m.metrics.upstreamSubs.Add(-1)
	}
	if other := m.pick(); other != nil && other != s {
		m.resubscribeLocked(other)
	}
}

// resubscribe re-establishes, on s, the groups of s and those whose socket is down.
func (m *Mux) resubscribe(s *slot) {
	m.subs.mu.Lock()
	defer m.subs.mu.Unlock()
	m.resubscribeLocked(s)
}

func (m *Mux) resubscribeLocked(s *slot) {
	st := &m.subs
	for _, g := range st.groups {
		if g.pending || g.upID != "" || (g.slot != s && g.slot.isUp.Load()) {
			continue
		}
		if g.downSince.IsZero() {
			g.downSince = time.Now()
		}
		if perr := m.subscribeUpstream(g, s, m.cfg.RequestTimeout); perr != nil {
			// The socket's queue full (many groups at once after a reconnect), or the
			// socket gone again: sent again after the backoff, on whichever socket is
			// up then, rather than left silent until the next reconnect.
			if len(g.members) > 0 {
				d := m.retryLater(g)
				m.cfg.Logger.Warn("upstream websocket: cannot resubscribe; retrying", "subscription", g.gwID,
					"retry_in", d, "err", perr.Message)
				continue
			}
			m.cfg.Logger.Warn("upstream websocket: cannot resubscribe", "subscription", g.gwID, "err", perr.Message)
		}
	}
}

// retryLater subscribes g again after its backoff, on whichever socket is up then,
// and returns the wait. Called with subState.mu held.
func (m *Mux) retryLater(g *group) time.Duration {
	g.retryIn = min(max(2*g.retryIn, m.cfg.BackoffMin), m.cfg.BackoffMax)
	d := g.retryIn/2 + rand.N(g.retryIn/2+1)
	time.AfterFunc(d, func() {
		st := &m.subs
		st.mu.Lock()
		defer st.mu.Unlock()
		if m.ctx.Err() != nil || st.byGW[g.gwID] != g || g.pending || g.upID != "" || len(g.members) == 0 {
			return // closed, ended, or already subscribed again (a reconnect)
		}
		s := m.pick()
		if s == nil {
			return // no socket up: the next one that comes up subscribes it
		}
		if perr := m.subscribeUpstream(g, s, m.cfg.RequestTimeout); perr != nil {
			m.retryLater(g)
		}
	})
	return d
}

func appendSubResult(dst, id, gwQuoted []byte) []byte {
	dst = append(dst, `{"jsonrpc":"2.0","id":`...)
	dst = append(dst, id...)
	dst = append(dst, `,"result":`...)
	dst = append(dst, gwQuoted...)
	return append(dst, '}')
}

// appendErrorReply answers id with the upstream's error object (span errSpan of resp),
// or a generic upstream error when there is none.
func appendErrorReply(dst, id, resp []byte, errSpan proto.Span) []byte {
	if !errSpan.Present() {
		return proto.AppendError(dst, id, proto.ErrBadUpstream)
	}
	dst = append(dst, `{"jsonrpc":"2.0","id":`...)
	dst = append(dst, id...)
	dst = append(dst, `,"error":`...)
	dst = append(dst, errSpan.Bytes(resp)...)
	return append(dst, '}')
}

// ErrSubscribe is wrapped by Subscribe errors the upstream answered.
var ErrSubscribe = errors.New("upstream refused the subscription")

// RefusedError is a subscription the upstream answered with an error: the node's verdict
// on the params, to pass on to the client as it is.
type RefusedError struct {
	Error []byte // the upstream's error object
	// Class is how the upstream's classifier reads the refusal: a provider refusing
	// the gateway for its rate, quota or key (throttled, exhausted, unauthorized,
	// method_refused; Backoff what it stated), or the node's verdict on the params
	// (client_error).
	Class   AnswerClass
	Backoff time.Duration
}

func (e *RefusedError) Unwrap() error { return ErrSubscribe }

func (e *RefusedError) String() string {
	return "upstream refused the subscription: " + string(e.Error)
}

// Subscribe is the in-process subscription API (the head tracker's): deliver gets the
// result of every notification of eth_subscribe(params), e.g. params `["newHeads"]`.
// The subscription survives upstream reconnects (with a gap). deliver is called from a
// socket's reader goroutine: it must not block, and result is valid only during the
// call. unsubscribe ends it.
func (m *Mux) Subscribe(params []byte, deliver func(result []byte)) (unsubscribe func(), err error) {
	return m.SubscribeBy(params, time.Time{}, deliver)
}

// SubscribeBy is Subscribe answered by deadline (zero: RequestTimeout from now).
func (m *Mux) SubscribeBy(params []byte, deadline time.Time, deliver func(result []byte)) (unsubscribe func(), err error) {
	fs := &funcSink{deliver: deliver, reply: make(chan []byte, 1)}
	m.Join(params, []byte("1"), fs, deadline)
	ans := <-fs.reply // Join always answers: result, error, timeout or connection loss
	var msg proto.Message
	if _, err := proto.ScanMessage(ans, &msg); err != nil || !msg.Result.Present() {
		if ge := gatewayError(ans); ge != nil {
			return nil, ge // the gateway's own: no socket, timeout, overloaded
		}
		n := m.cls.classifyBody(0, ans, nil, methodSubscribe)
		return nil, refusal{&RefusedError{Error: bytes.Clone(msg.Error.Bytes(ans)), Class: n.class, Backoff: n.backoff}}
	}
	gw := bytes.Trim(msg.Result.Bytes(ans), `"`)
	return func() { m.Leave(fs, gw) }, nil
}

// refusal carries a RefusedError as an error.
type refusal struct{ *RefusedError }

func (r refusal) Error() string { return r.RefusedError.String() }

// AsRefused returns the upstream's refusal inside err, if that is what it is.
func AsRefused(err error) (*RefusedError, bool) {
	if r, ok := err.(refusal); ok {
		return r.RefusedError, true
	}
	return nil, false
}

// gatewayError recognises an error answer the gateway made itself, by its code and
// message (the shared proto values).
func gatewayError(ans []byte) *proto.Error {
	e := proto.FirstMember(ans, "error")
	if !e.Present() {
		return nil
	}
	eb := e.Bytes(ans)
	msg, ok := proto.DecodeString(make([]byte, 256), proto.FirstMember(eb, "message").Bytes(eb))
	if !ok {
		return nil
	}
	for _, ge := range []*proto.Error{proto.ErrUnavailable, proto.ErrUnreachable, proto.ErrTimeout,
		proto.ErrOverloaded, proto.ErrShuttingDown, proto.ErrBadUpstream, proto.ErrResponseTooLarge, proto.ErrAnswerBudget} {
		if string(msg) == ge.Message {
			return ge
		}
	}
	return nil
}

type funcSink struct {
	deliver func([]byte)
	reply   chan []byte
}

func (f *funcSink) Reply(msg []byte) { f.reply <- bytes.Clone(msg) }

func (f *funcSink) Notify(frame []byte) {
	if r := NotificationResult(frame); r != nil {
		f.deliver(r)
	}
}

// NotificationResult returns params.result of an eth_subscription notification, or nil.
func NotificationResult(frame []byte) []byte {
	var msg proto.Message
	if _, err := proto.ScanMessage(frame, &msg); err != nil || !msg.Params.Present() {
		return nil
	}
	it, err := proto.NewObjectIter(frame, msg.Params.Start)
	if err != nil {
		return nil
	}
	var res []byte
	for {
		k, v, ok, err := it.Next()
		if err != nil || !ok {
			return res
		}
		if proto.KeyIs(k.Bytes(frame), "result") {
			res = v.Bytes(frame)
		}
	}
}

// Holdings lists the subscriptions sink holds on this Mux.
func (m *Mux) Holdings(sink Sink) []Holding {
	m.subs.mu.Lock()
	defer m.subs.mu.Unlock()
	return m.subs.roster.holdings(sink, func(g *group) (string, []byte) { return g.gwID, g.params })
}
