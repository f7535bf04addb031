// Package rpcspy is a JSON-RPC proxy for tests that records every call it forwards to
// one upstream node, over HTTP and websockets on a single port, and can answer in the
// node's place with faults a real node cannot produce: HTTP 429, JSON-RPC errors,
// wrong results. Put one in front of each upstream to count which upstream served what
// (for example, that a fallback upstream got no request while the primaries were
// healthy), independently of the gateway's own metrics.
//
//	spy := rpcspy.Start(t, node.HTTPURL, node.WSURL) // or a toxiproxy.Upstream's URLs
//	gateway upstream: spy.URL (HTTP) and spy.WSURL (websocket)
//	... spy.Count("eth_call"), spy.CallsSince(t0), spy.SetFault(...)
package rpcspy

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

// Transport of a call.
const (
	HTTP = "http"
	WS   = "ws"
)

// Call is one JSON-RPC call the spy received (each element of a batch is one call).
type Call struct {
	At        time.Time
	Transport string // HTTP or WS
	Method    string
	// Faulted is true when the spy answered in the node's place (SetFault).
	Faulted bool
	// Failed is true when the node gave no answer to it over HTTP: the spy closed the
	// client's connection, as a failed node's would be. A client may send it again.
	Failed bool
}

// Fault is an answer the spy gives in the node's place.
type Fault struct {
	// Status, when not 0, is the HTTP status of the answer (e.g. 429); over websockets,
	// where there is no status, the call gets a JSON-RPC error -32005 instead.
	Status int
	// Error, when set, is a JSON-RPC error object answered with HTTP 200, e.g.
	// {"code":-32000,"message":"header not found"}.
	Error json.RawMessage
	// Result, when set, is a (wrong) result answered as if the node had.
	Result json.RawMessage
	// Close, over websockets, closes the client's socket instead of answering.
	Close bool
	// Delay holds the call this long first: a node taking as long as the call makes it.
	// With nothing else set, the call then goes to the node as usual.
	Delay time.Duration
}

// delayOnly reports whether f only delays the call.
func (f *Fault) delayOnly() bool {
	return f.Status == 0 && f.Error == nil && f.Result == nil && !f.Close
}

// Spy is a running proxy.
type Spy struct {
	// URL and WSURL are where clients (the gateway) connect: http://… and ws://… on
	// one loopback port.
	URL, WSURL string

	upHTTP, upWS string
	client       *http.Client
	srv          *http.Server
	upgrader     websocket.Upgrader

	mu    sync.Mutex
	calls []Call
	reset int // calls Reset dropped: s.calls[i] is the call numbered reset+i
	fault func(method string) *Fault
	conns map[*websocket.Conn]bool
	// subs are the subscription ids the node gave through the spy, silenced those
	// whose notifications are dropped (silence.go), dropped how many were.
	subs     []string
	silenced map[string]bool
	dropped  int
}

// Start runs a spy on a free loopback port that forwards HTTP POSTs to httpUpstream and
// websockets to wsUpstream ("" to refuse them). It stops when the test ends.
func Start(t testing.TB, httpUpstream, wsUpstream string) *Spy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Spy{
		URL:    "http://" + l.Addr().String(),
		WSURL:  "ws://" + l.Addr().String(),
		upHTTP: httpUpstream, upWS: wsUpstream,
		client: &http.Client{Timeout: 60 * time.Second},
		conns:  map[*websocket.Conn]bool{},
	}
	s.upgrader.CheckOrigin = func(*http.Request) bool { return true }
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 30 * time.Second}
	go func() { _ = s.srv.Serve(l) }()
	t.Cleanup(s.close)
	return s
}

func (s *Spy) close() {
	_ = s.srv.Close()
	s.mu.Lock()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.client.CloseIdleConnections()
}

// SetFault makes the spy answer in the node's place whenever f returns a Fault for a
// call's method; nil f (or a nil Fault) forwards as usual. A batch is faulted as a
// whole when any of its methods is.
func (s *Spy) SetFault(f func(method string) *Fault) {
	s.mu.Lock()
	s.fault = f
	s.mu.Unlock()
}

// Calls returns every call received so far, in order.
func (s *Spy) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// CallsSince returns the calls received at or after t.
func (s *Spy) CallsSince(t time.Time) []Call {
	var out []Call
	for _, c := range s.Calls() {
		if !c.At.Before(t) {
			out = append(out, c)
		}
	}
	return out
}

// Count returns how many calls of method were received ("" for all).
func (s *Spy) Count(method string) int {
	n := 0
	for _, c := range s.Calls() {
		if method == "" || c.Method == method {
			n++
		}
	}
	return n
}

// Reset forgets the calls recorded so far.
func (s *Spy) Reset() {
	s.mu.Lock()
	s.reset += len(s.calls)
	s.calls = nil
	s.mu.Unlock()
}

// methods returns the method of each call in a request or batch ("" when unparseable).
func methods(body []byte) []string {
	var one struct{ Method string }
	if b := bytes.TrimSpace(body); len(b) > 0 && b[0] == '[' {
		var batch []struct{ Method string }
		if json.Unmarshal(b, &batch) != nil {
			return []string{""}
		}
		out := make([]string, len(batch))
		for i, c := range batch {
			out[i] = c.Method
		}
		return out
	}
	if json.Unmarshal(body, &one) != nil {
		return []string{""}
	}
	return []string{one.Method}
}

// record notes the calls of body and returns the fault to answer with, if any, and
// the numbers of its calls [from, to) (for failed).
func (s *Spy) record(transport string, body []byte) (*Fault, int, int) {
	ms := methods(body)
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var fault *Fault
	if s.fault != nil {
		for _, m := range ms {
			if f := s.fault(m); f != nil {
				fault = f
				break
			}
		}
	}
	from := s.reset + len(s.calls)
	for _, m := range ms {
		s.calls = append(s.calls, Call{At: now, Transport: transport, Method: m, Faulted: fault != nil})
	}
	return fault, from, s.reset + len(s.calls)
}

// failed marks the calls numbered [from, to) as failed, those Reset has not dropped.
func (s *Spy) failed(from, to int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := max(from-s.reset, 0); i < to-s.reset; i++ {
		s.calls[i].Failed = true
	}
}

// answer builds the JSON-RPC answer of a fault to body (one object, or one per batch
// element), carrying each request's id.
func answer(body []byte, f *Fault) []byte {
	errObj := f.Error
	if f.Status != 0 && errObj == nil {
		errObj = json.RawMessage(`{"code":-32005,"message":"rate limited (rpcspy fault)"}`)
	}
	one := func(id json.RawMessage) json.RawMessage {
		if id == nil {
			id = json.RawMessage("null")
		}
		if f.Result != nil && f.Status == 0 && f.Error == nil {
			return json.RawMessage(`{"jsonrpc":"2.0","id":` + string(id) + `,"result":` + string(f.Result) + `}`)
		}
		return json.RawMessage(`{"jsonrpc":"2.0","id":` + string(id) + `,"error":` + string(errObj) + `}`)
	}
	if b := bytes.TrimSpace(body); len(b) > 0 && b[0] == '[' {
		var batch []struct{ ID json.RawMessage }
		_ = json.Unmarshal(b, &batch)
		out := make([]json.RawMessage, len(batch))
		for i, c := range batch {
			out[i] = one(c.ID)
		}
		res, _ := json.Marshal(out)
		return res
	}
	var req struct{ ID json.RawMessage }
	_ = json.Unmarshal(body, &req)
	return one(req.ID)
}

func (s *Spy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if websocket.IsWebSocketUpgrade(r) {
		s.serveWS(w, r)
		return
	}
	if r.Method != http.MethodPost || s.upHTTP == "" {
		http.Error(w, "rpcspy: POST JSON-RPC only", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	f, from, to := s.record(HTTP, body)
	if f != nil && f.Delay > 0 {
		select {
		case <-time.After(f.Delay):
		case <-r.Context().Done():
			return
		}
	}
	if f != nil && !f.delayOnly() {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(max(f.Status, http.StatusOK))
		_, _ = w.Write(answer(body, f))
		return
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, s.upHTTP, bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		// The node's failure, passed on as a failed connection would be: the client
		// sees its request fail, not a made-up answer.
		s.failed(from, to)
		hj, ok := w.(http.Hijacker)
		if ok {
			if c, _, err := hj.Hijack(); err == nil {
				_ = c.Close()
				return
			}
		}
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for _, h := range []string{"Content-Type", "Content-Encoding"} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

func (s *Spy) serveWS(w http.ResponseWriter, r *http.Request) {
	if s.upWS == "" {
		http.Error(w, "rpcspy: no websocket upstream", http.StatusServiceUnavailable)
		return
	}
	up, resp, err := websocket.DefaultDialer.Dial(s.upWS, nil)
	if err != nil {
		status := http.StatusBadGateway
		if resp != nil {
			status = resp.StatusCode
		}
		http.Error(w, "rpcspy: upstream websocket: "+err.Error(), status)
		return
	}
	client, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		_ = up.Close()
		return
	}
	s.mu.Lock()
	s.conns[client], s.conns[up] = true, true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, client)
		delete(s.conns, up)
		s.mu.Unlock()
		_ = client.Close()
		_ = up.Close()
	}()
	// The client's socket has two writers (answers from the node, faults from here), and
	// so has the node's once a delayed call is forwarded late.
	var clientWrite, upWrite sync.Mutex
	var subs subTracker
	done := make(chan struct{})
	go func() { // node → client
		defer close(done)
		for {
			typ, msg, err := up.ReadMessage()
			if err != nil {
				_ = client.Close()
				return
			}
			if !s.received(&subs, msg) {
				continue
			}
			clientWrite.Lock()
			err = client.WriteMessage(typ, msg)
			clientWrite.Unlock()
			if err != nil {
				return
			}
		}
	}()
	for { // client → node
		typ, msg, err := client.ReadMessage()
		if err != nil {
			_ = up.Close()
			break
		}
		f, _, _ := s.record(WS, msg)
		subs.sent(msg)
		switch {
		case f != nil && f.Close:
		case f != nil && f.Delay > 0:
			// Later, without holding up the calls behind it on the socket.
			go func() {
				select {
				case <-time.After(f.Delay):
				case <-done:
					return
				}
				if f.delayOnly() {
					upWrite.Lock()
					_ = up.WriteMessage(typ, msg)
					upWrite.Unlock()
					return
				}
				clientWrite.Lock()
				_ = client.WriteMessage(websocket.TextMessage, answer(msg, f))
				clientWrite.Unlock()
			}()
		case f != nil:
			clientWrite.Lock()
			err = client.WriteMessage(websocket.TextMessage, answer(msg, f))
			clientWrite.Unlock()
		default:
			upWrite.Lock()
			err = up.WriteMessage(typ, msg)
			upWrite.Unlock()
		}
		if f != nil && f.Close {
			break
		}
		if err != nil {
			break
		}
	}
	_ = up.Close()
	<-done
}

// MethodsOf returns the distinct methods of calls, in first-seen order (for messages).
func MethodsOf(calls []Call) string {
	seen := map[string]int{}
	var order []string
	for _, c := range calls {
		if seen[c.Method] == 0 {
			order = append(order, c.Method)
		}
		seen[c.Method]++
	}
	var b strings.Builder
	for i, m := range order {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(m)
		b.WriteString("×")
		b.WriteString(strconv.Itoa(seen[m]))
	}
	return b.String()
}
