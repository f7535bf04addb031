package upstream

import (
	"encoding/json"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/proto"
)

func doBody(t testing.TB, m *Mux, body string, d time.Duration) (string, error) {
	t.Helper()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	err := m.Do(MethodOther, []byte(body), resp, time.Now().Add(d))
	return string(resp.Body()), err
}

func TestMuxRestoresIDsByteForByte(t *testing.T) {
	f := newFakeUpstream(t, false)
	m := startMux(t, f, nil)
	for _, id := range []string{`1`, `0`, `-7`, `"abc"`, `"a\"b\\c\u00e9"`, `""`, `18446744073709551616`,
		`123456789012345678901234567890`, `9007199254740993`, `1.0`, `1e3`, `-0.0`, `null`} {
		body := `{"jsonrpc":"2.0","id":` + id + `,"method":"echo","params":["x"]}`
		got, err := doBody(t, m, body, 10*time.Second)
		if err != nil {
			t.Fatalf("id %s: %v", id, err)
		}
		if want := `{"jsonrpc":"2.0","id":` + id + `,"result":["x"]}`; got != want {
			t.Fatalf("id %s:\n got %s\nwant %s", id, got, want)
		}
	}
}

// wss:// (Infura): frames are encrypted, batches and subscriptions work the same.
func TestMuxOverTLS(t *testing.T) {
	f, tcfg := newFakeUpstreamTLS(t)
	m := startMux(t, f, func(c *MuxConfig) { c.TLSConfig = tcfg })
	for i := 0; i < 50; i++ {
		body := fmt.Sprintf(`{"jsonrpc":"2.0","id":"t%d","method":"echo","params":[%d]}`, i, i)
		got, err := doBody(t, m, body, 10*time.Second)
		if want := fmt.Sprintf(`{"jsonrpc":"2.0","id":"t%d","result":[%d]}`, i, i); err != nil || got != want {
			t.Fatalf("got %s %v, want %s", got, err, want)
		}
	}
	got, err := doBody(t, m, `[{"jsonrpc":"2.0","id":1,"method":"echo","params":[1]},{"jsonrpc":"2.0","id":2,"method":"echo","params":[2]}]`, 10*time.Second)
	if err != nil || got != `[{"jsonrpc":"2.0","id":2,"result":[2]},{"jsonrpc":"2.0","id":1,"result":[1]}]` {
		t.Fatalf("batch over TLS: %s %v", got, err)
	}
}

// Large answers arrive fragmented into many frames; server pings get pongs; a message
// over the read limit breaks the socket, which comes back.
func TestMuxWireProtocol(t *testing.T) {
	f := newFakeUpstream(t, false)
	m := startMux(t, f, func(c *MuxConfig) { c.Conns = 1; c.ReadLimit = 1 << 20 })
	for _, n := range []int{0, 100, 4000, 70000, 300000} {
		got, err := doBody(t, m, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"big","params":[%d]}`, n, n), 10*time.Second)
		if want := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"result":"%s"}`, n, strings.Repeat("b", n)); err != nil || got != want {
			t.Fatalf("%d bytes: %v, %d bytes back", n, err, len(got))
		}
	}
	if got, err := doBody(t, m, `{"jsonrpc":"2.0","id":1,"method":"ping-me"}`, 10*time.Second); err != nil || !strings.Contains(got, "pinged") {
		t.Fatalf("ping-me: %s %v", got, err)
	}
	waitFor(t, "a pong", func() bool { return f.pongs.Load() > 0 })
	// Over the limit: the call fails, the socket is replaced.
	if _, err := doBody(t, m, `{"jsonrpc":"2.0","id":2,"method":"big","params":[2000000]}`, 10*time.Second); err != proto.ErrUnavailable {
		t.Fatalf("over the read limit: %v", err)
	}
	waitFor(t, "reconnect", func() bool { return m.slots[0].isUp.Load() && f.dialed.Load() >= 2 })
	// A clean close from the server: pending calls fail, the socket is replaced.
	sink := newChanSink(1)
	m.Send([]byte(`{"jsonrpc":"2.0","id":3,"method":"close"}`), nil, time.Time{}, sink)
	if got := string(sink.next(t)); !strings.Contains(got, "upstream unavailable") {
		t.Fatalf("after a close frame: %s", got)
	}
	waitFor(t, "reconnect", func() bool { return m.slots[0].isUp.Load() && f.dialed.Load() >= 3 })
	if got, err := doBody(t, m, `{"jsonrpc":"2.0","id":4,"method":"echo","params":[4]}`, 10*time.Second); err != nil {
		t.Fatalf("after reconnects: %s %v", got, err)
	}
}

func TestMuxBatchMatchedPerElement(t *testing.T) {
	f := newFakeUpstream(t, false)
	m := startMux(t, f, nil)
	got, err := doBody(t, m, `[{"jsonrpc":"2.0","id":"a","method":"echo","params":[1]},`+
		`{"jsonrpc":"2.0","method":"echo","params":["note"]},`+
		`{"jsonrpc":"2.0","id":7,"method":"fail"},{"jsonrpc":"2.0","id":1.0,"method":"echo","params":[3]}]`, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// The fake answers in reverse order; the batch answer keeps the upstream's order.
	want := `[{"jsonrpc":"2.0","id":1.0,"result":[3]},{"jsonrpc":"2.0","id":7,"error":{"code":-32000,"message":"boom"}},` +
		`{"jsonrpc":"2.0","id":"a","result":[1]}]`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	// Only notifications: no answer at all.
	if got, err := doBody(t, m, `[{"jsonrpc":"2.0","method":"echo"}]`, time.Second); err != nil || got != "" {
		t.Fatalf("notification batch: %q %v", got, err)
	}
}

// Many goroutines, all using the same ids, each checking it got its own answer.
func TestMuxConcurrentCollidingIDs(t *testing.T) {
	f := newFakeUpstream(t, false)
	m := startMux(t, f, func(c *MuxConfig) { c.Conns = 3 })
	const workers, perWorker = 48, 150
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp := fasthttp.AcquireResponse()
			defer fasthttp.ReleaseResponse(resp)
			for i := 0; i < perWorker; i++ {
				id := strconv.Itoa(i % 5) // colliding on purpose
				var body, want string
				if i%7 == 0 {
					body = fmt.Sprintf(`[{"jsonrpc":"2.0","id":%s,"method":"echo","params":[%d,%d]},{"jsonrpc":"2.0","id":"%s","method":"echo","params":[%d]}]`, id, w, i, id, w)
					want = fmt.Sprintf(`[{"jsonrpc":"2.0","id":"%s","result":[%d]},{"jsonrpc":"2.0","id":%s,"result":[%d,%d]}]`, id, w, id, w, i)
				} else {
					body = fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"method":"echo","params":[%d,%d]}`, id, w, i)
					want = fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"result":[%d,%d]}`, id, w, i)
				}
				if err := m.Do(MethodOther, []byte(body), resp, time.Now().Add(30*time.Second)); err != nil {
					errs <- err
					return
				}
				if got := string(resp.Body()); got != want {
					errs <- fmt.Errorf("worker %d request %d:\n got %s\nwant %s", w, i, got, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := pendingRequests.Load(); n != 0 {
		t.Fatalf("pending gauge %d after all answers", n)
	}
}

// Many asynchronous callers (sinks) with colliding ids, as /socket2socket clients are.
func TestMuxSendManySinks(t *testing.T) {
	f := newFakeUpstream(t, false)
	m := startMux(t, f, nil)
	const sinks, perSink = 40, 100
	all := make([]*chanSink, sinks)
	for i := range all {
		all[i] = newChanSink(perSink)
	}
	var wg sync.WaitGroup
	for i, s := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < perSink; j++ {
				m.Send([]byte(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"echo","params":[%d]}`, j, i)), nil, time.Time{}, s)
			}
		}()
	}
	wg.Wait()
	for i, s := range all {
		seen := make(map[int]bool)
		for j := 0; j < perSink; j++ {
			var r struct {
				ID     int   `json:"id"`
				Result []int `json:"result"`
			}
			if err := json.Unmarshal(s.next(t), &r); err != nil {
				t.Fatal(err)
			}
			if len(r.Result) != 1 || r.Result[0] != i || seen[r.ID] {
				t.Fatalf("sink %d got id %d result %v (seen %v)", i, r.ID, r.Result, seen[r.ID])
			}
			seen[r.ID] = true
		}
	}
}

func TestMuxTimeoutRemovesPending(t *testing.T) {
	f := newFakeUpstream(t, false)
	m := startMux(t, f, nil)
	start := time.Now()
	_, err := doBody(t, m, `{"jsonrpc":"2.0","id":1,"method":"silent"}`, 50*time.Millisecond)
	if err != proto.ErrTimeout {
		t.Fatalf("err %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("timeout took %v", d)
	}
	s := newChanSink(1)
	m.Send([]byte(`[{"jsonrpc":"2.0","id":"x","method":"silent"}]`), []byte(`{"local":1}`), time.Now().Add(50*time.Millisecond), s)
	want := `[{"local":1},{"jsonrpc":"2.0","id":"x","error":{"code":-32000,"message":"upstream timed out"}}]`
	if got := string(s.next(t)); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	for _, sl := range m.slots {
		sl.mu.Lock()
		n := len(sl.pending)
		sl.mu.Unlock()
		if n != 0 {
			t.Fatalf("%d pending entries left after timeouts", n)
		}
	}
	// The socket still works.
	if got, err := doBody(t, m, `{"jsonrpc":"2.0","id":2,"method":"echo","params":[]}`, 10*time.Second); err != nil {
		t.Fatalf("after timeout: %s %v", got, err)
	}
}

// A full queue answers at once. White box: a socket marked up with no writer.
func TestMuxQueueFullIsOverloaded(t *testing.T) {
	m := NewMux(MuxConfig{URL: "ws://127.0.0.1:1", Conns: 1, QueueSize: 2})
	s := m.slots[0]
	s.mu.Lock()
	s.up = true
	s.mu.Unlock()
	s.isUp.Store(true)
	results := make([]error, 0, 3)
	sinks := make([]*chanSink, 3)
	for i := range sinks {
		sinks[i] = newChanSink(1)
		m.Send([]byte(`{"jsonrpc":"2.0","id":1,"method":"echo"}`), nil, time.Now().Add(time.Hour), sinks[i])
	}
	got := string(sinks[2].next(t))
	if want := `{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"gateway overloaded: upstream queue full, retry later"}}`; got != want {
		t.Fatalf("third request: %s", got)
	}
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	results = append(results, m.Do(MethodOther, []byte(`{"id":2,"method":"x"}`), resp, time.Now().Add(time.Hour)))
	if results[0] != proto.ErrOverloaded {
		t.Fatalf("Do on a full queue: %v", results[0])
	}
	// Tear down as a lost connection would: the two queued calls are answered.
	s.isUp.Store(false)
	s.sweep()
	for _, k := range sinks[:2] {
		if got := string(k.next(t)); got != `{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"upstream unavailable"}}` {
			t.Fatalf("swept: %s", got)
		}
	}
}

// The node drops the connection with requests in flight: every one is answered with an
// error at once, and the Mux reconnects.
func TestMuxConnectionLossAnswersPending(t *testing.T) {
	f := newFakeUpstream(t, false)
	m := startMux(t, f, func(c *MuxConfig) { c.Conns = 1 })
	const n = 200
	sink := newChanSink(n)
	for i := 0; i < n; i++ {
		m.Send([]byte(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"silent"}`, i)), nil, time.Now().Add(time.Hour), sink)
	}
	waitFor(t, "silent requests pending", func() bool { return pendingRequests.Load() >= n })
	start := time.Now()
	m.Send([]byte(`{"jsonrpc":"2.0","id":"d","method":"drop"}`), nil, time.Now().Add(time.Hour), sink)
	seen := make(map[string]bool)
	for i := 0; i < n+1; i++ {
		var r struct {
			ID    json.RawMessage `json:"id"`
			Error struct{ Message string }
		}
		if err := json.Unmarshal(sink.next(t), &r); err != nil {
			t.Fatal(err)
		}
		if r.Error.Message != "upstream unavailable" || seen[string(r.ID)] {
			t.Fatalf("answer %d: id %s error %q", i, r.ID, r.Error.Message)
		}
		seen[string(r.ID)] = true
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("answers took %v", d)
	}
	waitFor(t, "reconnect", func() bool { return m.slots[0].isUp.Load() })
	if got, err := doBody(t, m, `{"jsonrpc":"2.0","id":1,"method":"echo","params":[1]}`, 10*time.Second); err != nil {
		t.Fatalf("after reconnect: %s %v", got, err)
	}
}

func TestMuxUnavailableFailsFast(t *testing.T) {
	f := newFakeUpstream(t, false)
	m := startMux(t, f, func(c *MuxConfig) { c.Conns = 1; c.BackoffMin = time.Second; c.BackoffMax = time.Second })
	f.refused.Store(true)
	f.dropAll()
	waitFor(t, "socket down", func() bool { return !m.slots[0].isUp.Load() })
	start := time.Now()
	if _, err := doBody(t, m, `{"jsonrpc":"2.0","id":1,"method":"echo"}`, 10*time.Second); err != proto.ErrUnavailable {
		t.Fatalf("err %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("took %v", d)
	}
	f.refused.Store(false)
	waitFor(t, "reconnect", func() bool { return m.slots[0].isUp.Load() })
}

func TestMuxSendsBasicAuthHeader(t *testing.T) {
	f := newFakeUpstream(t, false)
	h := make(map[string][]string)
	h["Authorization"] = []string{"Basic dXNlcjpzZWNyZXQ="}
	startMux(t, f, func(c *MuxConfig) { c.Header = h; c.Conns = 1 })
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.auth != "Basic dXNlcjpzZWNyZXQ=" {
		t.Fatalf("Authorization %q", f.auth)
	}
}

func TestMuxCloseEndsGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	f := newFakeUpstream(t, false)
	m := NewMux(MuxConfig{URL: f.url, Conns: 3})
	m.Start()
	if err := m.WaitReady(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	sink := newChanSink(1)
	m.Send([]byte(`{"jsonrpc":"2.0","id":1,"method":"silent"}`), nil, time.Time{}, sink)
	m.Close()
	if got := string(sink.next(t)); got != `{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"upstream unavailable"}}` {
		t.Fatalf("pending at close: %s", got)
	}
	f.close()
	waitFor(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before+2 })
}

// chanSink collects what a Mux delivers, as a /socket2socket client would.
type chanSink struct{ ch chan []byte }

func newChanSink(n int) *chanSink { return &chanSink{ch: make(chan []byte, n+64)} }

func (s *chanSink) Reply(msg []byte) {
	if msg != nil {
		s.ch <- append([]byte(nil), msg...)
	}
}

func (s *chanSink) Notify(frame []byte) { s.ch <- frame }

func (s *chanSink) next(t testing.TB) []byte {
	t.Helper()
	select {
	case b := <-s.ch:
		return b
	case <-time.After(20 * time.Second):
		t.Fatal("no message within 20s")
		return nil
	}
}
