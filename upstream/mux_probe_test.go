package upstream

import (
	"errors"
	"net"
	"strconv"
	"strings"
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
		fault   func(fr *freezer)
		pushes  bool // the upstream pushes notifications meanwhile
		big     int  // an answer of this many bytes in flight meanwhile (0: none)
		stalled bool
	}{
		{"a slow node keeps its socket", nil, false, 0, false},
		{"a silent connection is dropped", (*freezer).freeze, false, 0, true},
		// Pushes still arrive, nothing the gateway writes gets there: no pong, no answer.
		{"a connection dead the gateway's way is dropped", (*freezer).freezeUp, true, 0, true},
		// The pong waits behind a large answer on a slow link: a message on its way.
		{"a large answer on a slow link keeps its socket", (*freezer).slowDown, false, 300_000, false},
		// 200 ms each way from the dial on, the probe's pong 400 ms after its ping,
		// past ProbeTimeout: the probe waits three round trips (the upgrade's at first).
		{"a long round trip keeps its socket", nil, false, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeUpstream(t, false)
			fr := startFreezer(t, f.url[len("ws://"):])
			cfg := testMuxConfig("ws://" + fr.addr)
			cfg.Conns, cfg.ProbeTimeout = 1, 200*time.Millisecond
			if strings.Contains(tc.name, "round trip") {
				fr.lag.Store(int64(200 * time.Millisecond))
			}
			m, err := NewMux(cfg)
			if err != nil {
				t.Fatal(err)
			}
			probed := make(chan bool, 8)
			m.probed = func(stalled bool) { probed <- stalled }
			m.Start()
			t.Cleanup(m.Close)
			waitFor(t, "the socket up", func() bool { return m.slots[0].isUp.Load() })
			if tc.pushes {
				unsub, err := m.Subscribe([]byte(`["newHeads"]`), func([]byte) {})
				if err != nil {
					t.Fatal(err)
				}
				defer unsub()
				stop := make(chan struct{})
				defer close(stop)
				go func() {
					tick := time.NewTicker(20 * time.Millisecond)
					defer tick.Stop()
					for {
						select {
						case <-stop:
							return
						case <-tick.C:
							f.notify("0xfeed1", `{"number":"0x1"}`)
						}
					}
				}()
			}
			if tc.fault != nil {
				tc.fault(fr)
			}
			bigDone := make(chan error, 1)
			if tc.big > 0 {
				go func() {
					ans, err := callBody(m, `{"jsonrpc":"2.0","id":3,"method":"big","params":[`+strconv.Itoa(tc.big)+`]}`, time.Now().Add(time.Minute))
					if err == nil && len(ans) < tc.big {
						err = errors.New("answer cut short")
					}
					bigDone <- err
				}()
				before := fr.downBytes.Load()
				waitFor(t, "the large answer on its way", func() bool { return fr.downBytes.Load() > before+4096 })
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
			case <-time.After(30 * time.Second):
				t.Fatal("no probe outcome after the call timed out")
			}
			if got := m.metrics.stalled.Get(); got != map[bool]uint64{false: 0, true: 1}[tc.stalled] {
				t.Fatalf("stalled counter %d", got)
			}
			if tc.big > 0 {
				if err := <-bigDone; err != nil {
					t.Fatalf("the large answer: %v", err)
				}
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

// A call that times out on a socket has its siblings probed with it (Mux.probeSiblings):
// the route may be dead for all of them (a load balancer that forgot every connection),
// and the subscriptions of one found stalled move to a sibling. Before, a dead sibling
// was found only when a call of its own timed out, and the subscriptions moved to it
// heard nothing meanwhile; then (the audit) only once the first was found stalled, a
// probe later. A live sibling answers the ping and keeps its socket.
func TestMuxProbesTheSiblingsOfAStalledSocket(t *testing.T) {
	for _, tc := range []struct {
		name    string
		fault   func(fr *freezer)
		stalled int // of the two sockets
	}{
		{"a dead sibling is dropped too", (*freezer).freeze, 2},
		{"a live sibling keeps its socket", (*freezer).freezeFirst, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeUpstream(t, false)
			fr := startFreezer(t, f.url[len("ws://"):])
			cfg := testMuxConfig("ws://" + fr.addr) // the keepalive: a minute
			cfg.Conns, cfg.ProbeTimeout = 2, 200*time.Millisecond
			m, err := NewMux(cfg)
			if err != nil {
				t.Fatal(err)
			}
			probed := make(chan bool, 16)
			m.probed = func(stalled bool) { probed <- stalled }
			m.Start()
			t.Cleanup(m.Close)
			waitFor(t, "both sockets up", func() bool { return m.slots[0].isUp.Load() && m.slots[1].isUp.Load() })
			tc.fault(fr)
			// One call ("silent" is never answered) times out, on either socket: both
			// are probed, and conclude.
			_, err = callBody(m, `{"jsonrpc":"2.0","id":1,"method":"silent","params":[]}`, time.Now().Add(100*time.Millisecond))
			if !errors.Is(err, proto.ErrTimeout) {
				t.Fatalf("call: %v, want a timeout", err)
			}
			stalled := 0
			for i := range 2 {
				select {
				case got := <-probed:
					if got {
						stalled++
					}
				case <-time.After(30 * time.Second):
					t.Fatalf("%d probe outcomes of 2 within 30 s", i)
				}
			}
			if stalled != tc.stalled {
				t.Fatalf("%d sockets found stalled, want %d", stalled, tc.stalled)
			}
			if got := m.metrics.stalled.Get(); got != uint64(tc.stalled) {
				t.Fatalf("stalled counter %d, want %d", got, tc.stalled)
			}
			waitFor(t, "every socket dialled again and up", func() bool {
				return f.dialed.Load() == 2+int64(tc.stalled) && m.slots[0].isUp.Load() && m.slots[1].isUp.Load()
			})
			for id := range 2 { // both slots, round robin
				body := `{"jsonrpc":"2.0","id":` + strconv.Itoa(id+2) + `,"method":"echo","params":[7]}`
				if ans, err := callBody(m, body, time.Time{}); err != nil || ans != `{"jsonrpc":"2.0","id":`+strconv.Itoa(id+2)+`,"result":[7]}` {
					t.Fatalf("echo after the probes: %s, %v", ans, err)
				}
			}
		})
	}
}

// freezer is a TCP proxy whose open connections can be made silent both ways or the
// client's way only, held open (what a NAT or load balancer that forgot a connection
// does), or slow the server's way; connections made later are plain.
type freezer struct {
	addr  string
	mu    sync.Mutex
	conns []*frozenConn
	// downBytes counts the bytes passed the server's way (to the client).
	downBytes atomic.Int64
	// lag delays every read passed on, both ways, on every connection (ns).
	lag atomic.Int64
}

type frozenConn struct{ up, down, slow atomic.Bool }

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
			fc := new(frozenConn)
			fr.mu.Lock()
			fr.conns = append(fr.conns, fc)
			fr.mu.Unlock()
			allMu.Lock()
			all = append(all, c, up)
			allMu.Unlock()
			pipe := func(dst, src net.Conn, frozen, slow *atomic.Bool) {
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
					if d := fr.lag.Load(); d > 0 {
						time.Sleep(time.Duration(d)) // a long route: what this proxy is for
					}
					for p := buf[:n]; len(p) > 0; {
						k := len(p)
						if slow.Load() { // about 100 KB/s
							k = min(k, 1024)
							time.Sleep(10 * time.Millisecond)
						}
						if _, err := dst.Write(p[:k]); err != nil {
							_ = src.Close()
							return
						}
						if dst == c {
							fr.downBytes.Add(int64(k))
						}
						p = p[k:]
					}
				}
			}
			var never atomic.Bool
			open.Add(2)
			go pipe(up, c, &fc.up, &never)
			go pipe(c, up, &fc.down, &fc.slow)
		}
	}()
	return fr
}

// each applies f to every connection open now.
func (fr *freezer) each(f func(*frozenConn)) {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	for _, c := range fr.conns {
		f(c)
	}
}

// freeze silences every connection open now, both ways.
func (fr *freezer) freeze() { fr.each(func(c *frozenConn) { c.up.Store(true); c.down.Store(true) }) }

// freezeFirst silences the first connection made, both ways.
func (fr *freezer) freezeFirst() {
	fr.mu.Lock()
	c := fr.conns[0]
	fr.mu.Unlock()
	c.up.Store(true)
	c.down.Store(true)
}

// freezeUp silences every connection open now the client's way only: what the server
// sends still arrives.
func (fr *freezer) freezeUp() { fr.each(func(c *frozenConn) { c.up.Store(true) }) }

// slowDown slows every connection open now the server's way to about 100 KB/s.
func (fr *freezer) slowDown() { fr.each(func(c *frozenConn) { c.slow.Store(true) }) }

// While a socket of an upstream is under a probe with nothing back yet (a call on it
// timed out: its route may be dead), the router sends its websocket calls elsewhere
// when another upstream can take them, and uses it again once the probe has an answer.
// Before, the next call went to it as to any other and waited out a whole timeout on a
// blackholed route (the audit: /ws/blocknumber 9 s, twice in a row).
func TestSuspectUpstreamAvoidedForWebsocketCalls(t *testing.T) {
	sa, sb := newWSProvider(t, nil, 0, ""), newWSProvider(t, nil, 0, "")
	http := newFakeProvider(t, nil)
	r := testRouterWith(t, withMux, Spec{Name: "a", HTTPURL: http.url, WSURL: sa.url, Weight: 1000},
		Spec{Name: "b", HTTPURL: http.url, WSURL: sb.url})
	startMuxes(t, r)
	a, b := byName(r, "a"), byName(r, "b")
	r.observeHead(a, header(10))
	r.observeHead(b, header(10))
	req := request("eth_getBalance", `["0x01","latest"]`)
	picks := func(via Transport) (n int) {
		for range 200 {
			if r.pick(req, r.needOf(req), via, nil) == a {
				n++
			}
		}
		return n
	}
	if n := picks(TransportWS); n == 0 {
		t.Fatal("a, weighted 1000 to 1, never picked")
	}
	a.mux.slots[0].suspected()
	if n := picks(TransportWS); n != 0 {
		t.Fatalf("a picked for %d of 200 websocket calls while its socket is under a probe", n)
	}
	if n := picks(TransportHTTP); n == 0 {
		t.Fatal("a's HTTP side avoided for its socket's probe")
	}
	b.mux.slots[0].suspected() // both suspect: a call still goes somewhere
	if u := r.pick(req, r.needOf(req), TransportWS, nil); u == nil {
		t.Fatal("no upstream picked with both under a probe")
	}
	b.mux.slots[0].cleared()
	a.mux.slots[0].cleared() // an answer or a pong came back
	if n := picks(TransportWS); n == 0 {
		t.Fatal("a not picked again after its probe's answer")
	}
}

// freezeDown silences every connection open now the server's way only: what the client
// sends still arrives, nothing comes back (a route dead the node's way).
func (fr *freezer) freezeDown() { fr.each(func(c *frozenConn) { c.down.Store(true) }) }

// A pong read after a large message measures that message's transfer, not the
// socket's round trip: it is not taken as one. Before, it was: a pong behind a 20 MB
// answer on a slow link gave a round trip of seconds, and a probe window of three of
// them (up to the keepalive's minute) until the next pong, so a socket that died
// meanwhile was found stalled that much later. A message being read holds a probe's
// verdict by itself (slot.write), without the round trip.
func TestPongBehindALargeMessageIsNoRoundTrip(t *testing.T) {
	f := newFakeUpstream(t, false)
	hold := make(chan struct{})
	f.pingHold.Store(&hold)
	m := startMux(t, f, func(c *MuxConfig) { c.Conns = 1; c.ProbeTimeout = 20 * time.Second })
	conn := within(t, f.accepted, "the Mux's connection")
	s := m.slots[0]
	rtt, answered := s.rtt.Load(), s.answered.Load()
	s.probe <- false // one ping; the keepalive's comes in 30 s
	waitFor(t, "the probe's ping out", func() bool { return s.pingAt.Load() != 0 })
	// Written before the pong is released: read before it.
	f.write(conn, []byte(`{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":"0xnone","result":"`+strings.Repeat("a", 1<<20)+`"}}`))
	close(hold)
	waitFor(t, "the pong", func() bool { return s.answered.Load() > answered })
	if got := s.rtt.Load(); got != rtt {
		t.Fatalf("round trip %v after a pong behind a 1 MiB message, want %v (the upgrade's) kept", time.Duration(got), time.Duration(rtt))
	}
}

// A probe waits -ws-probe-timeout as configured, also past the keepalive's limit
// (-ws-ping-interval + -ws-pong-timeout); three measured round trips when longer, those
// never past that limit. Before, the limit capped the configured timeout too: a probe
// timeout of 90 s waited 60 s, and a socket answering its ping in 70 s (its
// notifications keeping it past the keepalive) was declared stalled against the flag.
func TestProbeWindowKeepsTheConfiguredTimeout(t *testing.T) {
	for _, tc := range []struct {
		probe, rtt, want time.Duration
	}{
		{probe: 90 * time.Second, rtt: time.Millisecond, want: 90 * time.Second},
		{probe: 90 * time.Second, rtt: 40 * time.Second, want: 90 * time.Second},
		{probe: 5 * time.Second, rtt: time.Millisecond, want: 5 * time.Second},
		{probe: 5 * time.Second, rtt: 4 * time.Second, want: 12 * time.Second},
		{probe: 5 * time.Second, rtt: time.Minute, want: time.Minute}, // measured: the keepalive's 60 s at most
	} {
		cfg := testMuxConfig("ws://127.0.0.1:1") // keepalive: 30 s + 30 s
		cfg.ProbeTimeout = tc.probe
		m, err := NewMux(cfg)
		if err != nil {
			t.Fatal(err)
		}
		s := m.slots[0]
		s.rtt.Store(int64(tc.rtt))
		if got := s.probeWindow(); got != tc.want {
			t.Errorf("probe timeout %v, round trip %v: window %v, want %v", tc.probe, tc.rtt, got, tc.want)
		}
	}
}
