package redistest

import (
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// ReplicaOf makes s a replica of primary (REPLICAOF) and waits until the link is up.
func (s *Server) ReplicaOf(t testing.TB, primary *Server) {
	t.Helper()
	host, port, _ := net.SplitHostPort(primary.Addr)
	if _, err := s.Do("REPLICAOF", host, port); err != nil {
		t.Fatalf("REPLICAOF %s: %v", primary.Addr, err)
	}
	deadline := time.Now().Add(StartTimeout)
	for {
		info, err := s.Do("INFO", "replication")
		if err == nil && strings.Contains(info, "master_link_status:up") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %s did not link to %s within %v: %q %v", s.Addr, primary.Addr, StartTimeout, info, err)
		}
		time.Sleep(20 * time.Millisecond) // readiness poll of an external process
	}
}

// Promote makes s a primary (REPLICAOF NO ONE).
func (s *Server) Promote(t testing.TB) {
	t.Helper()
	if _, err := s.Do("REPLICAOF", "NO", "ONE"); err != nil {
		t.Fatalf("REPLICAOF NO ONE: %v", err)
	}
}

// Proxy is a TCP forwarder on loopback standing for a DNS name: new connections go to the
// current target; connections already open stay on the old one, as clients' connections
// do after an ElastiCache failover flips the primary endpoint. Closed when the test ends.
type Proxy struct {
	Addr string

	ln     net.Listener
	mu     sync.Mutex
	target string
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// StartProxy listens on a free loopback port and forwards to target.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy: %v", err)
	}
	p := &Proxy{Addr: ln.Addr().String(), ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// SetTarget sends new connections to addr.
func (p *Proxy) SetTarget(addr string) {
	p.mu.Lock()
	p.target = addr
	p.mu.Unlock()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		target := p.target
		p.mu.Unlock()
		out, err := net.DialTimeout("tcp", target, 5*time.Second)
		if err != nil {
			in.Close()
			continue
		}
		if !p.track(in, out) {
			return
		}
		p.wg.Add(2)
		go p.pipe(in, out)
		go p.pipe(out, in)
	}
}

func (p *Proxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil { // closed
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *Proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
}

func (p *Proxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
	p.wg.Wait()
}
