package clientip

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Reason says which bound refused a connection.
type Reason int

const (
	// OverTotal: Limits.Total connections were open.
	OverTotal Reason = iota
	// OverPerIP: Limits.PerIP connections from the client's address were open.
	OverPerIP
)

// Limits bounds the connections a listener keeps open. Without a bound, one client
// holding idle connections (about 16 KiB each, renewed every read timeout) takes every
// file descriptor: other clients and the process's own upstream dials are locked out,
// or, where descriptors are plentiful, the pod runs out of memory.
type Limits struct {
	// Total is the most connections open at once; 0: no bound.
	Total int
	// PerIP is the most connections open at once from one client address; 0: no bound.
	// The address is the connection's RemoteAddr: a trusted proxy's PROXY header
	// source when the inner listener is a Listener, else the TCP peer. Connections
	// of a proxy that sends no header (X-Forwarded-For) count under its own address.
	PerIP int
	// Refusals[r] is written to a connection refused for r before it is closed: an
	// answer the client can read (an HTTP 503), not a reset.
	Refusals [2][]byte
	// Refused, when set, is called for each refusal.
	Refused func(Reason)
}

// refusalTimeout bounds the write of a refusal and the reading of what the client sent
// before it (read so that closing sends a FIN the client reads after the answer, not a
// reset that can discard it).
const refusalTimeout = time.Second

// maxRefusing bounds the goroutines answering refusals from Accept: past it a refused
// connection is closed unanswered, so a flood of connections costs at most this many
// descriptors and goroutines beyond Total, each for at most refusalTimeout.
const maxRefusing = 64

// Limiter counts open connections; see Limits. The listeners it wraps share its counts.
type Limiter struct {
	cfg      Limits
	open     atomic.Int64
	refusing atomic.Int32

	mu   sync.Mutex
	byIP map[netip.Addr]int
}

// NewLimiter returns a Limiter with no connection open.
func NewLimiter(cfg Limits) *Limiter {
	return &Limiter{cfg: cfg, byIP: map[netip.Addr]int{}}
}

// Open is the number of connections open now.
func (l *Limiter) Open() int64 { return l.open.Load() }

// Limit is the Total bound (0: none).
func (l *Limiter) Limit() int { return l.cfg.Total }

// Addresses is the number of client addresses counted now (PerIP set).
func (l *Limiter) Addresses() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.byIP)
}

// OpenFrom is the number of connections counted under a now (PerIP set): its /64's
// for IPv6.
func (l *Limiter) OpenFrom(a netip.Addr) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.byIP[Key(a)]
}

// Listen wraps inner: its Accept refuses a connection past a bound (answering it from a
// goroutine of its own, never in the accept loop) and goes on to the next; the
// connections it returns release their count when closed, whoever closes them (a
// hijacked websocket's own Close included).
func (l *Limiter) Listen(inner net.Listener) net.Listener {
	return &limitListener{Listener: inner, l: l}
}

type limitListener struct {
	net.Listener
	l *Limiter
}

func (ll *limitListener) Accept() (net.Conn, error) {
	l := ll.l
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if n := l.open.Add(1); l.cfg.Total > 0 && n > int64(l.cfg.Total) {
			l.open.Add(-1)
			l.refuseAsync(c, OverTotal)
			continue
		}
		lc := &limitedConn{Conn: c, l: l}
		if l.cfg.PerIP > 0 {
			if _, proxied := c.(*conn); proxied {
				// Its address is in a PROXY header not read yet: the first Read (in the
				// goroutine serving it) reads it and counts, so Accept never waits on it.
				lc.pending = true
			} else if lc.addr = addrOf(c.RemoteAddr()); !l.take(lc.addr) {
				l.open.Add(-1)
				l.refuseAsync(c, OverPerIP)
				continue
			} else {
				lc.counted.Store(true)
			}
		}
		return lc, nil
	}
}

// take counts a connection from a unless PerIP of them are open.
func (l *Limiter) take(a netip.Addr) bool {
	a = Key(a)
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.byIP[a]
	if n >= l.cfg.PerIP {
		return false
	}
	l.byIP[a] = n + 1
	return true
}

func (l *Limiter) untake(a netip.Addr) {
	a = Key(a)
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := l.byIP[a] - 1; n > 0 {
		l.byIP[a] = n
	} else {
		delete(l.byIP, a)
	}
}

// refuseAsync answers and closes c, refused at Accept, on a goroutine (at most
// maxRefusing of them; past that c is closed unanswered).
func (l *Limiter) refuseAsync(c net.Conn, r Reason) {
	if l.cfg.Refused != nil {
		l.cfg.Refused(r)
	}
	if l.refusing.Add(1) > maxRefusing {
		l.refusing.Add(-1)
		_ = c.Close()
		return
	}
	go func() {
		defer l.refusing.Add(-1)
		l.answer(c, r)
		_ = c.Close()
	}()
}

// answer writes the refusal, half-closes and reads what the client sent until it
// closes too, all within refusalTimeout.
func (l *Limiter) answer(c net.Conn, r Reason) {
	_ = c.SetDeadline(time.Now().Add(refusalTimeout))
	if _, err := c.Write(l.cfg.Refusals[r]); err != nil {
		return
	}
	if cw, ok := c.(interface{ CloseWrite() error }); !ok || cw.CloseWrite() != nil {
		return
	}
	var b [512]byte
	for {
		if _, err := c.Read(b[:]); err != nil {
			return
		}
	}
}

// limitedConn releases its count on Close.
type limitedConn struct {
	net.Conn
	l       *Limiter
	addr    netip.Addr
	pending bool        // PerIP not checked yet: the address comes with the PROXY header
	counted atomic.Bool // addr is counted under PerIP; whoever clears it releases it
	closed  atomic.Bool
}

func (c *limitedConn) Read(p []byte) (int, error) {
	if c.pending {
		if err := c.checkPerIP(); err != nil {
			return 0, err
		}
	}
	return c.Conn.Read(p)
}

// checkPerIP counts a proxied connection under the address its header gave, or
// answers it refused and reports io.EOF (the server then closes it quietly).
func (c *limitedConn) checkPerIP() error {
	c.pending = false
	a := addrOf(c.Conn.RemoteAddr()) // reads the header; on failure Read reports it
	if c.l.take(a) {
		c.addr = a
		c.counted.Store(true)
		// A Close that ran meanwhile (a shutdown) saw nothing counted: release it here.
		if c.closed.Load() && c.counted.CompareAndSwap(true, false) {
			c.l.untake(a)
		}
		return nil
	}
	if c.l.cfg.Refused != nil {
		c.l.cfg.Refused(OverPerIP)
	}
	c.l.answer(c.Conn, OverPerIP)
	return io.EOF
}

func (c *limitedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		if c.counted.CompareAndSwap(true, false) {
			c.l.untake(c.addr)
		}
		c.l.open.Add(-1)
	}
	return c.Conn.Close()
}

// CloseWrite half-closes when the connection it wraps can (the websocket's goodbye).
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}
