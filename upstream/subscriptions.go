package upstream

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
)

// Subscriptions are the router's client subscriptions. Each distinct subscription
// (params, canonical) is a group with a gateway subscription id, carried by one
// upstream's socket at a time and moved to another when that upstream fails, is banned
// or falls behind. The id never changes, identical subscriptions stay shared, and the
// move leaves no gap:
//   - newHeads: every block number is delivered once, in order; heads missed while the
//     subscription was down or moving are fetched with eth_getBlockByNumber (up to
//     MaxBackfill blocks; past that the gap is counted and logged); a reorg is passed on
//     as the chain reports it;
//   - logs: the blocks the move may have missed are queried with eth_getLogs for the
//     same filter, and logs already delivered are not delivered again;
//   - other kinds move as they are.
//
// Each group has one goroutine that owns its deliveries and its moves, so notifications
// reach subscribers in order and the sockets' readers never wait.
type Subscriptions struct {
	r      *Router
	prefix uint64

	mu     sync.Mutex
	seq    uint64
	groups map[string]*subGroup // by params
	byID   map[string]*subGroup // by gateway id (no quotes)
	roster roster[*subGroup]
}

// MaxBackfill bounds the heads fetched to close one gap.
const MaxBackfill = 128

func newSubscriptions(r *Router) *Subscriptions {
	s := &Subscriptions{r: r, groups: map[string]*subGroup{}, byID: map[string]*subGroup{}}
	var seed [8]byte
	_, _ = rand.Read(seed[:])
	s.prefix = binary.LittleEndian.Uint64(seed[:])
	return s
}

type subKind uint8

const (
	kindOther subKind = iota
	kindNewHeads
	kindLogs
)

// delivery is a notification result from the group's upstream of generation gen.
type delivery struct {
	gen    uint64
	result []byte
}

type subGroup struct {
	s        *Subscriptions
	params   []byte
	kind     subKind
	gwID     string
	gwQuoted []byte

	// Guarded by s.mu.
	holders
	live  bool // established upstream: joins are answered at once
	ended bool

	in      chan delivery
	moveReq chan struct{}
	stop    chan struct{}
	done    chan struct{}

	carrier atomic.Pointer[Upstream] // up, for others to read

	// Owned by the group's goroutine.
	up       *Upstream
	unsub    func()
	gen      uint64
	last     uint64   // newHeads: the last number delivered
	hashes   hashRing // newHeads: hashes delivered, to tell a duplicate from a reorg
	coverTo  uint64   // logs: blocks up to this were covered by the previous upstream
	seenLogs logSet
	frame    []byte
}

// Join subscribes sink to eth_subscribe(params) and answers the client's eth_subscribe
// (id: the client's raw id) through sink.Reply: the gateway subscription id, or an error
// carrying id. Notifications then go to sink.Notify, the first always after the answer.
func (s *Subscriptions) Join(params, id []byte, sink Sink, deadline time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groups[string(params)]
	if g != nil && g.live {
		s.roster.join(g, sink)
		sink.Reply(appendSubResult(nil, id, g.gwQuoted))
		return
	}
	if g == nil {
		s.seq++
		gw := fmt.Sprintf("0x%016x%016x", s.prefix, s.seq)
		g = &subGroup{s: s, params: bytes.Clone(params), kind: kindOf(params), gwID: gw, gwQuoted: []byte(`"` + gw + `"`),
			holders: holders{members: map[Sink]int{}}, in: make(chan delivery, 4096), moveReq: make(chan struct{}, 1),
			stop: make(chan struct{}), done: make(chan struct{})}
		s.groups[string(g.params)] = g
		s.byID[gw] = g
		go g.run(deadline)
	}
	s.roster.wait(g, sink, id)
}

// kindOf reads the subscription kind from params[0], decoded.
func kindOf(params []byte) subKind {
	if proto.FirstByte(params) != '[' {
		return kindOther
	}
	var buf [32]byte
	v, ok := proto.DecodeString(buf[:], proto.Nth(params, 0).Bytes(params))
	switch {
	case !ok:
		return kindOther
	case string(v) == "newHeads":
		return kindNewHeads
	case string(v) == "logs":
		return kindLogs
	}
	return kindOther
}

// Leave ends sink's subscription gwID (without quotes); it reports whether sink held it.
func (s *Subscriptions) Leave(sink Sink, gwID []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.byID[string(gwID)]
	if g == nil || !s.roster.leave(g, sink) {
		return false
	}
	s.maybeEndLocked(g)
	return true
}

// LeaveAll ends every subscription of sink (a client went away) and returns how many
// it held.
func (s *Subscriptions) LeaveAll(sink Sink) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.roster.leaveAll(sink, s.maybeEndLocked)
}

// carried counts the groups each upstream carries.
func (s *Subscriptions) carried() map[*Upstream]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := map[*Upstream]int{}
	for _, g := range s.groups {
		if u := g.carrier.Load(); u != nil {
			m[u]++
		}
	}
	return m
}

// Memberships returns how many subscriptions sinks hold.
func (s *Subscriptions) Memberships() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.roster.n
}

// maybeEndLocked ends a group nobody holds or waits for.
func (s *Subscriptions) maybeEndLocked(g *subGroup) {
	if len(g.members) > 0 || len(g.waiters) > 0 || g.ended {
		return
	}
	g.ended = true
	delete(s.groups, string(g.params))
	delete(s.byID, g.gwID)
	close(g.stop)
}

// review asks every group carried by an upstream that can no longer carry it to move.
func (s *Subscriptions) review() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.groups {
		select {
		case g.moveReq <- struct{}{}: // the group decides whether it must move
		default:
		}
	}
}

// Close ends every group.
func (s *Subscriptions) Close() {
	s.mu.Lock()
	var groups []*subGroup
	for _, g := range s.groups {
		groups = append(groups, g)
		if !g.ended {
			g.ended = true
			close(g.stop)
		}
	}
	s.groups, s.byID = map[string]*subGroup{}, map[string]*subGroup{}
	s.mu.Unlock()
	for _, g := range groups {
		<-g.done
	}
}

// canCarry reports whether u may carry a subscription: not banned, not lagging, its
// socket up.
func canCarry(u *Upstream) bool {
	return u != nil && u.mux != nil && u.mux.Up() && u.health.State() == StateHealthy
}

// pickCarrier chooses the upstream for a group: a healthy one with its socket up,
// primaries first, the least loaded of two.
func (s *Subscriptions) pickCarrier(exclude *Upstream) *Upstream {
	set := s.r.set.Load()
	for _, tier := range [2][]*Upstream{set.primaries, set.fallbacks} {
		var best *Upstream
		for _, u := range tier {
			if u == exclude || !canCarry(u) || u.health.Head() < s.r.served.Load() {
				continue
			}
			if best == nil || score(u, proto.ClassCheap) < score(best, proto.ClassCheap) {
				best = u
			}
		}
		if best != nil {
			return best
		}
	}
	// Nobody at the served head: the best carrier behind it (backfill closes the gap).
	for _, tier := range [2][]*Upstream{set.primaries, set.fallbacks} {
		for _, u := range tier {
			if u != exclude && canCarry(u) {
				return u
			}
		}
	}
	return nil
}

// run is the group's goroutine: it establishes the group on an upstream, delivers its
// notifications and moves it when its upstream can no longer carry it.
func (g *subGroup) run(deadline time.Time) {
	defer close(g.done)
	defer g.detach()
	if !g.establish(deadline) {
		return
	}
	for {
		select {
		case <-g.stop:
			return
		case d := <-g.in:
			if d.gen == g.gen {
				g.handle(d.result)
			}
		case <-g.moveReq:
			if !canCarry(g.up) || g.s.r.removed(g.up) {
				g.move()
			}
		}
	}
}

// establish subscribes the group on a first upstream and answers the waiters.
func (g *subGroup) establish(deadline time.Time) bool {
	if deadline.IsZero() {
		deadline = time.Now().Add(g.s.r.cfg.Mux.RequestTimeout)
	}
	var lastErr error = errNoUpstream
	var tried []*Upstream
	for time.Now().Before(deadline) {
		u := g.s.pickCarrierNot(tried)
		if u == nil {
			// Nobody can carry it now (sockets still connecting, every upstream down):
			// wait for the next review's news until the client's deadline.
			tried = tried[:0]
			select {
			case <-g.stop:
				return false
			case <-time.After(g.s.r.cfg.ReviewInterval):
			}
			continue
		}
		tried = append(tried, u)
		err := g.attach(u)
		if err == nil {
			g.answerWaiters(nil)
			return true
		}
		lastErr = err
		if _, refused := AsRefused(err); refused {
			break // the params are the problem, not the upstream
		}
	}
	g.answerWaiters(lastErr)
	return false
}

func (s *Subscriptions) pickCarrierNot(tried []*Upstream) *Upstream {
	set := s.r.set.Load()
	for _, u := range append(append([]*Upstream(nil), set.primaries...), set.fallbacks...) {
		skip := !canCarry(u)
		for _, t := range tried {
			skip = skip || t == u
		}
		if !skip {
			return u
		}
	}
	return nil
}

// answerWaiters answers the clients that asked before the group was live: the gateway
// id, or the error (the upstream's own refusal, or the gateway's).
func (g *subGroup) answerWaiters(err error) {
	s := g.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		for _, w := range s.roster.confirm(g) {
			w.sink.Reply(appendSubResult(nil, w.id, g.gwQuoted))
		}
		g.live = true
	} else {
		for _, w := range s.roster.refuse(g) {
			if r, ok := AsRefused(err); ok {
				w.sink.Reply(appendErrorReply(nil, w.id, r.Error, proto.Span{Start: 0, End: len(r.Error)}))
			} else {
				w.sink.Reply(proto.AppendError(nil, w.id, asProtoError(err)))
			}
		}
	}
	s.maybeEndLocked(g)
}

// attach subscribes the group on u; deliveries of this generation flow into g.in.
func (g *subGroup) attach(u *Upstream) error {
	g.gen++
	gen := g.gen
	in := g.in
	unsub, err := u.mux.Subscribe(g.params, func(result []byte) {
		select {
		case in <- delivery{gen: gen, result: bytes.Clone(result)}:
		default:
			g.s.r.m.subDrops.Inc() // the group is far behind; backfill covers heads
		}
	})
	if err != nil {
		return err
	}
	g.up, g.unsub = u, unsub
	g.carrier.Store(u)
	return nil
}

func (g *subGroup) detach() {
	if g.unsub != nil {
		g.unsub()
		g.unsub = nil
	}
}

// move carries the group over to another upstream, then closes the gap for its kind.
func (g *subGroup) move() {
	old := g.up
	for attempt := 0; ; attempt++ {
		u := g.s.pickCarrier(old)
		if u == nil {
			if old != nil && canCarry(old) {
				return // nowhere better to go
			}
			// Nowhere to go: wait for the next review.
			return
		}
		oldHead := uint64(0)
		if old != nil {
			oldHead = old.health.Head()
		}
		g.detach()
		if err := g.attach(u); err != nil {
			g.s.r.log.Warn("cannot move a subscription", "subscription", g.gwID, "to", u.spec.Name, "err", err)
			if attempt >= 2 {
				return
			}
			continue
		}
		g.s.r.m.subMoves.Inc()
		g.s.r.log.Info("subscription moved", "subscription", g.gwID, "from", nameOf(old), "to", u.spec.Name)
		if g.kind == kindLogs {
			g.backfillLogs(u, oldHead)
		}
		return // newHeads: the next head from the new upstream triggers the backfill
	}
}

func nameOf(u *Upstream) string {
	if u == nil {
		return ""
	}
	return u.spec.Name
}

// handle delivers one notification result according to the group's kind.
func (g *subGroup) handle(result []byte) {
	switch g.kind {
	case kindNewHeads:
		g.handleHead(result)
	case kindLogs:
		if g.seenLogs.add(logKey(result)) {
			g.fanOut(result)
		}
	default:
		g.fanOut(result)
	}
}

// handleHead delivers a head: in order, once per number, with gaps filled; a head at
// or below the last one with a hash never delivered at its height is a reorg and goes
// out as the chain reports it.
func (g *subGroup) handleHead(header []byte) {
	n, ok := proto.ParseQuantity(proto.FirstMember(header, "number").Bytes(header))
	if !ok {
		return
	}
	hash := proto.FirstMember(header, "hash").Bytes(header)
	switch {
	case g.last == 0 || n == g.last+1:
	case n > g.last+1:
		g.backfillHeads(g.last+1, n-1)
	default: // n <= last
		if seen, ok := g.hashes.get(hash); ok && seen == n {
			return // delivered already (a lagging upstream catching up, or an overlap)
		}
		g.s.r.m.reorgs.Inc()
	}
	g.last = n
	g.hashes.add(hash, n)
	g.fanOut(header)
}

// backfillHeads delivers heads from..to fetched with eth_getBlockByNumber, in order.
func (g *subGroup) backfillHeads(from, to uint64) {
	if to-from+1 > MaxBackfill {
		g.s.r.m.gapBlocks.Add(int(to - from + 1 - MaxBackfill))
		g.s.r.log.Warn("newHeads gap larger than the backfill bound: some heads skipped",
			"subscription", g.gwID, "from", from, "to", to, "bound", MaxBackfill)
		from = to - MaxBackfill + 1
	}
	var req proto.Request
	var params []byte
	for n := from; n <= to; n++ {
		params = append(strconv.AppendUint(append(params[:0], `["0x`...), n, 16), `",false]`...)
		req.Set(methodGetBlockByNumber, params)
		ans, err := g.s.r.call(nil, &req, gatewayID1, time.Now().Add(g.s.r.cfg.Mux.RequestTimeout), TransportHTTP)
		block := proto.FirstMember(ans, "result").Bytes(ans)
		if err != nil || len(block) == 0 || block[0] != '{' {
			g.s.r.m.gapBlocks.Inc()
			g.s.r.log.Warn("cannot backfill a head", "subscription", g.gwID, "block", n, "err", err)
			continue
		}
		header := headerOf(block)
		g.last = n
		g.hashes.add(proto.FirstMember(header, "hash").Bytes(header), n)
		g.s.r.m.backfilled.Inc()
		g.fanOut(header)
	}
}

// headerOf turns a block object (eth_getBlockByNumber, false) into the shape of a
// newHeads notification: the header without transactions, uncles, withdrawals and size.
func headerOf(block []byte) []byte {
	it, err := proto.NewObjectIter(block, 0)
	if err != nil {
		return block
	}
	out := []byte{'{'}
	for {
		k, v, ok, err := it.Next()
		if err != nil || !ok {
			break
		}
		switch key := k.Bytes(block); string(key) {
		case `"transactions"`, `"uncles"`, `"withdrawals"`, `"size"`:
			continue
		default:
			if len(out) > 1 {
				out = append(out, ',')
			}
			out = append(append(append(out, key...), ':'), v.Bytes(block)...)
		}
	}
	return append(out, '}')
}

// backfillLogs queries the logs the move may have missed: from the blocks the old
// upstream had (less a margin) to the new upstream's head, for the group's filter.
func (g *subGroup) backfillLogs(u *Upstream, oldHead uint64) {
	to := u.health.Head()
	from := g.coverTo
	if oldHead > 2 {
		from = max(from, oldHead-2) // a margin: the old upstream's last logs may not have arrived
	}
	if to == 0 || from > to {
		return
	}
	if to-from+1 > MaxBackfill {
		g.s.r.m.gapBlocks.Add(int(to - from + 1 - MaxBackfill))
		from = to - MaxBackfill + 1
	}
	filter := []byte("{}")
	if proto.FirstByte(g.params) == '[' {
		if f := proto.Nth(g.params, 1); f.Present() && g.params[f.Start] == '{' {
			filter = f.Bytes(g.params)
		}
	}
	params := appendRangeFilter([]byte{'['}, filter, from, to)
	params = append(params, ']')
	var req proto.Request
	req.Set([]byte("eth_getLogs"), params)
	ans, err := g.s.r.call(nil, &req, gatewayID1, time.Now().Add(g.s.r.cfg.Mux.RequestTimeout), TransportHTTP)
	logs := proto.FirstMember(ans, "result").Bytes(ans)
	if err != nil || proto.FirstByte(logs) != '[' {
		g.s.r.m.gapBlocks.Add(int(to - from + 1))
		g.s.r.log.Warn("cannot backfill logs", "subscription", g.gwID, "from", from, "to", to, "err", err)
		return
	}
	it, _ := proto.NewArrayIter(logs)
	for {
		el, ok, err := it.Next()
		if err != nil || !ok {
			break
		}
		l := el.Bytes(logs)
		if g.seenLogs.add(logKey(l)) {
			g.s.r.m.backfilled.Inc()
			g.fanOut(l)
		}
	}
	g.coverTo = to
}

// appendRangeFilter appends filter (a JSON object) with fromBlock and toBlock set.
func appendRangeFilter(dst, filter []byte, from, to uint64) []byte {
	dst = append(dst, `{"fromBlock":"0x`...)
	dst = strconv.AppendUint(dst, from, 16)
	dst = append(dst, `","toBlock":"0x`...)
	dst = strconv.AppendUint(dst, to, 16)
	dst = append(dst, '"')
	it, err := proto.NewObjectIter(filter, 0)
	if err == nil {
		for {
			k, v, ok, err := it.Next()
			if err != nil || !ok {
				break
			}
			switch string(k.Bytes(filter)) {
			case `"fromBlock"`, `"toBlock"`, `"blockHash"`:
				continue
			}
			dst = append(append(append(append(dst, ','), k.Bytes(filter)...), ':'), v.Bytes(filter)...)
		}
	}
	return append(dst, '}')
}

// fanOut sends one notification to every member: one frame, shared.
func (g *subGroup) fanOut(result []byte) {
	frame := make([]byte, 0, len(result)+len(g.gwQuoted)+64)
	frame = append(frame, `{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":`...)
	frame = append(frame, g.gwQuoted...)
	frame = append(frame, `,"result":`...)
	frame = append(frame, result...)
	frame = append(frame, "}}"...)
	s := g.s
	s.mu.Lock()
	for sink := range g.members {
		sink.Notify(frame)
	}
	s.mu.Unlock()
	if g.kind == kindLogs {
		if n, ok := proto.ParseQuantity(proto.FirstMember(result, "blockNumber").Bytes(result)); ok {
			g.coverTo = max(g.coverTo, n)
		}
	}
}

// logKey identifies a log: its block hash and index (the removed flag too, so a log a
// reorg removes is delivered again as removed).
func logKey(l []byte) string {
	return string(proto.FirstMember(l, "blockHash").Bytes(l)) + "/" +
		string(proto.FirstMember(l, "logIndex").Bytes(l)) + "/" + string(proto.FirstMember(l, "removed").Bytes(l))
}

// logSet remembers the last logs delivered, to deliver each once across a move.
type logSet struct {
	keys  map[string]struct{}
	order []string
}

const maxLogKeys = 8192

// add reports whether k is new, remembering it.
func (s *logSet) add(k string) bool {
	if s.keys == nil {
		s.keys = make(map[string]struct{})
	}
	if _, ok := s.keys[k]; ok {
		return false
	}
	s.keys[k] = struct{}{}
	s.order = append(s.order, k)
	if len(s.order) > maxLogKeys {
		delete(s.keys, s.order[0])
		s.order = s.order[1:]
	}
	return true
}

// Holdings lists the subscriptions sink holds, for a caller that must check them
// again (a tenant whose plan changed).
func (s *Subscriptions) Holdings(sink Sink) []Holding {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.roster.holdings(sink, func(g *subGroup) (string, []byte) { return g.gwID, g.params })
}
