package clientip

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ListenerConfig configures a PROXY protocol listener.
type ListenerConfig struct {
	// Trusted lists the sources (load balancers) whose PROXY headers are believed. Empty:
	// nobody's (the listener then only passes connections through).
	Trusted []netip.Prefix
	// Shared, when set, replaces Trusted: each Accept reads the trusted list of the
	// Resolver it points to, so the X-Forwarded-For resolver and the listener use one
	// list, and a reload that swaps the Resolver changes both (connections accepted
	// before keep the decision taken at their Accept).
	Shared *atomic.Pointer[Resolver]
	// Required refuses (closes at once) every connection that does not come from a
	// trusted source with a PROXY header, for a gateway reachable only through its load
	// balancer. Off (the default): connections from untrusted sources are served as they
	// are, their bytes untouched (a PROXY header from them is application data, so an HTTP
	// server answers 400), and trusted sources may send a header or not.
	Required bool
	// HeaderTimeout bounds the wait for a trusted source's header; default 3s. The header
	// is read by the connection's first Read or RemoteAddr, in the goroutine that serves
	// the connection, never in Accept: a silent peer holds only its own connection.
	HeaderTimeout time.Duration
}

// ParsePrefixes parses CIDRs ("10.0.0.0/8") and single addresses ("10.1.2.3").
func ParsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if strings.Contains(s, "/") {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("clientip: bad trusted prefix %q: %w", s, err)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("clientip: bad trusted address %q: %w", s, err)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

func trusted(list []netip.Prefix, a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range list {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ErrHeaderRequired is what a connection's Read returns when a trusted source sent no
// header and the listener requires one.
var ErrHeaderRequired = errors.New("clientip: PROXY protocol header required")

// Listener wraps a net.Listener; see ListenerConfig.
type Listener struct {
	net.Listener
	cfg ListenerConfig

	// Refused counts connections closed by Required at Accept.
	Refused atomic.Uint64
}

// NewListener wraps inner.
func NewListener(inner net.Listener, cfg ListenerConfig) (*Listener, error) {
	if cfg.HeaderTimeout <= 0 {
		cfg.HeaderTimeout = 3 * time.Second
	}
	if cfg.Required && len(cfg.Trusted) == 0 && cfg.Shared == nil {
		return nil, errors.New("clientip: a listener that requires PROXY headers needs trusted sources")
	}
	return &Listener{Listener: inner, cfg: cfg}, nil
}

// trusts reports whether peer may send a PROXY header.
func (l *Listener) trusts(peer netip.Addr) bool {
	if l.cfg.Shared != nil {
		r := l.cfg.Shared.Load()
		return r != nil && r.Trusted(peer)
	}
	return trusted(l.cfg.Trusted, peer)
}

// Accept returns the next connection: as it is from an untrusted source, wrapped (the
// header read on first use) from a trusted one. With Required, connections from untrusted
// sources are closed here and Accept goes on to the next; it never reads.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		peer := addrOf(c.RemoteAddr())
		if l.trusts(peer) {
			return &conn{Conn: c, cfg: &l.cfg}, nil
		}
		if l.cfg.Required {
			l.Refused.Add(1)
			_ = c.Close()
			continue
		}
		return c, nil
	}
}

func addrOf(a net.Addr) netip.Addr {
	if t, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(t.IP)
		return ip.Unmap()
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// conn reads the header of a trusted source once, on first use, and replays the bytes
// it read past the header.
type conn struct {
	net.Conn
	cfg *ListenerConfig

	once   sync.Once
	err    error
	rest   []byte
	remote net.Addr
	local  net.Addr

	mu         sync.Mutex
	readDL     time.Time // the read deadline the user set, restored after the header
	headerDone bool
}

func (c *conn) init() { c.once.Do(c.readHeader) }

func (c *conn) readHeader() {
	c.remote, c.local = c.Conn.RemoteAddr(), c.Conn.LocalAddr()
	c.mu.Lock()
	dl := time.Now().Add(c.cfg.HeaderTimeout)
	if !c.readDL.IsZero() && c.readDL.Before(dl) {
		dl = c.readDL
	}
	_ = c.Conn.SetReadDeadline(dl)
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.headerDone = true
		_ = c.Conn.SetReadDeadline(c.readDL)
		c.mu.Unlock()
	}()

	buf := make([]byte, 0, 256)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, make([]byte, len(buf))...)[:len(buf)]
		}
		n, err := c.Conn.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		h, size, perr := ParseHeader(buf)
		switch {
		case perr == nil:
			if !h.Local {
				c.remote = net.TCPAddrFromAddrPort(h.Src)
				c.local = net.TCPAddrFromAddrPort(h.Dst)
			}
			c.rest = buf[size:]
			return
		case errors.Is(perr, ErrNoHeader):
			if c.cfg.Required {
				c.fail(ErrHeaderRequired)
				return
			}
			c.rest = buf
			return
		case errors.Is(perr, ErrInvalid):
			c.fail(perr)
			return
		}
		if err != nil { // incomplete and nothing more comes: a silent or slow peer
			c.fail(fmt.Errorf("clientip: reading the PROXY header: %w", err))
			return
		}
		if len(buf) >= MaxHeaderV2 {
			c.fail(ErrInvalid)
			return
		}
	}
}

func (c *conn) fail(err error) {
	c.err = err
	_ = c.Conn.Close()
}

// Read returns the bytes after the header.
func (c *conn) Read(p []byte) (int, error) {
	c.init()
	if c.err != nil {
		return 0, c.err
	}
	if len(c.rest) > 0 {
		n := copy(p, c.rest)
		c.rest = c.rest[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// RemoteAddr is the client's address from the header (or the TCP peer's).
// CloseWrite half-closes the connection when the one it wraps can (a TCP connection):
// the websocket server closes its write side first when it says goodbye.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

func (c *conn) RemoteAddr() net.Addr {
	c.init()
	return c.remote
}

// LocalAddr is the address the client connected to, from the header (or the socket's).
func (c *conn) LocalAddr() net.Addr {
	c.init()
	return c.local
}

func (c *conn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.readDL = t
	if !c.headerDone {
		return c.Conn.SetWriteDeadline(t) // the read deadline is the header's until it is read
	}
	return c.Conn.SetDeadline(t)
}

func (c *conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.readDL = t
	if !c.headerDone {
		return nil
	}
	return c.Conn.SetReadDeadline(t)
}
