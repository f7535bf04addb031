package upstream

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
)

// slot is one shared upstream socket and its reconnect loop. The supervisor goroutine
// (run) dials, then is the socket's only writer; a reader goroutine per connection is
// the only reader. mu guards up and pending; the queue is a channel the writer drains.
type slot struct {
	m   *Mux
	idx int
	out chan *call

	mu      sync.Mutex
	up      bool
	pending map[uint64]*call
	isUp    atomic.Bool // mirror of up for lock-free picking

	// One deadline timer per socket, not per call: resetting and stopping a runtime
	// timer on every call cost more than the rest of the Mux's bookkeeping. It is armed
	// for the earliest deadline among the pending calls (armed, monoNs; 0: not armed)
	// and moved only when a call due earlier is registered; when it fires, expire
	// fails what is due and arms it for the next. Under mu.
	timer *time.Timer
	armed int64
	// late holds the gateway ids of eth_subscribe calls that timed out (mux_subs_late.go;
	// nil: none). Under mu.
	late map[uint64]struct{}

	// subs maps the upstream subscription id (raw JSON string) to its group;
	// guarded by m.subs.mu, written only by this socket's reader and by Leave.
	subs map[string]*group

	// probe asks the writer to ping the socket now: a call on it timed out (expire:
	// true), or on a sibling (false).
	// answered counts the pongs and answers read (not notifications): what proves the
	// upstream still reads what the gateway writes.
	probe    chan bool
	answered atomic.Uint64
	// pingAt is when the oldest ping still unanswered went out (monoNs; 0: none); rtt
	// the round trip its pong measured (ns; at first the upgrade's): a probe
	// waits at least three of them, so a live socket on a long route is not declared
	// stalled for a pong still on its way. large counts the large messages read
	// (mux_probe.go), largeAtPing their count when pingAt was set: a pong read after
	// one measures its transfer, not the round trip, and is not taken.
	pingAt, rtt        atomic.Int64
	large, largeAtPing atomic.Uint64
	// suspect: a probe is on and nothing came back since it began (Mux.suspects).
	suspect atomic.Bool
}

func newSlot(m *Mux, idx int) *slot {
	s := &slot{m: m, idx: idx, out: make(chan *call, m.cfg.QueueSize), probe: make(chan bool, 1),
		pending: make(map[uint64]*call), subs: make(map[string]*group)}
	s.timer = time.AfterFunc(time.Hour, s.expire)
	s.timer.Stop()
	return s
}

// monoEpoch anchors monoNs: call deadlines are kept as nanoseconds on the monotonic
// clock, cheap to compare under the slot's lock.
var monoEpoch = time.Now()

func monoNs(t time.Time) int64 { return int64(t.Sub(monoEpoch)) }

// register is registerAt with a deadline d from now.
func (s *slot) register(c *call, d time.Duration) *proto.Error {
	return s.registerAt(c, time.Now().Add(d))
}

// registerAt adds c to the pending map, arms its deadline dl and queues it, all under
// mu so a connection loss sweeps either everything of c or nothing.
func (s *slot) registerAt(c *call, dl time.Time) *proto.Error {
	met := s.m.metrics
	s.mu.Lock()
	if !s.up {
		s.mu.Unlock()
		return proto.ErrUnreachable
	}
	s.pending[c.gid] = c
	select {
	case s.out <- c:
	default:
		delete(s.pending, c.gid)
		s.mu.Unlock()
		return proto.ErrOverloaded
	}
	met.queueDepth.Add(1)
	// Still under mu: neither the reader nor a sweep can complete c before this.
	c.slot = s
	met.pending.Add(1)
	s.armLocked(c, dl)
	s.mu.Unlock()
	return nil
}

// armLocked records c's deadline and moves the slot's timer when c is due first. The
// caller holds mu and has put c in pending.
func (s *slot) armLocked(c *call, dl time.Time) {
	c.deadline = monoNs(dl)
	if s.armed == 0 || c.deadline < s.armed {
		s.armed = c.deadline
		s.timer.Reset(time.Until(dl))
	}
}

// expire runs when the slot's timer fires (on its own goroutine): it fails every
// pending call whose deadline has come with ErrTimeout and arms the timer for the
// earliest deadline left. The timer is armed for a call's deadline but not moved when
// that call is answered, so most firings find nothing due: one pass over pending per
// request timeout or so, never per call.
func (s *slot) expire() {
	now := monoNs(time.Now())
	var failed []*call
	s.mu.Lock()
	next := int64(0)
	for _, c := range s.pending {
		switch {
		case c.deadline <= now:
			s.claimLocked(c)
			if c.kind == kindSub {
				s.lateLocked(c.gid) // the node may still answer it
			}
			failed = append(failed, c)
		case next == 0 || c.deadline < next:
			next = c.deadline
		}
	}
	s.armed = next
	if next != 0 {
		s.timer.Reset(time.Duration(next - now))
	}
	s.mu.Unlock()
	for _, c := range failed {
		// The writer may still hold the call in its queue: never recycle it.
		s.m.complete(c, proto.ErrTimeout, false)
	}
	if len(failed) > 0 {
		select { // a slow node answers the ping; a dead socket does not (write)
		case s.probe <- true: // a timeout of its own: the siblings are probed with it
		default: // a probe is asked for already
		}
	}
}

// claimLocked takes c out of the pending map; the caller holds mu and then owns c.
func (s *slot) claimLocked(c *call) {
	c.claimed = true
	delete(s.pending, c.gid)
	s.m.metrics.pending.Add(-1)
}

// serve runs one connection: starts its reader, writes queued frames and pings until
// either side fails, then tears it down and answers whatever was pending. wait is
// closedBy's: how long the provider asked the gateway to stay away, 0 if it did not.
func (s *slot) serve(conn *wireConn) (wait time.Duration, _ error) {
	cfg := &s.m.cfg
	readerDone := make(chan error, 1)
	alive := cfg.PingInterval + cfg.PongTimeout
	_ = conn.setReadDeadline(time.Now().Add(alive))
	conn.onPong = func() {
		s.answered.Add(1)
		s.cleared()
		now := time.Now()
		if at := s.pingAt.Swap(0); at != 0 && s.large.Load() == s.largeAtPing.Load() {
			s.rtt.Store(monoNs(now) - at)
		}
		_ = conn.setReadDeadline(now.Add(alive))
	}
	go func() { readerDone <- s.read(conn) }()

	s.mu.Lock()
	s.up = true
	s.mu.Unlock()
	if err := s.proveChain(conn, readerDone); err != nil {
		// Never up for callers: only what proveChain sent is answered.
		_ = conn.close()
		<-readerDone
		wait = s.m.closedBy(err) // a provider closing the socket before it proved its chain
		s.sweep()
		return wait, err
	}
	s.isUp.Store(true)
	s.m.connUp()
	s.m.resubscribe(s)
	if cfg.OnUp != nil {
		cfg.OnUp()
	}

	err := s.write(conn, readerDone)

	s.isUp.Store(false)
	_ = conn.close()
	rerr := <-readerDone
	if err == nil {
		err = rerr
	}
	// Before the pending calls fail: their retries already avoid an upstream that
	// closed the socket for its rate or quota.
	wait = s.m.closedBy(rerr)
	s.m.connDown()
	s.sweep()
	s.m.subsDown(s)
	return wait, err
}

// errClosed ends serve when the Mux closes.
var errClosed = errors.New("mux closed")

// errStalled ends serve when a call timed out and a ping then brought neither its pong
// nor an answer within ProbeTimeout, with no message being read: the socket is
// half-open (both ways, or the gateway's way only), or the upstream hangs.
var errStalled = errors.New("upstream socket stalled: a call timed out and a ping got no pong or answer back")

// write is the socket's writer loop. Each wake-up drains every queued frame into one
// buffered write and one flush.
func (s *slot) write(conn *wireConn, readerDone chan error) error {
	cfg := &s.m.cfg
	met := s.m.metrics
	mc := conn.mc
	ping := time.NewTicker(cfg.PingInterval)
	defer ping.Stop()
	// A probe in progress: its timer's channel (nil: none) and the answers read before it.
	probe := time.NewTimer(time.Hour)
	probe.Stop()
	defer probe.Stop()
	var probing <-chan time.Time
	var probeAnswered uint64
	defer s.cleared()
	for {
		select {
		case c := <-s.out:
			if len(s.out) == 0 {
				// Let callers that are about to queue do so: one flush then carries
				// their frames too (fewer syscalls under load, nothing lost when idle).
				runtime.Gosched()
			}
			mc.hold()
			frames := 0
			for {
				frames++
				if mc.appendFrame(c.req) >= maxBurstBytes {
					break
				}
				select {
				case c = <-s.out:
					continue
				default:
				}
				break
			}
			// Once per burst, not per frame: the gauge is shared by every caller.
			met.queueDepth.Add(-int64(frames))
			err := mc.flush(callNow().Add(cfg.WriteTimeout))
			met.frames.Add(frames)
			met.msgsOut.Add(frames)
			if err != nil {
				return fmt.Errorf("cannot write upstream: %w", err)
			}
		case <-ping.C:
			if err := s.ping(conn); err != nil {
				return err
			}
		case own := <-s.probe:
			if probing != nil {
				continue
			}
			if own {
				// The route may be dead for every socket of the upstream (a load balancer
				// that forgot its connections): all are probed now and conclude together,
				// so the subscriptions of one found stalled do not move to a sibling that
				// is found so only a probe later.
				s.m.probeSiblings(s)
			}
			// Counted before the ping: its pong, or any answer after it, proves the
			// upstream reads the socket. Notifications do not: a route dead one way
			// still brings them.
			probeAnswered = s.answered.Load()
			s.suspected()
			if err := s.ping(conn); err != nil {
				return err
			}
			probe.Reset(s.probeWindow())
			probing = probe.C
		case <-probing:
			if s.answered.Load() == probeAnswered && conn.busy.Load() {
				// A message is on its way (a large answer on a slow link, the pong behind
				// it): its end decides, or the keepalive.
				probe.Reset(s.probeWindow())
				continue
			}
			probing = nil
			s.cleared()
			stalled := s.answered.Load() == probeAnswered
			if stalled {
				met.stalled.Inc()
			}
			if s.m.probed != nil {
				s.m.probed(stalled) // counted first: the tests read the counter then
			}
			if stalled {
				return errStalled
			}
		case err := <-readerDone:
			readerDone <- err // serve reads it again
			return nil
		case <-s.m.ctx.Done():
			_ = conn.writeClose(closeGoingAway)
			return errClosed
		}
	}
}

// maxBurstBytes ends a burst early so one flush never buffers without bound.
const maxBurstBytes = 1 << 20

// sweep runs after the connection and its reader ended: it drops the queue and answers
// every pending call with ErrUnavailable.
func (s *slot) sweep() {
	var failed []*call
	s.mu.Lock()
	s.up = false
	for drained := false; !drained; {
		select {
		case <-s.out:
			s.m.metrics.queueDepth.Add(-1)
		default:
			drained = true
		}
	}
	for _, c := range s.pending {
		if !c.claimed {
			s.claimLocked(c)
			failed = append(failed, c)
		}
	}
	s.armed = 0
	s.timer.Stop()
	s.late = nil // the node's subscriptions end with the socket
	s.mu.Unlock()
	for _, c := range failed {
		// The writer (us) no longer holds c, nor can expire (it takes only what is
		// pending): recyclable.
		s.m.complete(c, proto.ErrUnavailable, true)
	}
}

// countingConn counts read and write syscalls on the TCP connection. n counts the
// reads of this connection alone, for its reader (no atomic: the dialer, then the
// reader, are its only readers, one after the other).
type countingConn struct {
	net.Conn
	m *Metrics
	n *uint64
}

func (c countingConn) Read(p []byte) (int, error) {
	c.m.reads.Inc()
	*c.n++
	return c.Conn.Read(p)
}

func (c countingConn) Write(p []byte) (int, error) {
	c.m.writes.Inc()
	return c.Conn.Write(p)
}

// meteredConn holds writes while the writer drains a burst, so the whole burst leaves
// in one write. Control frames written by other goroutines (pongs) pass straight
// through when no burst is being held. Frames never interleave: every frame is
// appended or written whole under mu.
type meteredConn struct {
	net.Conn
	mu      sync.Mutex
	holding bool
	buf     []byte
	wdl     int64 // the write deadline a burst set (unix ns on the grid), 0: another or none
}

// burstGrain is the grid bursts' write deadlines are rounded up to (~17 ms): a socket
// writing bursts back to back sets its deadline (a clock read and a timer moved in the
// runtime) once per grain rather than once per burst, and a write may outlast its
// WriteTimeout by at most the grain.
const burstGrain = int64(1) << 24

func (c *meteredConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.holding {
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// writeNow writes one whole frame from any goroutine: into the held burst if the
// writer is draining one, else straight to the connection with deadline d.
func (c *meteredConn) writeNow(frame []byte, d time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.holding {
		c.buf = append(c.buf, frame...)
		return nil
	}
	c.wdl = 0 // a control frame's own deadline: the next burst sets its own again
	_ = c.Conn.SetWriteDeadline(d)
	_, err := c.Conn.Write(frame)
	return err
}

func randUint32() uint32 { return rand.Uint32() }

// appendFrame appends payload as one masked client text frame (RFC 6455 5.2) to the
// held burst and returns the burst's length. Frames are built here rather than through the websocket library's
// a burst costs no allocation; control frames other goroutines write (pongs, close) go
// through writeNow under the same lock, so frames never interleave.
func (c *meteredConn) appendFrame(payload []byte) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := append(c.buf, 0x81) // FIN, text
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	key := rand.Uint32()
	b = binary.LittleEndian.AppendUint32(b, key)
	start := len(b)
	b = append(b, payload...)
	maskBytes(b[start:], key)
	c.buf = b
	return len(b)
}

// maskBytes XORs b with the 4-byte key (little-endian order of key), a word at a time.
func maskBytes(b []byte, key uint32) {
	k8 := uint64(key) | uint64(key)<<32
	for len(b) >= 8 {
		binary.LittleEndian.PutUint64(b, binary.LittleEndian.Uint64(b)^k8)
		b = b[8:]
	}
	for i := range b {
		b[i] ^= byte(key >> (8 * (i & 3)))
	}
}

func (c *meteredConn) hold() {
	c.mu.Lock()
	c.holding = true
	c.mu.Unlock()
}

// flush writes what was held in one write with deadline d (on the burst grid: never
// earlier, at most burstGrain later), and stops holding.
func (c *meteredConn) flush(d time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.holding = false
	if len(c.buf) == 0 {
		return nil
	}
	if ns := d.UnixNano(); ns > c.wdl || c.wdl-ns > burstGrain {
		r := roundUp(ns, burstGrain)
		_ = c.Conn.SetWriteDeadline(d.Add(time.Duration(r - ns)))
		c.wdl = r
	}
	_, err := c.Conn.Write(c.buf)
	if cap(c.buf) > maxPooledBuf {
		c.buf = nil
	} else {
		c.buf = c.buf[:0]
	}
	return err
}

// proveChain asks the new connection's eth_chainId (MuxConfig.ChainID) before anything
// else may use it: the frame is written here, the supervisor being the only writer, and
// the reader routes the answer. It returns an error wrapping errWrongChain or
// errChainUnproven when the socket must not be used, or the connection's failure.
func (s *slot) proveChain(conn *wireConn, readerDone chan error) error {
	cfg := &s.m.cfg
	want := cfg.ChainID
	if want == 0 {
		return nil
	}
	var req proto.Request
	req.Set(methodChainID, nil)
	c := getCall(kindSync)
	c.prepare(&req, gatewayID1, s.m.nextID())
	s.mu.Lock()
	s.pending[c.gid] = c
	c.slot = s
	s.m.metrics.pending.Add(1)
	s.armLocked(c, time.Now().Add(cfg.RequestTimeout))
	s.mu.Unlock()
	conn.mc.hold()
	conn.mc.appendFrame(c.req)
	if err := conn.mc.flush(time.Now().Add(cfg.WriteTimeout)); err != nil {
		return fmt.Errorf("cannot write upstream: %w", err) // c is pending: the sweep answers it
	}
	s.m.metrics.frames.Inc()
	s.m.metrics.msgsOut.Inc()
	select {
	case <-c.done:
	case err := <-readerDone:
		readerDone <- err // serve reads it again
		return err
	case <-s.m.ctx.Done():
		return errClosed
	}
	var got uint64
	var err error
	if c.err != nil {
		err = fmt.Errorf("%w: %w", errChainUnproven, c.err)
	} else if got, err = parseChainID(c.resp); err != nil {
		err = fmt.Errorf("%w: %w", errChainUnproven, err)
	}
	if c.keep {
		putCall(c)
	}
	if cfg.OnChainID != nil {
		cfg.OnChainID(got, err)
	}
	switch {
	case err != nil:
		return err
	case got != want:
		return fmt.Errorf("%w: chain id %d, want %d", errWrongChain, got, want)
	}
	return nil
}
