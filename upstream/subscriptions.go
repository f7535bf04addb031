package upstream

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
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

// deliveries is a group's queue of notifications, filled by its upstream socket's
// reader (never blocked: past maxQueued they are dropped and counted) and emptied by
// the group's goroutine. It holds memory for what it holds only: a channel of that
// capacity took 128 KiB per group up front, and a client's 128 distinct subscriptions
// 16 MiB (-max-subscriptions' 100,000: 12.8 GB).
type deliveries struct {
	mu    sync.Mutex
	q     []delivery
	ready chan struct{} // holds a token while q is not empty
}

// maxQueued bounds the notifications a group may have waiting (a block's logs).
const maxQueued = 4096

func (d *deliveries) push(x delivery) bool {
	d.mu.Lock()
	if len(d.q) >= maxQueued {
		d.mu.Unlock()
		return false
	}
	d.q = append(d.q, x)
	d.mu.Unlock()
	select {
	case d.ready <- struct{}{}:
	default:
	}
	return true
}

// take swaps the waiting deliveries for spare (emptied) and returns them.
func (d *deliveries) take(spare []delivery) []delivery {
	clear(spare)
	d.mu.Lock()
	q := d.q
	d.q = spare[:0]
	d.mu.Unlock()
	return q
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

	in      deliveries
	moveReq chan struct{}
	// holds counts the renewals of its upstream subscription under way
	// (subscriptions_hold.go): a logs group holds its live pushes meanwhile. renewReq
	// tells it that one ended: once none is left it delivers what it held, after the
	// logs it missed, queried from block renewFrom when backfill says so.
	holds     atomic.Int32
	renewReq  chan struct{}
	renewFrom atomic.Uint64
	backfill  atomic.Bool
	stop      chan struct{}
	done      chan struct{}

	carrier atomic.Pointer[Upstream] // up, for others to read

	// Owned by the group's goroutine.
	up       *Upstream
	unsub    func()
	gen      uint64
	last     uint64       // newHeads: the last number delivered
	hashes   *hashRing    // newHeads: hashes delivered, to tell a duplicate from a reorg (19 KiB: newHeads groups only)
	silence  *headSilence // newHeads of params of its own: is its upstream subscription silent (subscriptions_silent.go)
	coverTo  uint64       // logs: blocks up to this were covered by the previous upstream
	downs    uint64       // logs: u's socket losses known (Mux.downs; subscriptions_reconnect.go)
	held     []delivery   // logs: live pushes held while a renewal is under way
	heldSize int          // their bytes, at most maxHeldBytes
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
			holders: holders{members: map[Sink]int{}}, in: deliveries{ready: make(chan struct{}, 1)}, moveReq: make(chan struct{}, 1),
			renewReq: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
		if g.kind == kindNewHeads {
			g.hashes = new(hashRing)
		}
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

// Holdings lists the subscriptions sink holds, for a caller that must check them
// again (a tenant whose plan changed).
func (s *Subscriptions) Holdings(sink Sink) []Holding {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.roster.holdings(sink, func(g *subGroup) (string, []byte) { return g.gwID, g.params })
}
