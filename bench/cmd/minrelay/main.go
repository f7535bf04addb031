// Command minrelay is the thinnest relay of the gateway's shape, for the performance
// suite's reference rows: what any relay built this way costs on this machine, before a
// line of gateway logic. It is not a gateway: it parses nothing, checks nothing, keeps no
// metrics and never times a call out.
//
//   - GET /blocknumber: a fasthttp server and a fasthttp.HostClient, the server settings
//     and pool size the gateway uses; the upstream's answer is copied back as it is.
//   - POST /: the same server and HostClient; the client's body is forwarded as it is and
//     the answer copied back (no parsing, no id handling).
//   - GET /ws/blocknumber: the same server, and a minimal shared-websocket multiplexer of
//     the gateway's design: N upstream sockets, each with one writer goroutine that puts
//     every queued frame in one buffered write, and one reader goroutine that hands each
//     answer to its caller by id.
//
// Usage: minrelay -listen 127.0.0.1:8600 -upstream-http http://127.0.0.1:8545 -upstream-ws ws://127.0.0.1:8546
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	_ "net/http/pprof"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/valyala/fasthttp"
)

const blockNumber = `"method":"eth_blockNumber","params":[]}`

func main() {
	listen := flag.String("listen", "127.0.0.1:8600", "address to serve on")
	upHTTP := flag.String("upstream-http", "", "upstream JSON-RPC HTTP URL")
	upWS := flag.String("upstream-ws", "", "upstream JSON-RPC websocket URL")
	wsConns := flag.Int("ws-conns", 2, "shared upstream websocket connections")
	pprofAddr := flag.String("pprof", "", "serve Go's profiles under /debug/pprof/ on this address (off when empty)")
	flag.Parse()
	if *pprofAddr != "" {
		go func() { log.Println(http.ListenAndServe(*pprofAddr, nil)) }()
	}
	handler, err := newRelay(*upHTTP, *upWS, *wsConns)
	if err != nil {
		log.Fatalf("minrelay: %v", err)
	}
	srv := &fasthttp.Server{
		Handler: handler,
		Name:    "minrelay", ReadTimeout: 30 * time.Second, WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute,
		ReadBufferSize: 8 << 10, NoDefaultServerHeader: true, NoDefaultDate: true,
	}
	fmt.Fprintf(os.Stderr, "minrelay: serving on %s\n", *listen)
	log.Fatal(srv.ListenAndServe(*listen))
}

// newRelay returns the relay's handler: /blocknumber and POST / through the HTTP pool,
// /ws/blocknumber through the shared sockets, /health.
func newRelay(upHTTP, upWS string, wsConns int) (fasthttp.RequestHandler, error) {
	u, err := url.Parse(upHTTP)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("-upstream-http: want an http:// URL, got %q", upHTTP)
	}
	hc := &fasthttp.HostClient{Addr: u.Host, MaxConns: 512, MaxConnWaitTimeout: 10 * time.Second, MaxIdleConnDuration: 30 * time.Second,
		ReadBufferSize: 16 << 10, WriteBufferSize: 16 << 10}
	body := []byte(`{"jsonrpc":"2.0","id":1,` + blockNumber)
	mux, err := dialMux(upWS, wsConns)
	if err != nil {
		return nil, err
	}
	viaHTTP := func(ctx *fasthttp.RequestCtx) {
		req := fasthttp.AcquireRequest()
		defer fasthttp.ReleaseRequest(req)
		req.SetRequestURI(upHTTP)
		req.Header.SetMethod(fasthttp.MethodPost)
		req.Header.SetContentType("application/json")
		req.SetBodyRaw(body)
		if err := hc.Do(req, &ctx.Response); err != nil {
			ctx.Error(err.Error(), fasthttp.StatusBadGateway)
		}
	}
	// viaPost forwards the client's body as it is: what a relay without a line of
	// JSON-RPC handling costs for POST /.
	viaPost := func(ctx *fasthttp.RequestCtx) {
		req := fasthttp.AcquireRequest()
		defer fasthttp.ReleaseRequest(req)
		req.SetRequestURI(upHTTP)
		req.Header.SetMethod(fasthttp.MethodPost)
		req.Header.SetContentType("application/json")
		req.SetBodyRaw(ctx.PostBody())
		if err := hc.Do(req, &ctx.Response); err != nil {
			ctx.Error(err.Error(), fasthttp.StatusBadGateway)
		}
	}
	viaWS := func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		p := mux.call()
		_, _ = ctx.Write(p.ans)
		pendingPool.Put(p)
	}
	return func(ctx *fasthttp.RequestCtx) {
		switch string(ctx.Path()) {
		case "/":
			if !ctx.IsPost() {
				ctx.Error("POST only", fasthttp.StatusMethodNotAllowed)
				return
			}
			viaPost(ctx)
		case "/blocknumber":
			viaHTTP(ctx)
		case "/ws/blocknumber":
			viaWS(ctx)
		case "/health":
			ctx.SetBodyString("{}")
		default:
			ctx.Error("not found", fasthttp.StatusNotFound)
		}
	}, nil
}

// mux is the minimal multiplexer: calls are matched to answers by a decimal id.
type mux struct {
	socks []*sock
	rr    atomic.Uint32
	ids   atomic.Uint64
}

type sock struct {
	out     chan *pending
	mu      sync.Mutex
	waiting map[uint64]*pending
}

type pending struct {
	id   uint64
	ans  []byte
	done chan struct{}
}

var pendingPool = sync.Pool{New: func() any { return &pending{done: make(chan struct{}, 1)} }}

func dialMux(rawURL string, n int) (*mux, error) {
	m := &mux{}
	for i := 0; i < n; i++ {
		conn, resp, err := websocket.DefaultDialer.Dial(rawURL, nil)
		if resp != nil && resp.Body != nil {
			_ = resp.Body.Close()
		}
		if err != nil {
			return nil, fmt.Errorf("cannot dial %s: %w", rawURL, err)
		}
		s := &sock{out: make(chan *pending, 4096), waiting: make(map[uint64]*pending)}
		go s.write(conn.NetConn())
		go s.read(conn)
		m.socks = append(m.socks, s)
	}
	return m, nil
}

// call sends eth_blockNumber and returns when the answer is in p.ans; the caller puts p
// back in pendingPool.
func (m *mux) call() *pending {
	s := m.socks[m.rr.Add(1)%uint32(len(m.socks))]
	p := pendingPool.Get().(*pending)
	p.id = m.ids.Add(1)
	s.mu.Lock()
	s.waiting[p.id] = p
	s.mu.Unlock()
	s.out <- p
	<-p.done
	return p
}

// write is the socket's only writer: each wake-up puts every queued frame in one write.
func (s *sock) write(c net.Conn) {
	w := bufio.NewWriterSize(c, 64<<10)
	var payload []byte
	for p := range s.out {
		if len(s.out) == 0 {
			runtime.Gosched() // as the gateway's Mux: let callers about to queue join this write
		}
		for {
			payload = append(strconv.AppendUint(append(payload[:0], `{"jsonrpc":"2.0","id":`...), p.id, 10), `,`+blockNumber...)
			writeFrame(w, payload)
			select {
			case p = <-s.out:
				continue
			default:
			}
			break
		}
		if err := w.Flush(); err != nil {
			log.Fatalf("minrelay: upstream write: %v", err)
		}
	}
}

// writeFrame writes a masked text frame (client to server frames must be masked; a zero
// key keeps the payload as it is).
func writeFrame(w *bufio.Writer, payload []byte) {
	_ = w.WriteByte(0x81)
	if n := len(payload); n < 126 {
		_ = w.WriteByte(0x80 | byte(n))
	} else {
		_, _ = w.Write([]byte{0x80 | 126, byte(n >> 8), byte(n)})
	}
	_, _ = w.Write([]byte{0, 0, 0, 0})
	_, _ = w.Write(payload)
}

// read is the socket's only reader: it hands each answer to the call with its id.
func (s *sock) read(c *websocket.Conn) {
	key := []byte(`"id":`)
	var msg []byte
	for {
		_, r, err := c.NextReader()
		if err == nil {
			msg, err = readAll(r, msg[:0])
		}
		if err != nil {
			log.Fatalf("minrelay: upstream read: %v", err)
		}
		i := bytes.Index(msg, key)
		if i < 0 {
			continue
		}
		j := i + len(key)
		k := j
		for k < len(msg) && msg[k] >= '0' && msg[k] <= '9' {
			k++
		}
		id, err := strconv.ParseUint(string(msg[j:k]), 10, 64)
		if err != nil {
			continue
		}
		s.mu.Lock()
		p := s.waiting[id]
		delete(s.waiting, id)
		s.mu.Unlock()
		if p != nil {
			p.ans = append(p.ans[:0], msg...)
			p.done <- struct{}{}
		}
	}
}

// readAll reads r to its end into buf's space, growing it only when a message needs more.
func readAll(r io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}
