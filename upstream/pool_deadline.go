package upstream

import (
	"crypto/tls"
	"math/bits"
	"net"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"
)

// coarseConn is an upstream HTTP connection whose deadlines are set on a grid: every
// call sets its deadline (callTransport; fasthttp's own transport sets a read and a
// write deadline), and each set is a timer moved in the runtime's heap
// (runtime_pollSetDeadline, timer modify: a few % of the gateway's CPU at full load). A
// deadline is rounded up to the grain below 1/64 of the time left (a power of two, at
// most ~34 ms), so the calls a connection carries in one grain find their deadline
// already set: a call may outlive its deadline by at most 1/64 of its timeout and
// 34 ms, never end before it.
//
// fasthttp uses a client connection from one goroutine at a time: the fields need no
// lock.
type coarseConn struct {
	net.Conn
	read, write int64 // the deadline set now (unix ns on the grid), 0: none
	// While an answer is read (meter), every read reserves its bytes from answers, and
	// the body its header declares is reserved before it is read (expect): got is the
	// bytes read so far, held what this answer reserved (at least got), refused says
	// the budget refused it.
	answers   *AnswerBudget
	got, held int64
	refused   bool
}

// Read reserves what it reads from the answer budget while an answer is metered: the
// bytes are counted as they arrive, whatever the answer's framing (Content-Length,
// chunked, until close) and under TLS too (its records are read from here). A refused
// read returns errAnswerBudget, and the connection is closed by callTransport.
func (c *coarseConn) Read(p []byte) (int, error) {
	if c.refused {
		return 0, errAnswerBudget
	}
	n, err := c.Conn.Read(p)
	if c.answers != nil && n > 0 {
		c.got += int64(n)
		if !c.reserve(c.got) {
			return 0, errAnswerBudget
		}
	}
	return n, err
}

// expect reserves the body of length bytes an answer's header declares, on top of what
// was read: fasthttp allocates a declared body's buffer whole before reading it, so a
// hostile upstream declaring -max-response-body and sending nothing would otherwise
// hold that much per call outside the budget. False: refused, nothing more reserved.
func (c *coarseConn) expect(length int) bool {
	return c.answers == nil || c.reserve(c.got+int64(length))
}

// reserve makes what the answer holds at least total bytes.
func (c *coarseConn) reserve(total int64) bool {
	if total <= c.held {
		return true
	}
	if !c.answers.grow(c.held, total-c.held, TransportHTTP) {
		c.refused = true
		return false
	}
	c.held = total
	return true
}

// meter starts counting an answer's reads against answers (nil: none).
func (c *coarseConn) meter(answers *AnswerBudget) {
	c.answers, c.got, c.held, c.refused = answers, 0, 0, false
}

// unmeter ends the count: the bytes reserved, which the caller now owns, and whether
// the budget refused the answer.
func (c *coarseConn) unmeter() (held int64, refused bool) {
	held, refused = reserved(c.held), c.refused
	c.answers, c.got, c.held, c.refused = nil, 0, 0, false
	return held, refused
}

// maxGrainShift bounds the grain: 2^25 ns ≈ 34 ms.
const maxGrainShift = 25

// onGrid is t rounded up to the grain of a call with left to go (the largest power of
// two below left/64, at most 2^maxGrainShift ns), and its unix ns; false when left/64
// is nothing: the deadline is due now and is set exactly.
func onGrid(t time.Time, left time.Duration) (time.Time, int64, bool) {
	g := left / 64
	if g <= 0 {
		return t, 0, false
	}
	ns := t.UnixNano()
	r := roundUp(ns, int64(1)<<min(bits.Len64(uint64(g))-1, maxGrainShift))
	return t.Add(time.Duration(r - ns)), r, true
}

// roundUp is ns rounded up to a multiple of grain, a power of two.
func roundUp(ns, grain int64) int64 { return (ns + grain - 1) &^ (grain - 1) }

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

// setCall sets both deadlines to t on the grid of left, the time the call had when it
// started (so no clock is read here): one runtime call, made only when the rounded
// deadline moves.
func (c *coarseConn) setCall(t time.Time, left time.Duration) error {
	at, r, ok := onGrid(t, left)
	if !ok {
		c.read, c.write = 0, 0
		return c.Conn.SetDeadline(t)
	}
	if r == c.read && r == c.write {
		return nil
	}
	if err := c.Conn.SetDeadline(at); err != nil {
		c.read, c.write = 0, 0
		return err
	}
	c.read, c.write = r, r
	return nil
}

// set sets one deadline (cur: the one set now) on the grid of the time left until t.
func (c *coarseConn) set(cur *int64, t time.Time, set func(time.Time) error) error {
	if t.IsZero() {
		if *cur == 0 {
			return nil
		}
		*cur = 0
		return set(t)
	}
	at, r, ok := onGrid(t, time.Until(t))
	if !ok {
		*cur = 0
		return set(t)
	}
	if r == *cur {
		return nil
	}
	if err := set(at); err != nil {
		*cur = 0
		return err
	}
	*cur = r
	return nil
}

// callTransport is the pool's fasthttp transport: fasthttp's own exchange (a kept-alive
// connection, the request written, the answer read, the connection kept or closed as
// fasthttp decides it) with the call's deadline set from what the call already knows.
// Through DoDeadline, fasthttp reads the clock five times a call to derive its deadlines
// (time.Until, then time.Now in Do and again in its transport, and twice more in
// coarseConn to round them), ~50 ns each on a VM's kvm-clock; the pool's calls carry
// their deadline and the time they had when they started (upRequest), and fasthttp's
// Do, given no timeout, reads none of them.
//
// Only the pool's own requests reach it (Pool.exchange is the HostClient's one caller):
// req is the first field of an upRequest.
type callTransport struct{}

// upRequest must start with its fasthttp.Request for callTransport to find it.
var _ [0]struct{} = [unsafe.Offsetof(upRequest{}.Request)]struct{}{}

func (callTransport) RoundTrip(hc *fasthttp.HostClient, req *fasthttp.Request, resp *fasthttp.Response) (bool, error) {
	ur := (*upRequest)(unsafe.Pointer(req))
	cc, err := hc.AcquireConn(ur.left, false)
	if err != nil {
		return false, err
	}
	conn := cc.Conn()
	if err := setCallDeadline(conn, ur.deadline, ur.left); err != nil {
		hc.CloseConn(cc)
		return true, err
	}
	bw := hc.AcquireWriter(conn)
	err = req.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	hc.ReleaseWriter(bw)
	if x, ok := err.(interface{ Timeout() bool }); ok && x.Timeout() {
		err = fasthttp.ErrTimeout // as fasthttp's transport says it
	}
	if err != nil {
		hc.CloseConn(cc)
		return true, err
	}
	pc := coarseOf(conn)
	if pc != nil {
		pc.meter(ur.answers)
	}
	br := hc.AcquireReader(conn)
	err = readAnswer(resp, br, hc.MaxResponseBodySize, pc)
	hc.ReleaseReader(br)
	if pc != nil {
		held, refused := pc.unmeter()
		ur.held += held
		if refused {
			// The rest of the answer is unread: the connection cannot carry another.
			hc.CloseConn(cc)
			return false, errAnswerBudget
		}
	}
	if err != nil {
		hc.CloseConn(cc)
		return err != fasthttp.ErrBodyTooLarge, err
	}
	if req.ConnectionClose() || resp.ConnectionClose() {
		hc.CloseConn(cc)
	} else {
		hc.ReleaseConn(cc)
	}
	return false, nil
}

// setCallDeadline sets conn's deadline for a call due at deadline that had left when
// it started: on the grid when conn is the pool's (also under TLS, whose deadlines are
// its connection's), exactly otherwise.
func setCallDeadline(conn net.Conn, deadline time.Time, left time.Duration) error {
	c := coarseOf(conn)
	if c == nil {
		return conn.SetDeadline(deadline)
	}
	return c.setCall(deadline, left)
}

// coarseOf is the pool's own connection under conn (also under TLS), nil for another.
func coarseOf(conn net.Conn) *coarseConn {
	c, ok := conn.(*coarseConn)
	if !ok {
		if t, isTLS := conn.(*tls.Conn); isTLS {
			c, _ = t.NetConn().(*coarseConn)
		}
	}
	return c
}
