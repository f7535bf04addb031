// Package subrec records websocket subscriptions (newHeads, logs) the way a client sees
// them, and checks what a client must be able to rely on across upstream failures:
// one subscription id throughout, every block exactly once and in order (a reorg only
// where the hashes show one), and logs without gaps or duplicates, compared with the
// node's own eth_getLogs over the whole range.
//
//	rec := subrec.Dial(t, gatewayWS)            // e.g. ws://…/socket2socket
//	heads := rec.NewHeads(t)
//	logs := rec.Logs(t, subrec.Filter{Address: addr, Topics: [][]string{{testnode.EmitterTopic}}})
//	... move the subscription between upstreams ...
//	heads.WaitHead(t, last, time.Minute)
//	if err := heads.CheckHeads(); err != nil { t.Fatal(err) }
//	if err := logs.CheckLogs(node.HTTPURL, from, to); err != nil { t.Fatal(err) }
//
// A reader goroutine records; it never touches the test. Dial, the subscribe calls and
// the Wait helpers fail the test from the caller's goroutine; the checks return errors.
package subrec

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

// CallTimeout bounds one call on the recorder's socket (subscribe, unsubscribe, Call).
const CallTimeout = 30 * time.Second

// Recorder is one websocket connection with its subscriptions.
type Recorder struct {
	URL  string
	conn *websocket.Conn

	writeMu sync.Mutex
	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]*pendingCall
	subs    map[string]*Sub
	unknown []Notification // notifications for ids never subscribed on this socket
	closing bool
	err     error // why the socket closed, unless Close closed it
	errAt   time.Time
	done    chan struct{}
}

type pendingCall struct {
	answer chan answer
	// onResult runs in the reader goroutine before the next message is read, so a
	// subscription is registered before its first notification is routed.
	onResult func(json.RawMessage)
}

type answer struct {
	result json.RawMessage
	err    error
}

// Notification is one eth_subscription message.
type Notification struct {
	At           time.Time
	Subscription string
	Result       json.RawMessage
}

// Dial opens a websocket to url; it is closed when the test ends.
func Dial(t testing.TB, url string) *Recorder {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: CallTimeout}
	conn, _, err := d.Dial(url, nil)
	if err != nil {
		t.Fatalf("subrec: dial %s: %v", url, err)
	}
	r := &Recorder{URL: url, conn: conn, pending: map[uint64]*pendingCall{}, subs: map[string]*Sub{}, done: make(chan struct{})}
	go r.read()
	t.Cleanup(r.Close)
	return r
}

func (r *Recorder) read() {
	defer close(r.done)
	for {
		_, msg, err := r.conn.ReadMessage()
		at := time.Now()
		if err != nil {
			r.mu.Lock()
			if !r.closing {
				r.err, r.errAt = err, at
			}
			pending := r.pending
			r.pending = map[uint64]*pendingCall{}
			subs := r.subs
			r.mu.Unlock()
			for _, p := range pending {
				p.answer <- answer{err: fmt.Errorf("subrec: socket closed: %w", err)}
			}
			for _, s := range subs {
				s.wake()
			}
			return
		}
		var m struct {
			ID     *uint64         `json:"id"`
			Method string          `json:"method"`
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
			Params struct {
				Subscription string          `json:"subscription"`
				Result       json.RawMessage `json:"result"`
			} `json:"params"`
		}
		if err := json.Unmarshal(msg, &m); err != nil {
			r.mu.Lock()
			r.unknown = append(r.unknown, Notification{At: at, Result: msg})
			r.mu.Unlock()
			continue
		}
		switch {
		case m.Method == "eth_subscription":
			n := Notification{At: at, Subscription: m.Params.Subscription, Result: m.Params.Result}
			r.mu.Lock()
			s := r.subs[n.Subscription]
			if s == nil {
				r.unknown = append(r.unknown, n)
			}
			r.mu.Unlock()
			if s != nil {
				s.add(n)
			}
		case m.ID != nil:
			r.mu.Lock()
			p := r.pending[*m.ID]
			delete(r.pending, *m.ID)
			r.mu.Unlock()
			if p == nil {
				continue
			}
			if m.Error != nil {
				p.answer <- answer{err: fmt.Errorf("rpc error %d: %s", m.Error.Code, m.Error.Message)}
				continue
			}
			if p.onResult != nil {
				p.onResult(m.Result)
			}
			p.answer <- answer{result: m.Result}
		default:
			r.mu.Lock()
			r.unknown = append(r.unknown, Notification{At: at, Result: msg})
			r.mu.Unlock()
		}
	}
}

// Call makes a JSON-RPC call on the recorder's socket and returns its result; safe from
// any goroutine.
func (r *Recorder) Call(method string, params ...any) (json.RawMessage, error) {
	return r.call(method, params, nil)
}

func (r *Recorder) call(method string, params []any, onResult func(json.RawMessage)) (json.RawMessage, error) {
	if params == nil {
		params = []any{}
	}
	p := &pendingCall{answer: make(chan answer, 1), onResult: onResult}
	r.mu.Lock()
	if r.err != nil || r.closing {
		err := r.err
		r.mu.Unlock()
		return nil, fmt.Errorf("subrec: socket closed: %v", err)
	}
	r.nextID++
	id := r.nextID
	r.pending[id] = p
	r.mu.Unlock()
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": params})
	r.writeMu.Lock()
	_ = r.conn.SetWriteDeadline(time.Now().Add(CallTimeout))
	err := r.conn.WriteMessage(websocket.TextMessage, body)
	r.writeMu.Unlock()
	if err != nil {
		r.mu.Lock()
		delete(r.pending, id)
		r.mu.Unlock()
		return nil, fmt.Errorf("subrec: write %s: %w", method, err)
	}
	select {
	case a := <-p.answer:
		return a.result, a.err
	case <-time.After(CallTimeout):
		r.mu.Lock()
		delete(r.pending, id)
		r.mu.Unlock()
		return nil, fmt.Errorf("subrec: %s not answered within %v", method, CallTimeout)
	}
}

// ClosedError is why and when a recorder's socket closed under it.
type ClosedError struct {
	At  time.Time
	Err error
}

func (e *ClosedError) Error() string {
	return fmt.Sprintf("socket closed at %s: %v", e.At.Format("15:04:05.000"), e.Err)
}

func (e *ClosedError) Unwrap() error { return e.Err }

// Err returns a *ClosedError once the socket closed under the recorder; nil while it
// is open, or when Close closed it.
func (r *Recorder) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		return nil
	}
	return &ClosedError{At: r.errAt, Err: r.err}
}

// Unknown returns messages that belong to no subscription of this socket (wrong or
// stale subscription ids) and messages that were not JSON-RPC.
func (r *Recorder) Unknown() []Notification {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Notification(nil), r.unknown...)
}

// Close closes the socket (idempotent); records stay readable.
func (r *Recorder) Close() {
	r.mu.Lock()
	already := r.closing
	r.closing = true
	r.mu.Unlock()
	if !already {
		r.writeMu.Lock()
		_ = r.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		r.writeMu.Unlock()
		_ = r.conn.Close()
	}
	<-r.done
}

// Filter selects logs, as eth_subscribe("logs", …) and eth_getLogs take it.
type Filter struct {
	Address string     // "" for any
	Topics  [][]string // per position, any of; nil or empty for any
}

func (f Filter) params() map[string]any {
	m := map[string]any{}
	if f.Address != "" {
		m["address"] = f.Address
	}
	if len(f.Topics) > 0 {
		ts := make([]any, len(f.Topics))
		for i, alt := range f.Topics {
			if len(alt) > 0 {
				ts[i] = alt
			}
		}
		m["topics"] = ts
	}
	return m
}

// NewHeads subscribes to newHeads on the recorder's socket.
func (r *Recorder) NewHeads(t testing.TB) *Sub {
	t.Helper()
	return r.subscribe(t, "newHeads", Filter{}, "newHeads")
}

// Logs subscribes to the logs that match f.
func (r *Recorder) Logs(t testing.TB, f Filter) *Sub {
	t.Helper()
	return r.subscribe(t, "logs", f, "logs", f.params())
}

func (r *Recorder) subscribe(t testing.TB, kind string, f Filter, params ...any) *Sub {
	t.Helper()
	s := &Sub{Kind: kind, Filter: f, r: r, changed: make(chan struct{})}
	res, err := r.call("eth_subscribe", params, func(res json.RawMessage) {
		if json.Unmarshal(res, &s.ID) == nil {
			r.mu.Lock()
			r.subs[s.ID] = s
			r.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatalf("subrec: eth_subscribe %s on %s: %v", kind, r.URL, err)
	}
	if s.ID == "" {
		t.Fatalf("subrec: eth_subscribe %s answered %s", kind, res)
	}
	s.Since = time.Now()
	return s
}

// Sub is one subscription and the notifications it received.
type Sub struct {
	// ID is the subscription id eth_subscribe answered: every notification must carry
	// it.
	ID     string
	Kind   string // "newHeads" or "logs"
	Filter Filter // for logs
	// Since is when the subscription was confirmed.
	Since time.Time

	r       *Recorder
	mu      sync.Mutex
	notes   []Notification
	changed chan struct{} // closed and replaced on every notification
}

func (s *Sub) add(n Notification) {
	s.mu.Lock()
	s.notes = append(s.notes, n)
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// wake lets waiters see that the socket closed.
func (s *Sub) wake() {
	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// Notifications returns what the subscription received so far, in order.
func (s *Sub) Notifications() []Notification {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Notification(nil), s.notes...)
}

// Unsubscribe ends the subscription (eth_unsubscribe); the records stay.
func (s *Sub) Unsubscribe(t testing.TB) {
	t.Helper()
	res, err := s.r.Call("eth_unsubscribe", s.ID)
	if err != nil || string(res) != "true" {
		t.Fatalf("subrec: eth_unsubscribe %s: %s %v", s.ID, res, err)
	}
}

// Wait blocks until done(notifications) is true, the socket closes, or within passes;
// it is woken by each notification (no polling).
func (s *Sub) Wait(within time.Duration, done func([]Notification) bool) error {
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		ok := done(s.notes)
		changed := s.changed
		n := len(s.notes)
		s.mu.Unlock()
		if ok {
			return nil
		}
		if err := s.r.Err(); err != nil {
			return fmt.Errorf("subrec: %s after %d notifications: %w", s.Kind, n, err)
		}
		select {
		case <-changed:
		case <-deadline.C:
			return fmt.Errorf("subrec: %s: condition not met within %v (%d notifications)", s.Kind, within, n)
		}
	}
}

// WaitHead waits until a newHeads notification with a number of at least num arrived.
func (s *Sub) WaitHead(t testing.TB, num uint64, within time.Duration) {
	t.Helper()
	err := s.Wait(within, func(ns []Notification) bool {
		for i := len(ns) - 1; i >= 0; i-- {
			if h, err := parseHead(ns[i]); err == nil && h.Number >= num {
				return true
			}
		}
		return false
	})
	if err != nil {
		t.Fatalf("waiting for head %d: %v", num, err)
	}
}

// WaitLogBlock waits until a log of block num or later arrived.
func (s *Sub) WaitLogBlock(t testing.TB, num uint64, within time.Duration) {
	t.Helper()
	err := s.Wait(within, func(ns []Notification) bool {
		for i := len(ns) - 1; i >= 0; i-- {
			if l, err := parseLog(ns[i]); err == nil && l.BlockNumber >= num {
				return true
			}
		}
		return false
	})
	if err != nil {
		t.Fatalf("waiting for a log of block %d: %v", num, err)
	}
}

// Head is a newHeads notification, parsed.
type Head struct {
	At         time.Time
	Number     uint64
	Hash       string
	ParentHash string
}

func parseHead(n Notification) (Head, error) {
	var h struct{ Number, Hash, ParentHash string }
	if err := json.Unmarshal(n.Result, &h); err != nil || h.Hash == "" {
		return Head{}, fmt.Errorf("not a head: %.200s", n.Result)
	}
	num, err := parseQuantity(h.Number)
	if err != nil {
		return Head{}, fmt.Errorf("head number: %w", err)
	}
	return Head{At: n.At, Number: num, Hash: h.Hash, ParentHash: h.ParentHash}, nil
}

// Heads returns the newHeads notifications, parsed (unparseable ones are skipped:
// CheckHeads reports them).
func (s *Sub) Heads() []Head {
	var out []Head
	for _, n := range s.Notifications() {
		if h, err := parseHead(n); err == nil {
			out = append(out, h)
		}
	}
	return out
}

// Log is a logs notification (or an eth_getLogs entry), parsed.
type Log struct {
	At               time.Time `json:"-"`
	Address          string    `json:"address"`
	Topics           []string  `json:"topics"`
	Data             string    `json:"data"`
	BlockNumber      uint64    `json:"-"`
	BlockHash        string    `json:"blockHash"`
	TransactionHash  string    `json:"transactionHash"`
	TransactionIndex string    `json:"transactionIndex"`
	LogIndex         uint64    `json:"-"`
	Removed          bool      `json:"removed"`
}

func (l Log) String() string {
	return fmt.Sprintf("block %d %s log %d tx %s data %s", l.BlockNumber, l.BlockHash, l.LogIndex, l.TransactionHash, l.Data)
}

func decodeLog(raw json.RawMessage) (Log, error) {
	var l Log
	var q struct{ BlockNumber, LogIndex string }
	if err := json.Unmarshal(raw, &l); err != nil {
		return Log{}, fmt.Errorf("not a log: %.200s", raw)
	}
	if err := json.Unmarshal(raw, &q); err != nil {
		return Log{}, fmt.Errorf("not a log: %.200s", raw)
	}
	var err1, err2 error
	l.BlockNumber, err1 = parseQuantity(q.BlockNumber)
	l.LogIndex, err2 = parseQuantity(q.LogIndex)
	if err := errors.Join(err1, err2); err != nil || l.BlockHash == "" {
		return Log{}, fmt.Errorf("not a log: %.200s", raw)
	}
	return l, nil
}

func parseLog(n Notification) (Log, error) {
	l, err := decodeLog(n.Result)
	l.At = n.At
	return l, err
}

// Logs returns the logs notifications, parsed (unparseable ones are skipped: CheckLogs
// reports them).
func (s *Sub) Logs() []Log {
	var out []Log
	for _, n := range s.Notifications() {
		if l, err := parseLog(n); err == nil {
			out = append(out, l)
		}
	}
	return out
}

func parseQuantity(s string) (uint64, error) {
	if len(s) < 3 || s[:2] != "0x" {
		return 0, fmt.Errorf("not a quantity: %q", s)
	}
	return strconv.ParseUint(s[2:], 16, 64)
}

func quantity(n uint64) string { return "0x" + strconv.FormatUint(n, 16) }
