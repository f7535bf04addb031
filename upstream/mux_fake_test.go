package upstream

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log/slog"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/proto"
)

// fakeUpstream is an in-process websocket JSON-RPC server the Mux tests talk to.
//
// In auto mode it answers by method: "echo" returns params as result, answers held
// back and sent in reverse order (out of order on purpose); "silent" never answers;
// "drop" closes the connection; eth_subscribe answers "0xfeedN"; eth_unsubscribe true.
// In scripted mode every frame goes to recv and the test sends with send.
type fakeUpstream struct {
	t        testing.TB
	url      string
	ln       net.Listener
	srv      *fasthttp.Server
	scripted bool
	recv     chan []byte          // scripted mode: frames received
	accepted chan *websocket.Conn // every new connection

	mu      sync.Mutex
	conns   map[*websocket.Conn]*sync.Mutex // write locks
	subs    map[string]*websocket.Conn
	kinds   map[string]string // subscription id: the params it was asked with
	unsubs  []string
	auth    string
	subSeq  atomic.Int64
	pongs   atomic.Int64
	dialed  atomic.Int64
	refused atomic.Bool
	// subRefusals is how many eth_subscribe to refuse next, as a provider at its
	// subscription cap does.
	subRefusals atomic.Int64
	// chainID, when set, is the eth_chainId result (a quoted quantity); unset, the
	// method is unknown.
	chainID atomic.Pointer[string]
	// raw, when set, answers method "raw": the bytes it returns for the request's id go
	// to the socket as they are (frame headers included), as a broken node would write.
	raw atomic.Pointer[func(id string) []byte]
	// pingHold, when set, holds the pong to each ping until it is closed (the reading
	// of the socket waits with it), as a node writing a large answer first would.
	pingHold atomic.Pointer[chan struct{}]
}

func newFakeUpstream(t testing.TB, scripted bool) *fakeUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeUpstream{t: t, ln: ln, scripted: scripted, url: "ws://" + ln.Addr().String(),
		recv: make(chan []byte, 1024), accepted: make(chan *websocket.Conn, 64),
		conns: make(map[*websocket.Conn]*sync.Mutex), subs: make(map[string]*websocket.Conn),
		kinds: make(map[string]string)}
	up := websocket.FastHTTPUpgrader{CheckOrigin: func(*fasthttp.RequestCtx) bool { return true }}
	f.srv = &fasthttp.Server{KeepHijackedConns: true, Handler: func(ctx *fasthttp.RequestCtx) {
		if f.refused.Load() {
			ctx.Error("down", fasthttp.StatusServiceUnavailable)
			return
		}
		f.mu.Lock()
		f.auth = string(ctx.Request.Header.Peek("Authorization"))
		f.mu.Unlock()
		_ = up.Upgrade(ctx, f.serve)
	}}
	go func() { _ = f.srv.Serve(ln) }()
	t.Cleanup(f.close)
	return f
}

// newFakeUpstreamTLS is newFakeUpstream behind TLS (wss://) with a fresh self-signed
// certificate; the returned config trusts it.
func newFakeUpstreamTLS(t testing.TB) (*fakeUpstream, *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	f := newFakeUpstream(t, false)
	_ = f.srv.Shutdown()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.url = "wss://" + ln.Addr().String()
	pair := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	tln := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12})
	go func() { _ = f.srv.Serve(tln) }()
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	return f, &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
}

func (f *fakeUpstream) close() {
	_ = f.srv.Shutdown()
	f.dropAll()
}

// connCount returns the connections the fake serves now.
func (f *fakeUpstream) connCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.conns)
}

// dropAll closes every connection at once, as a crashed node would.
func (f *fakeUpstream) dropAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.conns {
		_ = c.NetConn().Close()
	}
}

func (f *fakeUpstream) write(c *websocket.Conn, msg []byte) {
	f.mu.Lock()
	wmu := f.conns[c]
	f.mu.Unlock()
	if wmu == nil {
		return
	}
	wmu.Lock()
	defer wmu.Unlock()
	_ = c.WriteMessage(websocket.TextMessage, msg)
}

// send writes msg on the newest connection (scripted mode).
func (f *fakeUpstream) send(c *websocket.Conn, msg string) { f.write(c, []byte(msg)) }

// notify sends an eth_subscription notification for upstream subscription sub.
func (f *fakeUpstream) notify(sub, result string) bool {
	f.mu.Lock()
	c := f.subs[sub]
	f.mu.Unlock()
	if c == nil {
		return false
	}
	f.write(c, []byte(`{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":"`+sub+`","result":`+result+`}}`))
	return true
}

func (f *fakeUpstream) unsubscribed() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.unsubs...)
}

func (f *fakeUpstream) serve(c *websocket.Conn) {
	f.dialed.Add(1)
	f.mu.Lock()
	f.conns[c] = new(sync.Mutex)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.conns, c)
		for k, v := range f.subs {
			if v == c {
				delete(f.subs, k)
			}
		}
		f.mu.Unlock()
		_ = c.Close()
	}()
	c.SetPongHandler(func(string) error { f.pongs.Add(1); return nil })
	c.SetPingHandler(func(data string) error {
		if h := f.pingHold.Load(); h != nil {
			<-*h
		}
		_ = c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
		return nil // as the library's own handler: a pong that cannot be written ends nothing
	})
	f.accepted <- c
	// A read deadline would break a websocket for good, so a goroutine reads and this
	// loop holds answers back until the socket is idle for a moment, then sends them in
	// reverse order: the Mux must match them by id.
	in := make(chan []byte, 256)
	go func() {
		defer close(in)
		for {
			_, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			in <- msg
		}
	}()
	var held [][]byte
	flush := func() {
		for i := len(held) - 1; i >= 0; i-- {
			f.write(c, held[i])
		}
		held = held[:0]
	}
	idle := time.NewTimer(time.Hour)
	defer idle.Stop()
	for {
		var msg []byte
		select {
		case m, ok := <-in:
			if !ok {
				return
			}
			msg = m
		case <-idle.C:
			flush()
			continue
		}
		if f.scripted {
			f.recv <- msg
			continue
		}
		if proto.FirstByte(msg) == '[' {
			f.write(c, f.answerBatch(msg))
			continue
		}
		ans, drop := f.answer(c, msg)
		if drop {
			return
		}
		if ans != nil {
			held = append(held, ans)
			if len(held) >= 64 {
				flush()
			}
			idle.Reset(2 * time.Millisecond)
		}
	}
}

func (f *fakeUpstream) answer(c *websocket.Conn, msg []byte) (ans []byte, drop bool) {
	var m proto.Message
	if _, err := proto.ScanMessage(msg, &m); err != nil {
		return []byte(`{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}`), true
	}
	id := m.ID.Bytes(msg)
	switch string(m.Method.Bytes(msg)) {
	case `"echo"`:
		return []byte(`{"jsonrpc":"2.0","id":` + string(id) + `,"result":` + string(m.Params.Bytes(msg)) + `}`), false
	case `"fail"`:
		return []byte(`{"jsonrpc":"2.0","id":` + string(id) + `,"error":{"code":-32000,"message":"boom"}}`), false
	case `"silent"`:
		return nil, false
	case `"big"`: // a result of params[0] bytes: the library fragments it into frames
		n, _ := strconv.Atoi(strings.Trim(string(m.Params.Bytes(msg)), "[]"))
		return []byte(`{"jsonrpc":"2.0","id":` + string(id) + `,"result":"` + strings.Repeat("b", n) + `"}`), false
	case `"ping_me"`: // a ping before the answer: the Mux must pong
		f.mu.Lock()
		wmu := f.conns[c]
		f.mu.Unlock()
		wmu.Lock()
		_ = c.WriteControl(websocket.PingMessage, []byte("hi"), time.Now().Add(time.Second))
		wmu.Unlock()
		return []byte(`{"jsonrpc":"2.0","id":` + string(id) + `,"result":"pinged"}`), false
	case `"close"`: // a clean close frame from the server
		f.mu.Lock()
		wmu := f.conns[c]
		f.mu.Unlock()
		wmu.Lock()
		_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, "bye"), time.Now().Add(time.Second))
		wmu.Unlock()
		return nil, false
	case `"drop"`:
		return nil, true
	case `"raw"`:
		if raw := f.raw.Load(); raw != nil {
			f.mu.Lock()
			wmu := f.conns[c]
			f.mu.Unlock()
			wmu.Lock()
			_, _ = c.NetConn().Write((*raw)(string(id)))
			wmu.Unlock()
			return nil, false
		}
	case `"eth_chainId"`:
		if chain := f.chainID.Load(); chain != nil {
			return []byte(`{"jsonrpc":"2.0","id":` + string(id) + `,"result":` + *chain + `}`), false
		}
	case `"eth_subscribe"`:
		if f.subRefusals.Add(-1) >= 0 {
			return []byte(`{"jsonrpc":"2.0","id":` + string(id) + `,"error":{"code":-32005,"message":"max subscriptions per connection reached"}}`), false
		}
		f.subRefusals.Store(0)
		sub := "0xfeed" + strconv.FormatInt(f.subSeq.Add(1), 10)
		f.mu.Lock()
		f.subs[sub] = c
		f.kinds[sub] = string(m.Params.Bytes(msg))
		f.mu.Unlock()
		return []byte(`{"jsonrpc":"2.0","id":` + string(id) + `,"result":"` + sub + `"}`), false
	case `"eth_unsubscribe"`:
		p := strings.Trim(string(m.Params.Bytes(msg)), `[]"`)
		f.mu.Lock()
		delete(f.subs, p)
		f.unsubs = append(f.unsubs, p)
		f.mu.Unlock()
		return []byte(`{"jsonrpc":"2.0","id":` + string(id) + `,"result":true}`), false
	}
	return []byte(`{"jsonrpc":"2.0","id":` + string(id) + `,"error":{"code":-32601,"message":"no such method"}}`), false
}

// answerBatch answers every element, in reverse order.
func (f *fakeUpstream) answerBatch(msg []byte) []byte {
	it, _ := proto.NewArrayIter(msg)
	var out [][]byte
	for {
		el, ok, err := it.Next()
		if err != nil || !ok {
			break
		}
		var m proto.Message
		e := el.Bytes(msg)
		if _, err := proto.ScanMessage(e, &m); err != nil || !m.ID.Present() {
			continue
		}
		ans, _ := f.answer(nil, e)
		if ans != nil {
			out = append(out, ans)
		}
	}
	var b bytes.Buffer
	b.WriteByte('[')
	for i := len(out) - 1; i >= 0; i-- {
		b.Write(out[i])
		if i > 0 {
			b.WriteByte(',')
		}
	}
	b.WriteByte(']')
	return b.Bytes()
}

// testMuxConfig is a complete Mux configuration for tests: short backoffs, generous
// deadlines.
func testMuxConfig(url string) MuxConfig {
	return MuxConfig{URL: url, Conns: 2, QueueSize: 4096, ReadLimit: 32 << 20,
		PingInterval: 30 * time.Second, PongTimeout: 30 * time.Second, DialTimeout: 10 * time.Second,
		WriteTimeout: 10 * time.Second, BackoffMin: 10 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
		RequestTimeout: 20 * time.Second, Metrics: NewMetrics(NewRegistry(), "test"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// startMux starts a Mux on f and waits until every socket is up.
func startMux(t testing.TB, f *fakeUpstream, mod func(*MuxConfig)) *Mux {
	t.Helper()
	cfg := testMuxConfig(f.url)
	if mod != nil {
		mod(&cfg)
	}
	m, err := NewMux(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m.subs.prefix = 0 // deterministic gateway subscription ids for transcripts
	m.Start()
	t.Cleanup(m.Close)
	waitFor(t, "every upstream socket up", func() bool {
		for _, s := range m.slots {
			if !s.isUp.Load() {
				return false
			}
		}
		return true
	})
	return m
}

// waitFor polls cond with a bounded wait: for conditions on other goroutines' state
// that offer nothing to block on (gauges, connection state).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
