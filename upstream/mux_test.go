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

	"github.com/infura-gateway/infura-gateway/proto"
)

func TestMuxRestoresIDsByteForByte(t *testing.T) {
	f := newFakeUpstream(t, false)
	m := startMux(t, f, nil)
	for _, id := range []string{`1`, `0`, `-7`, `"abc"`, `"a\"b\\c\u00e9"`, `""`, `18446744073709551616`,
		`123456789012345678901234567890`, `9007199254740993`, `1.0`, `1e3`, `-0.0`, `null`} {
		got := mustCall(t, m, `{"jsonrpc":"2.0","id":`+id+`,"method":"echo","params":["x"]}`)
		if want := `{"jsonrpc":"2.0","id":` + id + `,"result":["x"]}`; got != want {
			t.Fatalf("id %s:\n got %s\nwant %s", id, got, want)
		}
	}
}

// The upstream receives the envelope the Mux writes, nothing of the client's framing:
// no extra members, no client id, compact params.
func TestMuxWritesTheEnvelope(t *testing.T) {
	f := newFakeUpstream(t, true)
	m := startMux(t, f, func(c *MuxConfig) { c.Conns = 1 })
	conn := within(t, f.accepted, "the Mux's connection")
	sink := newChanSink(1)
	sendBody(m, sink, `{ "params" : [ {"to":"0x1"} , "latest" ], "jsonrpc" : "2.0", "id":"client", "method":"eth_call", "ID":7, "extra":{"id":9} }`, time.Now().Add(20*time.Second))
	// The request is refused before the Mux (a letter-case variant of id): nothing is sent.
	if got := string(sink.next(t)); !strings.Contains(got, `"code":-32600`) {
		t.Fatalf("case variant: %s", got)
	}
	sendBody(m, sink, `{ "params" : [ {"to":"0x1"} , "latest" ], "jsonrpc" : "2.0", "id":"client", "method":"eth_\u0063all", "extra":{"id":9} }`, time.Now().Add(20*time.Second))
	got := within(t, f.recv, "the envelope upstream")
	if want := `{"jsonrpc":"2.0","id":1,"method":"eth_call","params":[{"to":"0x1"},"latest"]}`; string(got) != want {
		t.Fatalf("upstream got\n %s\nwant %s", got, want)
	}
	f.send(conn, `{"jsonrpc":"2.0","id":1,"result":"0x"}`)
	if got := string(sink.next(t)); got != `{"jsonrpc":"2.0","id":"client","result":"0x"}` {
		t.Fatalf("answer %s", got)
	}
}

// wss:// (Infura): frames are encrypted, batches work the same.
func TestMuxOverTLS(t *testing.T) {
	f, tcfg := newFakeUpstreamTLS(t)
	m := startMux(t, f, func(c *MuxConfig) { c.TLSConfig = tcfg })
	for i := 0; i < 50; i++ {
		got := mustCall(t, m, fmt.Sprintf(`{"jsonrpc":"2.0","id":"t%d","method":"echo","params":[%d]}`, i, i))
		if want := fmt.Sprintf(`{"jsonrpc":"2.0","id":"t%d","result":[%d]}`, i, i); got != want {
			t.Fatalf("got %s, want %s", got, want)
		}
	}
	got := mustCall(t, m, `[{"jsonrpc":"2.0","id":1,"method":"echo","params":[1]},{"jsonrpc":"2.0","id":2,"method":"echo","params":[2]}]`)
	if got != `[{"jsonrpc":"2.0","id":1,"result":[1]},{"jsonrpc":"2.0","id":2,"result":[2]}]` {
		t.Fatalf("batch over TLS: %s", got)
	}
}

// Large answers arrive fragmented into many frames; server pings get pongs; an answer
// over the read limit fails its one call and the socket carries on; a close frame from
// the server fails what is pending and the socket comes back.
func TestMuxWireProtocol(t *testing.T) {
	f := newFakeUpstream(t, false)
	m := startMux(t, f, func(c *MuxConfig) { c.Conns = 1; c.ReadLimit = 1 << 20 })
	for _, n := range []int{0, 100, 4000, 70000, 300000} {
		got := mustCall(t, m, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"big","params":[%d]}`, n, n))
		if want := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"result":"%s"}`, n, strings.Repeat("b", n)); got != want {
			t.Fatalf("%d bytes: %d bytes back", n, len(got))
		}
	}
	if got := mustCall(t, m, `{"jsonrpc":"2.0","id":1,"method":"ping_me"}`); !strings.Contains(got, "pinged") {
		t.Fatalf("ping-me: %s", got)
	}
	waitFor(t, "a pong", func() bool { return f.pongs.Load() > 0 })
	if _, err := callBody(m, `{"jsonrpc":"2.0","id":2,"method":"big","params":[2000000]}`, time.Now().Add(20*time.Second)); err != proto.ErrResponseTooLarge {
		t.Fatalf("over the read limit: %v", err)
	}
	if got := mustCall(t, m, `{"jsonrpc":"2.0","id":3,"method":"echo","params":[3]}`); got != `{"jsonrpc":"2.0","id":3,"result":[3]}` {
		t.Fatalf("after an oversized answer: %s", got)
	}
	if n := f.dialed.Load(); n != 1 {
		t.Fatalf("the socket was replaced after an oversized answer (%d dials)", n)
	}
	sink := newChanSink(1)
	sendBody(m, sink, `{"jsonrpc":"2.0","id":3,"method":"close"}`, time.Now().Add(20*time.Second))
	if got := string(sink.next(t)); !strings.Contains(got, "upstream unavailable") {
		t.Fatalf("after a close frame: %s", got)
	}
	waitFor(t, "reconnect", func() bool { return m.slots[0].isUp.Load() && f.dialed.Load() >= 2 })
	mustCall(t, m, `{"jsonrpc":"2.0","id":4,"method":"echo","params":[4]}`)
}

// One oversized answer on a socket shared by many callers and a subscription: only its
// caller fails; the others get their answers, the subscriber every notification, and
// the socket is never replaced.
func TestMuxOversizedAnswerFailsOneCall(t *testing.T) {
	f := newFakeUpstream(t, false)
	m := startMux(t, f, func(c *MuxConfig) { c.Conns = 1; c.ReadLimit = 64 << 10 })
	heads := make(chan string, 64)
	if _, err := m.Subscribe([]byte(`["newHeads"]`), func(r []byte) { heads <- string(r) }); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"echo","params":[%d]}`, i, i)
			want := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"result":[%d]}`, i, i)
			if i == 20 {
				body = `{"jsonrpc":"2.0","id":"big","method":"big","params":[5000000]}`
			}
			ans, err := callBody(m, body, time.Now().Add(20*time.Second))
			switch {
			case i == 20 && err != proto.ErrResponseTooLarge:
				errs <- fmt.Errorf("oversized: %v", err)
			case i != 20 && (err != nil || ans != want):
				errs <- fmt.Errorf("call %d: %s %v", i, ans, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for n := 1; n <= 3; n++ {
		f.notify("0xfeed1", strconv.Itoa(n))
		if got := recvString(t, heads); got != strconv.Itoa(n) {
			t.Fatalf("head %d: %s", n, got)
		}
	}
	if n := f.dialed.Load(); n != 1 {
		t.Fatalf("%d dials: the socket was replaced", n)
	}
	if n := m.metrics.oversized.Get(); n != 1 {
		t.Fatalf("oversized counter %d", n)
	}
}

// A batch goes out as one frame per element, answered in request order whatever order
// the upstream answers in; notifications get no answer.
func TestMuxBatchMatchedPerElement(t *testing.T) {
	f := newFakeUpstream(t, false)
	m := startMux(t, f, nil)
	got := mustCall(t, m, `[{"jsonrpc":"2.0","id":"a","method":"echo","params":[1]},`+
		`{"jsonrpc":"2.0","method":"echo","params":["note"]},`+
		`{"jsonrpc":"2.0","id":7,"method":"fail"},{"jsonrpc":"2.0","id":1.0,"method":"echo","params":[3]}]`)
	want := `[{"jsonrpc":"2.0","id":"a","result":[1]},{"jsonrpc":"2.0","id":7,"error":{"code":-32000,"message":"boom"}},` +
		`{"jsonrpc":"2.0","id":1.0,"result":[3]}]`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if got := mustCall(t, m, `[{"jsonrpc":"2.0","method":"echo"}]`); got != "" {
		t.Fatalf("notification batch: %q", got)
	}
	// Subscriptions are not calls: inside a batch they are refused per element.
	got = mustCall(t, m, `[{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]},{"jsonrpc":"2.0","id":2,"method":"echo","params":[2]}]`)
	if !strings.Contains(got, `"id":1,"error":{"code":-32601`) || !strings.Contains(got, `{"jsonrpc":"2.0","id":2,"result":[2]}`) {
		t.Fatalf("subscribe in a batch: %s", got)
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
			for i := 0; i < perWorker; i++ {
				id := strconv.Itoa(i % 5) // colliding on purpose
				var body, want string
				if i%7 == 0 {
					body = fmt.Sprintf(`[{"jsonrpc":"2.0","id":%s,"method":"echo","params":[%d,%d]},{"jsonrpc":"2.0","id":"%s","method":"echo","params":[%d]}]`, id, w, i, id, w)
					want = fmt.Sprintf(`[{"jsonrpc":"2.0","id":%s,"result":[%d,%d]},{"jsonrpc":"2.0","id":"%s","result":[%d]}]`, id, w, i, id, w)
				} else {
					body = fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"method":"echo","params":[%d,%d]}`, id, w, i)
					want = fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"result":[%d,%d]}`, id, w, i)
				}
				got, err := callBody(m, body, time.Now().Add(30*time.Second))
				if err != nil || got != want {
					errs <- fmt.Errorf("worker %d request %d:\n got %s %v\nwant %s", w, i, got, err, want)
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
	if n := m.metrics.pending.Load(); n != 0 {
		t.Fatalf("pending gauge %d after all answers", n)
	}
}

// Many asynchronous callers with colliding ids, as /socket2socket clients are.
func TestMuxManyAsyncCallers(t *testing.T) {
	f := newFakeUpstream(t, false)
	m := startMux(t, f, nil)
	const sinks, perSink = 40, 100
	all := make([]*chanSink, sinks)
	for i := range all {
		all[i] = newChanSink(perSink)
	}
	for i, s := range all {
		for j := 0; j < perSink; j++ {
			sendBody(m, s, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"echo","params":[%d]}`, j, i), time.Now().Add(30*time.Second))
		}
	}
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
	if _, err := callBody(m, `{"jsonrpc":"2.0","id":1,"method":"silent"}`, time.Now().Add(50*time.Millisecond)); err != proto.ErrTimeout {
		t.Fatalf("err %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("timeout took %v", d)
	}
	got := mustCallBy(t, m, `[{"jsonrpc":"2.0","id":"x","method":"silent"},{"jsonrpc":"2.0","id":"y","method":"echo","params":[1]}]`, 300*time.Millisecond)
	want := `[{"jsonrpc":"2.0","id":"x","error":{"code":-32000,"message":"upstream timed out"}},{"jsonrpc":"2.0","id":"y","result":[1]}]`
	if got != want {
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
	mustCall(t, m, `{"jsonrpc":"2.0","id":2,"method":"echo","params":[]}`)
}

func mustCallBy(t testing.TB, m *Mux, body string, d time.Duration) string {
	t.Helper()
	ans, err := callBody(m, body, time.Now().Add(d))
	if err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	return ans
}

// A full queue answers at once. White box: a socket marked up with no writer.
func TestMuxQueueFullIsOverloaded(t *testing.T) {
	cfg := testMuxConfig("ws://127.0.0.1:1")
	cfg.Conns, cfg.QueueSize = 1, 2
	m, err := NewMux(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := m.slots[0]
	s.mu.Lock()
	s.up = true
	s.mu.Unlock()
	s.isUp.Store(true)
	sink := newChanSink(2)
	sendBody(m, sink, `{"jsonrpc":"2.0","id":1,"method":"echo"}`, time.Now().Add(time.Hour))
	sendBody(m, sink, `{"jsonrpc":"2.0","id":2,"method":"echo"}`, time.Now().Add(time.Hour))
	waitFor(t, "two queued", func() bool { return len(s.out) == 2 })
	if _, err := callBody(m, `{"jsonrpc":"2.0","id":3,"method":"echo"}`, time.Now().Add(time.Hour)); err != proto.ErrOverloaded {
		t.Fatalf("third request on a full queue: %v", err)
	}
	// Tear down as a lost connection would: the two queued calls are answered.
	s.isUp.Store(false)
	s.sweep()
	for range 2 {
		if got := string(sink.next(t)); !strings.Contains(got, `"error":{"code":-32000,"message":"upstream unavailable"}`) {
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
		sendBody(m, sink, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"silent"}`, i), time.Now().Add(time.Hour))
	}
	waitFor(t, "silent requests pending", func() bool { return m.metrics.pending.Load() >= n })
	start := time.Now()
	sendBody(m, sink, `{"jsonrpc":"2.0","id":"d","method":"drop"}`, time.Now().Add(time.Hour))
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
	mustCall(t, m, `{"jsonrpc":"2.0","id":1,"method":"echo","params":[1]}`)
}

func TestMuxUnavailableFailsFast(t *testing.T) {
	f := newFakeUpstream(t, false)
	m := startMux(t, f, func(c *MuxConfig) { c.Conns = 1; c.BackoffMin = time.Second; c.BackoffMax = time.Second })
	waitFor(t, "the fake serving the socket", func() bool { return f.connCount() == 1 })
	f.refused.Store(true)
	f.dropAll()
	waitFor(t, "socket down", func() bool { return !m.slots[0].isUp.Load() })
	start := time.Now()
	if _, err := callBody(m, `{"jsonrpc":"2.0","id":1,"method":"echo"}`, time.Now().Add(10*time.Second)); err != proto.ErrUnreachable {
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
	cfg := testMuxConfig(f.url)
	cfg.Conns = 3
	m, err := NewMux(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m.Start()
	if err := m.WaitReady(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	sink := newChanSink(1)
	sendBody(m, sink, `{"jsonrpc":"2.0","id":1,"method":"silent"}`, time.Time{})
	waitFor(t, "the call pending", func() bool { return m.metrics.pending.Load() == 1 })
	m.Close()
	if got := string(sink.next(t)); got != `{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"upstream unavailable"}}` {
		t.Fatalf("pending at close: %s", got)
	}
	f.close()
	waitFor(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before+2 })
}

func TestMuxConfigRequiresEveryLimit(t *testing.T) {
	cfg := testMuxConfig("ws://127.0.0.1:1")
	cfg.QueueSize = 0
	if _, err := NewMux(cfg); err == nil {
		t.Fatal("accepted a zero queue size")
	}
	cfg = testMuxConfig("ws://user:secret@127.0.0.1:1/v3/key%")
	if _, err := NewMux(cfg); err == nil || strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "key") {
		t.Fatalf("bad URL: %v", err)
	}
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

// within receives from ch, failing the test when nothing comes within 20s: a test that
// waits must never hang until the package's timeout.
func within[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(20 * time.Second):
		t.Fatalf("waited 20s for %s: nothing came", what)
		var zero T
		return zero
	}
}

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
