package upstream

import (
	"errors"
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
)

// read is the connection's only reader: it routes each upstream message to the call
// that waits for it, or to the subscribers of a notification, before reading the next
// one, so the subscription an eth_subscribe answer creates is known before any
// notification that follows it on the socket.
func (s *slot) read(conn *wireConn) error {
	alive := s.m.cfg.PingInterval + s.m.cfg.PongTimeout
	met := s.m.metrics
	var buf []byte
	var msg proto.Message
	var extended, now time.Time
	var seen uint64
	// Any message proves the socket alive (pongs do too, see serve). Moving the deadline
	// is a timer update: done at most once a second, not once per message.
	alivePast := func() {
		if now.Sub(extended) >= time.Second {
			_ = conn.setReadDeadline(now.Add(alive))
			extended = now
		}
	}
	// What a message reserved from the answer budget is given back once it is routed
	// or dropped, and when the socket ends.
	defer conn.settle()
	for {
		var err error
		buf, err = conn.readMessage(buf)
		// The clock is read once per read syscall, not per message: the messages one
		// read brought arrived together (~15 per read under load).
		if n := *conn.reads; n != seen {
			seen, now = n, time.Now()
		}
		if tooLarge := errors.Is(err, errTooLarge); tooLarge || errors.Is(err, errNoRoom) {
			met.msgsIn.Inc()
			s.large.Add(1) // past the read limit or the budget's free 64 KiB
			refusal := proto.ErrAnswerBudget
			if tooLarge {
				met.oversized.Inc()
				refusal = proto.ErrResponseTooLarge
			}
			// Its call fails as soon as its id is read, before the rest is dropped.
			if buf, err = s.routeTooLarge(conn, buf, refusal); err != nil {
				return err
			}
			conn.settle()
			if err = conn.skipRest(); err != nil {
				return err
			}
			// The drop had its own read deadline: the keepalive's is set again.
			seen, now, extended = *conn.reads, time.Now(), time.Time{}
			alivePast()
			continue
		}
		if err != nil {
			return err
		}
		met.msgsIn.Inc()
		s.readLarge(len(buf))
		alivePast()
		if proto.FirstByte(buf) == '{' {
			s.routeOne(buf, &msg, now)
		} else {
			// The gateway sends single requests only: an array answers nothing it sent.
			met.invalid.Inc()
			s.m.cfg.Logger.Debug("upstream websocket: dropped a message that is not an object")
		}
		conn.settle()
		if cap(buf) > maxPooledBuf {
			buf = nil
		}
	}
}

// lookup claims the pending call registered under gid, or returns nil.
func (s *slot) lookup(gid uint64) *call {
	s.mu.Lock()
	c := s.pending[gid]
	if c == nil || c.claimed {
		s.mu.Unlock()
		return nil
	}
	s.claimLocked(c)
	s.mu.Unlock()
	return c
}

// routeOne handles one answer or notification object read at time at.
func (s *slot) routeOne(frame []byte, msg *proto.Message, at time.Time) {
	end, err := proto.ScanMessage(frame, msg)
	if err == nil && proto.SkipWS(frame, end) != len(frame) {
		err = proto.ErrSyntax // bytes after the object: not one answer, as over HTTP
	}
	if err == nil && msg.ID.Present() && !msg.OneOutcome() {
		err = proto.ErrSyntax // an answer with both or neither of result and error
	}
	if err != nil {
		// Not one JSON object, or not UTF-8: the call it answers, when its id comes
		// before the damage, fails now instead of at its deadline; the socket carries on.
		s.m.metrics.invalid.Inc()
		s.m.cfg.Logger.Debug("upstream websocket: dropped invalid JSON", "err", err)
		s.failByID(frame, proto.ErrBadUpstream)
		return
	}
	if msg.ID.Present() {
		s.answered.Add(1) // the upstream read something the gateway wrote (write's probe)
		if s.suspect.Load() {
			s.cleared()
		}
		gid, ok := proto.ParseDecimal(msg.ID.Bytes(frame))
		if !ok {
			// The gateway only sends bare decimal ids: anything else answers nothing it sent.
			s.m.metrics.invalid.Inc()
			s.m.cfg.Logger.Debug("upstream websocket: dropped an answer with a foreign id")
			return
		}
		c := s.lookup(gid)
		if c == nil {
			if gid == 0 || gid > s.m.ids.Load() {
				// An id the gateway has not issued: nothing it sent is answered.
				s.m.metrics.invalid.Inc()
				s.m.cfg.Logger.Debug("upstream websocket: dropped an answer with an id the gateway never sent")
			} else {
				s.answeredLate(gid, frame, msg) // mux_subs_late.go
			}
			return // timed out, swept or answered already
		}
		c.rpcError = msg.Error.Present()
		c.resp = proto.Splice(c.resp[:0], frame, msg.ID, c.id)
		c.at = at
		// Claimed here, so the deadline timer no longer sees it: recyclable.
		s.m.complete(c, nil, true)
		return
	}
	if msg.Subscription.Present() {
		s.m.notify(s, frame, msg)
	}
}

// routeTooLarge fails the call an oversized answer was for, found by the id in the
// message's first bytes, read only as far as needed. A notification that large is
// dropped (counted); the subscription goes on with the next one. A message whose first
// keepPrefix bytes name neither (an id written after a large result) returns
// errTooLargeUnowned: its call would wait for its deadline behind the drop, so the
// socket is given up and every call on it fails over at once.
func (s *slot) routeTooLarge(conn *wireConn, prefix []byte, refusal *proto.Error) ([]byte, error) {
	for {
		if proto.FirstMember(prefix, "id").Present() {
			if !s.failByID(prefix, refusal) {
				s.m.cfg.Logger.Debug("upstream websocket: skipped a message over the size limit with a foreign id")
			}
			return prefix, nil
		}
		if proto.FirstMember(prefix, "method").Present() {
			s.m.cfg.Logger.Warn("upstream websocket: skipped a notification over the size limit")
			return prefix, nil
		}
		var more bool
		var err error
		if prefix, more, err = conn.growPrefix(prefix); err != nil {
			return prefix, err
		}
		if !more {
			return prefix, conn.fail(closeMessageTooBig, errTooLargeUnowned)
		}
	}
}

// errTooLargeUnowned ends a socket that brought an oversized message naming no call.
var errTooLargeUnowned = errors.New("upstream websocket message over the size limit whose id comes past its first bytes")

// failByID fails with e the pending call named by the id member found in msg's first
// members, and reports whether msg named one.
func (s *slot) failByID(msg []byte, e *proto.Error) bool {
	span := proto.FirstMember(msg, "id")
	gid, ok := proto.ParseDecimal(span.Bytes(msg))
	if !span.Present() || !ok {
		return false
	}
	if c := s.lookup(gid); c != nil {
		s.m.complete(c, e, true)
	}
	return true
}
