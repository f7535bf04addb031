package upstream

import (
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
)

// read is the connection's only reader: it routes each upstream message to the call
// that waits for it, or to the subscribers of a notification, before reading the next
// one, so the subscription an eth_subscribe answer creates is known before any
// notification that follows it on the socket.
func (s *slot) read(conn *wireConn) error {
	alive := s.m.cfg.PingInterval + s.m.cfg.PongTimeout
	var buf []byte
	var msg proto.Message
	for {
		var err error
		if buf, err = conn.readMessage(buf); err != nil {
			return err
		}
		wsMessagesIn.Inc()
		_ = conn.setReadDeadline(time.Now().Add(alive))
		switch proto.FirstByte(buf) {
		case '{':
			s.routeOne(buf, &msg)
		case '[':
			s.routeBatch(buf, &msg)
		default:
			s.m.cfg.Logger.Debug("upstream websocket: dropped a message that is neither object nor array")
		}
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

// routeOne handles one answer or notification object.
func (s *slot) routeOne(frame []byte, msg *proto.Message) {
	if _, err := proto.ScanMessage(frame, msg); err != nil {
		s.m.cfg.Logger.Debug("upstream websocket: dropped invalid JSON", "err", err)
		return
	}
	if msg.ID.Present() {
		gid, ok := proto.ParseDecimal(msg.ID.Bytes(frame))
		if !ok {
			// Only an answer to something unparseable carries a foreign id (null); the
			// gateway never sends such requests.
			s.m.cfg.Logger.Debug("upstream websocket: dropped an answer with a foreign id")
			return
		}
		c := s.lookup(gid)
		if c == nil {
			return // timed out or swept already
		}
		keep := c.timer.Stop()
		if c.batch {
			// A batch answered with a lone object: take it as the answer to its element.
			c.seen[gid-c.base] = true
			c.resp = proto.Splice(c.resp, frame, msg.ID, c.id(int(gid-c.base)))
			c.resp = append(c.resp, ',')
			c.appendErrors(proto.ErrBadUpstream)
		} else {
			c.rpcError = msg.Error.Present()
			c.resp = proto.Splice(c.resp[:0], frame, msg.ID, c.id(0))
		}
		s.m.complete(c, nil, keep)
		return
	}
	if msg.Subscription.Present() {
		s.m.notify(s, frame, msg)
	}
}

// routeBatch handles an array of answers: elements are matched by id, in any order.
func (s *slot) routeBatch(frame []byte, msg *proto.Message) {
	it, err := proto.NewArrayIter(frame)
	if err != nil {
		return
	}
	var c *call
	for {
		el, ok, err := it.Next()
		if err != nil || !ok {
			break
		}
		e := el.Bytes(frame)
		if _, err := proto.ScanMessage(e, msg); err != nil || !msg.ID.Present() {
			continue
		}
		gid, ok := proto.ParseDecimal(msg.ID.Bytes(e))
		if !ok {
			continue
		}
		if c == nil || gid < c.base || gid >= c.base+uint64(c.n) {
			if c != nil {
				s.finishBatch(c)
			}
			if c = s.lookup(gid); c == nil {
				continue
			}
			if !c.batch {
				keep := c.timer.Stop()
				c.rpcError = msg.Error.Present()
				c.resp = proto.Splice(c.resp[:0], e, msg.ID, c.id(0))
				s.m.complete(c, nil, keep)
				c = nil
				continue
			}
		}
		i := int(gid - c.base)
		if c.seen[i] {
			continue
		}
		c.seen[i] = true
		c.resp = proto.Splice(c.resp, e, msg.ID, c.id(i))
		c.resp = append(c.resp, ',')
	}
	if c != nil {
		s.finishBatch(c)
	}
}

// finishBatch completes a claimed batch: elements the upstream did not answer get an error.
func (s *slot) finishBatch(c *call) {
	keep := c.timer.Stop()
	c.appendErrors(proto.ErrBadUpstream)
	s.m.complete(c, nil, keep)
}
