package clientip

import (
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// limitedServer accepts from lim's wrap of inner and reports each connection once it
// read the client's 5-byte greeting (the first Read: where a proxied connection is
// counted by its address); one whose read fails (refused at it) is closed.
type limitedServer struct {
	ln      net.Listener
	lim     *Limiter
	refused [2]atomic.Int64
	served  chan net.Conn
}

func startLimited(t *testing.T, inner net.Listener, l Limits) *limitedServer {
	t.Helper()
	s := &limitedServer{served: make(chan net.Conn, 16)}
	l.Refusals = [2][]byte{[]byte("total\n"), []byte("per_ip\n")}
	l.Refused = func(r Reason) { s.refused[r].Add(1) }
	s.lim = NewLimiter(l)
	s.ln = s.lim.Listen(inner)
	t.Cleanup(func() { s.ln.Close() })
	go func() {
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return
			}
			go func() {
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
				if _, err := io.ReadFull(c, make([]byte, 5)); err != nil {
					c.Close()
					return
				}
				s.served <- c
			}()
		}
	}()
	return s
}

// dial connects from src, sends the PROXY header for header (when set) and the
// greeting. A refused connection is read to its end: its answer, then EOF.
func (s *limitedServer) dial(t *testing.T, src, header string) net.Conn {
	t.Helper()
	c := dialFrom(t, src, s.ln)
	var hdr []byte
	if header != "" {
		hdr = AppendV1(nil, Header{Src: netip.MustParseAddrPort(header), Dst: netip.MustParseAddrPort("10.0.0.1:443")})
	}
	if _, err := c.Write(append(hdr, "hello"...)); err != nil {
		t.Fatal(err)
	}
	return c
}

func (s *limitedServer) wantServed() net.Conn { return <-s.served }

func wantRefused(t *testing.T, c net.Conn, want string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	c.Close() // the server reads until the client leaves, after the answer
	if err != nil || string(b) != want {
		t.Fatalf("refused connection read %q, %v; want %q then EOF", b, err, want)
	}
}

func TestLimiterTotal(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := startLimited(t, inner, Limits{Total: 2})
	s.dial(t, "127.0.0.1", "")
	a := s.wantServed()
	s.dial(t, "127.0.0.1", "")
	b := s.wantServed()
	if s.lim.Open() != 2 {
		t.Fatalf("open %d, want 2", s.lim.Open())
	}
	wantRefused(t, s.dial(t, "127.0.0.1", ""), "total\n")
	if s.refused[OverTotal].Load() != 1 || s.lim.Open() != 2 {
		t.Fatalf("refused %d, open %d; want 1, 2", s.refused[OverTotal].Load(), s.lim.Open())
	}
	a.Close()
	a.Close() // a second Close releases nothing more
	if s.lim.Open() != 1 {
		t.Fatalf("open %d after a close, want 1", s.lim.Open())
	}
	s.dial(t, "127.0.0.1", "")
	c := s.wantServed()
	b.Close()
	c.Close()
	if s.lim.Open() != 0 {
		t.Fatalf("open %d with every connection closed, want 0", s.lim.Open())
	}
}

// Connections count under the address the listener resolves: the TCP peer, or the
// source of a trusted proxy's PROXY header (read on the first Read, not in Accept); a
// trusted proxy sending no header counts under its own address.
func TestLimiterPerIP(t *testing.T) {
	type step struct {
		src, header string // header: the PROXY header's source, "" for none
		want        string // the served RemoteAddr's IP, or "per_ip" for a refusal
	}
	cases := map[string]struct {
		proxy bool
		steps []step
	}{
		"tcp peers": {false, []step{
			{"127.0.0.1", "", "127.0.0.1"},
			{"127.0.0.1", "", "per_ip"},
			{"127.0.0.2", "", "127.0.0.2"},
			{"127.0.0.2", "", "per_ip"},
		}},
		"proxy headers": {true, []step{
			{"127.0.0.1", "192.0.2.1:1000", "192.0.2.1"},
			{"127.0.0.1", "192.0.2.1:1001", "per_ip"},
			{"127.0.0.1", "192.0.2.2:1000", "192.0.2.2"},
			{"127.0.0.1", "", "127.0.0.1"}, // the proxy's own, without a header
			{"127.0.0.1", "", "per_ip"},
			{"127.0.0.2", "", "127.0.0.2"}, // untrusted: its peer address
		}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var inner net.Listener
			if tc.proxy {
				inner = listen(t, ListenerConfig{Trusted: mustPrefixes(t, "127.0.0.1")})
			} else {
				var err error
				if inner, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
					t.Fatal(err)
				}
			}
			s := startLimited(t, inner, Limits{Total: 100, PerIP: 1})
			var served []net.Conn
			refusals := int64(0)
			for i, st := range tc.steps {
				c := s.dial(t, st.src, st.header)
				if st.want == "per_ip" {
					wantRefused(t, c, "per_ip\n")
					refusals++
					continue
				}
				sc := s.wantServed()
				if h, _, _ := net.SplitHostPort(sc.RemoteAddr().String()); h != st.want {
					t.Fatalf("step %d: served %s, want %s", i, h, st.want)
				}
				served = append(served, sc)
			}
			if got := s.refused[OverPerIP].Load(); got != refusals {
				t.Fatalf("per_ip refusals %d, want %d", got, refusals)
			}
			for _, c := range served {
				c.Close()
			}
			// A connection refused at its first Read is closed by the goroutine serving
			// it, once its client has gone: wait for the count, never a fixed time.
			for deadline := time.Now().Add(10 * time.Second); s.lim.Open() != 0 || s.lim.Addresses() != 0; {
				if time.Now().After(deadline) {
					t.Fatalf("open %d, addresses %d with every connection closed; want 0, 0", s.lim.Open(), s.lim.Addresses())
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
}

// A connection closed before its first Read (a shutdown) releases what it took, and a
// proxied one closed that way never counts its address.
func TestLimiterCloseBeforeRead(t *testing.T) {
	inner := listen(t, ListenerConfig{Trusted: mustPrefixes(t, "127.0.0.1")})
	lim := NewLimiter(Limits{Total: 10, PerIP: 1})
	ln := lim.Listen(inner)
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	dialFrom(t, "127.0.0.1", ln)
	c := <-accepted
	if lim.Open() != 1 {
		t.Fatalf("open %d, want 1", lim.Open())
	}
	c.Close()
	if lim.Open() != 0 || lim.Addresses() != 0 {
		t.Fatalf("open %d, addresses %d after close; want 0, 0", lim.Open(), lim.Addresses())
	}
}
