package upstream

import (
	"bytes"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/proto"
)

const bigAnswer = 512 << 10 // over AnswerFloor, under the budgets below

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	n atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// answerServer is an HTTP upstream answering by method: "big" a result of bigAnswer
// bytes with a Content-Length, "chunked" the same streamed without one, "status500" a
// 500, "bad" a malformed answer, "cut" an answer whose connection closes half-way,
// "stall" nothing until the test ends; anything else a short result. A batch gets one
// answer per element.
func answerServer(t *testing.T) (string, *countingListener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: ln}
	stop := make(chan struct{})
	big := strings.Repeat("b", bigAnswer)
	answer := func(method, id string) string {
		if method == "big" || method == "chunked" {
			return `{"jsonrpc":"2.0","id":` + id + `,"result":"` + big + `"}`
		}
		return `{"jsonrpc":"2.0","id":` + id + `,"result":"0x1"}`
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		body := ctx.PostBody()
		ctx.SetContentType("application/json")
		if bytes.HasPrefix(body, []byte("[")) {
			var out bytes.Buffer
			out.WriteByte('[')
			for i := 0; ; i++ {
				k := bytes.Index(body, []byte(`"id":`))
				if k < 0 {
					break
				}
				body = body[k+5:]
				id := string(body[:bytes.IndexByte(body, ',')])
				m := bytes.Index(body, []byte(`"method":"`))
				meth := string(body[m+10 : m+10+bytes.IndexByte(body[m+10:], '"')])
				if i > 0 {
					out.WriteByte(',')
				}
				out.WriteString(answer(meth, id))
			}
			out.WriteByte(']')
			ctx.SetBody(out.Bytes())
			return
		}
		var r proto.Request
		if perr := r.Parse(body); perr != nil {
			ctx.SetStatusCode(400)
			return
		}
		switch string(r.Name) {
		case "chunked":
			ctx.SetBodyStream(strings.NewReader(answer("big", "1")), -1)
		case "status500":
			ctx.SetStatusCode(500)
		case "bad":
			ctx.SetBodyString(`{"jsonrpc":"2.0","id":1,"result":`)
		case "cut":
			ctx.Response.Header.SetContentLength(2 * bigAnswer)
			ctx.HijackSetNoResponse(true)
			ctx.Hijack(func(c net.Conn) {
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "+
					strconv.Itoa(2*bigAnswer)+"\r\n\r\n"+answer("big", "1")[:bigAnswer])
			})
		case "stall":
			<-stop
		default:
			ctx.SetBodyString(answer(string(r.Name), "1"))
		}
	}}
	done := make(chan struct{})
	go func() { _ = srv.Serve(cl); close(done) }()
	t.Cleanup(func() {
		close(stop)
		_ = srv.Shutdown()
		<-done
	})
	return "http://" + ln.Addr().String(), cl
}

func budgetPool(t *testing.T, url string, conns int, b *AnswerBudget) *Pool {
	t.Helper()
	p, err := NewPool(PoolConfig{URL: url, MaxConns: conns, MaxConnWaitTimeout: 5 * time.Second, DialTimeout: 3 * time.Second,
		MaxIdleConnDuration: time.Minute, MaxResponseBodySize: 4 << 20, Answers: b, Metrics: NewMetrics(NewRegistry(), "test")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// An answer the budget has no room for fails with ErrAnswerBudget (503, Retry-After),
// whatever its framing; a small one still gets through; the connection the refused
// answer was half read from is closed, not reused; the refused bytes are given back.
func TestAnswerBudgetRefusesHTTP(t *testing.T) {
	for _, method := range []string{"big", "chunked"} {
		t.Run(method, func(t *testing.T) {
			url, ln := answerServer(t)
			reg := NewRegistry()
			b := NewAnswerBudget(1<<20, reg)
			p := budgetPool(t, url, 1, b)
			deadline := func() time.Time { return time.Now().Add(10 * time.Second) }
			if _, err := p.Call(nil, request("small", `[]`), []byte("7"), deadline()); err != nil {
				t.Fatal(err)
			}
			if !fill(b) { // the budget held by other answers
				t.Fatal("the filler did not fit")
			}
			if _, err := p.Call(nil, request("small", `[]`), []byte("7"), deadline()); err != nil {
				t.Fatalf("a small answer while the budget is held: %v", err)
			}
			_, err := p.Call(nil, request(method, `[]`), []byte("7"), deadline())
			if err != proto.ErrAnswerBudget {
				t.Fatalf("a large answer while the budget is held: %v, want %v", err, proto.ErrAnswerBudget)
			}
			if e := proto.ErrAnswerBudget; e.Status != 503 || e.RetryAfter <= 0 || strings.Contains(e.Message, "127.0.0.1") {
				t.Fatalf("refusal %+v: want 503 with a Retry-After and no address", e)
			}
			if got := b.Held(); got != b.Limit() {
				t.Fatalf("held %d after the refusal, want the filler's %d alone", got, b.Limit())
			}
			if got := b.refused[TransportHTTP].Get(); got != 1 {
				t.Fatalf("refusals counted: %d, want 1", got)
			}
			b.release(b.Limit())
			before := ln.n.Load()
			ans, err := p.Call(nil, request(method, `[]`), []byte("7"), deadline())
			if err != nil || len(ans) < bigAnswer {
				t.Fatalf("a large answer once there is room: %d bytes, %v", len(ans), err)
			}
			if got := ln.n.Load(); got != before+1 {
				t.Fatalf("connections accepted: %d after the refusal, want %d: the half-read one was reused", got, before+1)
			}
			if got := b.Held(); got != 0 {
				t.Fatalf("held %d after the calls returned, want 0", got)
			}
		})
	}
}

// The budget goes back to 0 after calls and batches of every fate (answered, refused,
// 500, malformed, cut short, timed out), many at once: no path leaks a reservation.
func TestAnswerBudgetBackToZeroHTTP(t *testing.T) {
	url, _ := answerServer(t)
	b := NewAnswerBudget(3*bigAnswer, nil)
	p := budgetPool(t, url, 8, b)
	methods := []string{"big", "chunked", "small", "status500", "bad", "cut", "stall", "batch"}
	run := func() (refused int64) {
		var wg sync.WaitGroup
		var n atomic.Int64
		for w := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 8 {
					m := methods[(w+i)%len(methods)]
					d := time.Now().Add(10 * time.Second)
					if m == "stall" {
						d = time.Now().Add(50 * time.Millisecond)
					}
					var err error
					if m == "batch" {
						var bt Batch
						bt.Add(request("big", `[]`), []byte("1"))
						bt.Add(request("small", `[]`), []byte("2"))
						err = p.CallBatch(&bt, d)
						bt.Reset() // its answers are counted until then
					} else {
						_, err = p.Call(nil, request(m, `[]`), []byte("7"), d)
					}
					if err == proto.ErrAnswerBudget {
						n.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		return n.Load()
	}
	fill(b) // held: every large answer is refused
	if refused := run(); refused == 0 {
		t.Fatal("no answer was refused while the budget was held")
	}
	if got := b.Held(); got != b.Limit() {
		t.Fatalf("held %d after refused traffic, want the filler's %d", got, b.Limit())
	}
	b.release(b.Limit())
	run()
	if got := b.Held(); got != 0 {
		t.Fatalf("held %d after every call returned, want 0: a reservation leaked", got)
	}
}

// Over the websocket, a message the budget has no room for fails its call with
// ErrAnswerBudget as soon as its frame header is read; the socket carries on (small
// answers meanwhile, the large one once there is room) and the bytes are given back.
func TestAnswerBudgetRefusesWS(t *testing.T) {
	f := newFakeUpstream(t, false)
	b := NewAnswerBudget(1<<20, nil)
	m := startMux(t, f, func(c *MuxConfig) { c.Conns, c.Answers = 1, b })
	bigCall := `{"jsonrpc":"2.0","id":1,"method":"big","params":[` + strconv.Itoa(bigAnswer) + `]}`
	if !fill(b) {
		t.Fatal("the filler did not fit")
	}
	if _, err := callBody(m, bigCall, time.Now().Add(20*time.Second)); err != proto.ErrAnswerBudget {
		t.Fatalf("a large answer while the budget is held: %v, want %v", err, proto.ErrAnswerBudget)
	}
	if got := mustCall(t, m, `{"jsonrpc":"2.0","id":2,"method":"echo","params":[2]}`); got != `{"jsonrpc":"2.0","id":2,"result":[2]}` {
		t.Fatalf("a small answer while the budget is held: %s", got)
	}
	waitFor(t, "the refused message's bytes given back", func() bool { return b.Held() == b.Limit() })
	if got := b.refused[TransportWS].Get(); got != 1 {
		t.Fatalf("refusals counted: %d, want 1", got)
	}
	b.release(b.Limit())
	if ans := mustCall(t, m, bigCall); len(ans) < bigAnswer {
		t.Fatalf("a large answer once there is room: %d bytes", len(ans))
	}
	if f.dialed.Load() != 1 {
		t.Fatalf("the socket was dialed %d times: a refusal must not cost it", f.dialed.Load())
	}
	waitFor(t, "the budget back to 0", func() bool { return b.Held() == 0 })
}

// fill holds the whole budget, as other answers' bytes past their floors would.
func fill(b *AnswerBudget) bool {
	b.held.Add(b.Limit())
	return true
}

// TestAnswerBudgetFloorUncounted: an answer's first AnswerFloor bytes always fit and
// touch no shared counter (the path of nearly every call); past them each byte is
// reserved once and given back by release(reserved(total)).
func TestAnswerBudgetFloorUncounted(t *testing.T) {
	b := NewAnswerBudget(AnswerFloor, nil)
	for _, step := range []struct {
		had, n, held int64
		ok           bool
	}{
		{0, 1000, 0, true},                         // small: nothing counted
		{1000, AnswerFloor - 1000, 0, true},        // up to the floor exactly
		{AnswerFloor, 10, 10, true},                // past it, counted
		{AnswerFloor + 10, AnswerFloor, 10, false}, // over the limit: refused, nothing kept
	} {
		if ok := b.grow(step.had, step.n, TransportHTTP); ok != step.ok || b.Held() != step.held {
			t.Fatalf("grow(%d, %d): %v, held %d; want %v, %d", step.had, step.n, ok, b.Held(), step.ok, step.held)
		}
	}
	b.release(reserved(AnswerFloor + 10))
	if b.Held() != 0 || reserved(100) != 0 {
		t.Fatalf("held %d after the release, reserved(100) = %d", b.Held(), reserved(100))
	}
}
