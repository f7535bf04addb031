package upstream

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
)

// A call that times out on a socket gets the socket pinged (slot.expire, write): an
// upstream still reading (a slow node) answers and keeps its socket; a socket through
// which nothing comes back any more (a load balancer that forgot the connection) is
// dropped after ProbeTimeout and dialled again, long before the keepalive (a minute
// here) would have given up on it.
func TestMuxProbesAfterATimeout(t *testing.T) {
	for _, tc := range []struct {
		name    string
		freeze  bool // the connection goes silent both ways before the call
		stalled bool
	}{
		{"a slow node keeps its socket", false, false},
		{"a silent connection is dropped", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeUpstream(t, false)
			fr := startFreezer(t, f.url[len("ws://"):])
			cfg := testMuxConfig("ws://" + fr.addr)
			cfg.Conns, cfg.ProbeTimeout = 1, 200*time.Millisecond
			m, err := NewMux(cfg)
			if err != nil {
				t.Fatal(err)
			}
			probed := make(chan bool, 8)
			m.probed = func(stalled bool) { probed <- stalled }
			m.Start()
			t.Cleanup(m.Close)
			waitFor(t, "the socket up", func() bool { return m.slots[0].isUp.Load() })
			if tc.freeze {
				fr.freeze()
			}
			// "silent" is never answered: the call times out either way.
			_, err = callBody(m, `{"jsonrpc":"2.0","id":1,"method":"silent","params":[]}`, time.Now().Add(100*time.Millisecond))
			if !errors.Is(err, proto.ErrTimeout) {
				t.Fatalf("call: %v, want a timeout", err)
			}
			select {
			case got := <-probed:
				if got != tc.stalled {
					t.Fatalf("probe found the socket stalled: %v, want %v", got, tc.stalled)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("no probe after the call timed out")
			}
			if got := m.metrics.stalled.Get(); got != map[bool]uint64{false: 0, true: 1}[tc.stalled] {
				t.Fatalf("stalled counter %d", got)
			}
			if tc.stalled {
				waitFor(t, "a new socket", func() bool { return f.dialed.Load() == 2 && m.slots[0].isUp.Load() })
			}
			if ans, err := callBody(m, `{"jsonrpc":"2.0","id":2,"method":"echo","params":[7]}`, time.Time{}); err != nil || ans != `{"jsonrpc":"2.0","id":2,"result":[7]}` {
				t.Fatalf("echo after the probe: %s, %v", ans, err)
			}
			if want := map[bool]int64{false: 1, true: 2}[tc.stalled]; f.dialed.Load() != want {
				t.Fatalf("%d sockets dialled, want %d", f.dialed.Load(), want)
			}
		})
	}
}

// freezer is a TCP proxy whose open connections can be made silent both ways, held
// open (what a NAT or load balancer that forgot a connection does); connections made
// after freeze carry bytes again.
type freezer struct {
	addr  string
	mu    sync.Mutex
	conns []*atomic.Bool
}

func startFreezer(t *testing.T, target string) *freezer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fr := &freezer{addr: ln.Addr().String()}
	var open sync.WaitGroup
	var all []net.Conn
	var allMu sync.Mutex
	t.Cleanup(func() {
		_ = ln.Close()
		allMu.Lock()
		for _, c := range all {
			_ = c.Close()
		}
		allMu.Unlock()
		open.Wait()
	})
	open.Add(1)
	go func() {
		defer open.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			frozen := new(atomic.Bool)
			fr.mu.Lock()
			fr.conns = append(fr.conns, frozen)
			fr.mu.Unlock()
			allMu.Lock()
			all = append(all, c, up)
			allMu.Unlock()
			pipe := func(dst, src net.Conn) {
				defer open.Done()
				buf := make([]byte, 32<<10)
				for {
					n, err := src.Read(buf)
					if err != nil {
						_ = dst.Close()
						return
					}
					if frozen.Load() {
						continue // dropped, the connection held open
					}
					if _, err := dst.Write(buf[:n]); err != nil {
						_ = src.Close()
						return
					}
				}
			}
			open.Add(2)
			go pipe(up, c)
			go pipe(c, up)
		}
	}()
	return fr
}

// freeze silences every connection open now.
func (fr *freezer) freeze() {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	for _, f := range fr.conns {
		f.Store(true)
	}
}
