package upstream

import (
	"math/bits"
	"net"
	"time"
)

// coarseConn is an upstream HTTP connection whose deadlines are set on a grid: fasthttp
// sets a read and a write deadline on every call (DoDeadline), and each set is a timer
// moved in the runtime's heap (runtime_pollSetDeadline, timer modify: a few % of the
// gateway's CPU at full load). A deadline is rounded up to the grain below 1/64 of the
// time left (a power of two, at most ~34 ms), so the calls a connection carries in one
// grain find their deadline already set: a call may outlive its deadline by at most
// 1/64 of its timeout and 34 ms, never end before it.
//
// fasthttp uses a client connection from one goroutine at a time: the fields need no
// lock.
type coarseConn struct {
	net.Conn
	read, write int64 // the deadline set now (unix ns on the grid), 0: none
}

// maxGrainShift bounds the grain: 2^25 ns ≈ 34 ms.
const maxGrainShift = 25

func (c *coarseConn) SetReadDeadline(t time.Time) error {
	return c.set(&c.read, t, c.Conn.SetReadDeadline)
}

func (c *coarseConn) SetWriteDeadline(t time.Time) error {
	return c.set(&c.write, t, c.Conn.SetWriteDeadline)
}

func (c *coarseConn) SetDeadline(t time.Time) error {
	c.read, c.write = 0, 0
	return c.Conn.SetDeadline(t)
}

func (c *coarseConn) set(cur *int64, t time.Time, set func(time.Time) error) error {
	if t.IsZero() {
		if *cur == 0 {
			return nil
		}
		*cur = 0
		return set(t)
	}
	left := time.Until(t) / 64
	if left <= 0 {
		*cur = 0
		return set(t) // due now: exactly as asked
	}
	shift := min(bits.Len64(uint64(left))-1, maxGrainShift)
	grain := int64(1) << shift
	ns := t.UnixNano()
	r := (ns + grain - 1) &^ (grain - 1)
	if r == *cur {
		return nil
	}
	if err := set(t.Add(time.Duration(r - ns))); err != nil {
		*cur = 0
		return err
	}
	*cur = r
	return nil
}
