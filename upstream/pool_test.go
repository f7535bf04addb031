package upstream

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
)

// resettingUpstream answers the first request on each connection and resets the
// connection when a second one arrives on it: what a client meets on a kept-alive
// connection after the node restarted or dropped it while idle. It records every
// request it read.
type resettingUpstream struct {
	url    string
	answer func(body string) string
	mu     sync.Mutex
	bodies []string
}

func newResettingUpstream(t *testing.T, answer func(body string) string) *resettingUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &resettingUpstream{url: "http://" + ln.Addr().String(), answer: answer}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); u.serve(c) }()
		}
	}()
	return u
}

func (u *resettingUpstream) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for n := 0; ; n++ {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		body, _ := io.ReadAll(req.Body)
		u.mu.Lock()
		u.bodies = append(u.bodies, string(body))
		u.mu.Unlock()
		if n > 0 {
			_ = c.(*net.TCPConn).SetLinger(0) // close with a reset
			return
		}
		ans := u.answer(string(body))
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "+
			strconv.Itoa(len(ans))+"\r\n\r\n"+ans)
	}
}

func (u *resettingUpstream) seen() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.bodies...)
}

func testPool(t *testing.T, url string) *Pool {
	t.Helper()
	p, err := NewPool(PoolConfig{URL: url, MaxConns: 4, MaxConnWaitTimeout: 5 * time.Second, DialTimeout: 3 * time.Second,
		MaxIdleConnDuration: time.Minute, MaxResponseBodySize: 1 << 20, Metrics: NewMetrics(NewRegistry(), "test")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func request(name, params string) *proto.Request {
	var r proto.Request
	r.Set([]byte(name), []byte(params))
	return &r
}

// A read that meets a reset on a kept-alive connection is sent again on a fresh one; a
// write never is: it may have been executed.
func TestPoolRetriesReadsNotWrites(t *testing.T) {
	u := newResettingUpstream(t, func(string) string { return `{"jsonrpc":"2.0","id":1,"result":"0x1"}` })
	p := testPool(t, u.url)
	deadline := time.Now().Add(20 * time.Second)
	if _, err := p.Call(nil, request("eth_blockNumber", ""), []byte(`"a"`), deadline); err != nil {
		t.Fatal(err) // opens the connection that the next call reuses
	}
	ans, err := p.Call(nil, request("eth_blockNumber", ""), []byte(`"b"`), deadline)
	if err != nil || string(ans) != `{"jsonrpc":"2.0","id":"b","result":"0x1"}` {
		t.Fatalf("read after a reset: %s %v", ans, err)
	}
	if got := len(u.seen()); got != 3 {
		t.Fatalf("the upstream read %d requests, want 3 (the reset one, then the retry)", got)
	}
	if n := p.metrics.retries.Get(); n != 1 {
		t.Fatalf("retries counter %d", n)
	}
	// The pool now holds a used connection again: a write on it meets the reset.
	before := len(u.seen())
	if _, err := p.Call(nil, request("eth_sendRawTransaction", `["0x02"]`), []byte("1"), deadline); err != proto.ErrUnavailable {
		t.Fatalf("write after a reset: %v, want ErrUnavailable", err)
	}
	writes := 0
	for _, b := range u.seen()[before:] {
		if strings.Contains(b, "eth_sendRawTransaction") {
			writes++
		}
	}
	if writes != 1 {
		t.Fatalf("the write reached the upstream %d times, want 1", writes)
	}
}

// The answer must carry the id the pool sent (1): an upstream answering with another id,
// or null, gets ErrBadUpstream, never its bytes passed on with a broken id.
func TestPoolChecksTheAnswerID(t *testing.T) {
	for _, ans := range []string{
		`{"jsonrpc":"2.0","id":null,"result":"0x1"}`,
		`{"jsonrpc":"2.0","id":2,"result":"0x1"}`,
		`{"jsonrpc":"2.0","result":"0x1"}`,
		`not json`,
		`[{"jsonrpc":"2.0","id":1,"result":"0x1"}]`,
	} {
		u := newResettingUpstream(t, func(string) string { return ans })
		p := testPool(t, u.url)
		if got, err := p.Call(nil, request("eth_chainId", ""), []byte(`"x"`), time.Now().Add(10*time.Second)); err != proto.ErrBadUpstream {
			t.Errorf("answer %s: got %s %v, want ErrBadUpstream", ans, got, err)
		}
	}
}

// A batch's answers are filed by id whatever their order; one the upstream does not
// answer, answers twice or with an unknown id gets ErrBadUpstream; a batch refused as a
// whole gets the refusal for every request.
func TestPoolBatchFiling(t *testing.T) {
	f := func(upstreamAnswer string, want []string) {
		t.Helper()
		u := newResettingUpstream(t, func(string) string { return upstreamAnswer })
		p := testPool(t, u.url)
		var b Batch
		for i := range want {
			b.Add(request("eth_chainId", ""), []byte(`"c`+strconv.Itoa(i)+`"`))
		}
		_ = p.CallBatch(&b, time.Now().Add(10*time.Second))
		for i, w := range want {
			ans, e := b.Answer(i)
			got := string(ans)
			if e != nil {
				got = "error: " + e.Message
			}
			if got != w {
				t.Errorf("%s: answer %d = %s, want %s", upstreamAnswer, i, got, w)
			}
		}
	}
	f(`[{"jsonrpc":"2.0","id":2,"result":"c"},{"jsonrpc":"2.0","id":0,"result":"a"},{"jsonrpc":"2.0","id":1,"result":"b"}]`,
		[]string{`{"jsonrpc":"2.0","id":"c0","result":"a"}`, `{"jsonrpc":"2.0","id":"c1","result":"b"}`, `{"jsonrpc":"2.0","id":"c2","result":"c"}`})
	f(`[{"jsonrpc":"2.0","id":0,"result":"a"},{"jsonrpc":"2.0","id":0,"result":"again"},{"jsonrpc":"2.0","id":7,"result":"x"}]`,
		[]string{`{"jsonrpc":"2.0","id":"c0","result":"a"}`, "error: upstream answered with an invalid response"})
	f(`{"jsonrpc":"2.0","id":null,"error":{"code":-32005,"message":"batch limit"}}`,
		[]string{`{"jsonrpc":"2.0","id":"c0","error":{"code":-32005,"message":"batch limit"}}`, `{"jsonrpc":"2.0","id":"c1","error":{"code":-32005,"message":"batch limit"}}`})
}

// rawHTTPUpstream answers every request with the bytes resp (status line, header and
// body as they are, e.g. a Content-Length shorter than the body) and closes the
// connection, so no leftover byte is read as another answer.
func rawHTTPUpstream(t *testing.T, resp string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
					_, _ = io.WriteString(c, resp)
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// An answer that is not exactly one JSON value (cut short, trailing bytes, a second
// answer, a broken value) is refused on a single call as in a batch and over the
// websocket: ErrBadUpstream, counted as an error, never passed on. Whitespace around a
// valid answer is fine.
func TestPoolRefusesInvalidJSON(t *testing.T) {
	const good = `{"jsonrpc":"2.0","id":1,"result":"0x1"}`
	cases := []struct {
		name   string
		body   string
		length int // Content-Length; 0: the body's
		want   error
	}{
		{"Content-Length too short", good, len(good) - 3, proto.ErrBadUpstream},
		{"cut short", `{"jsonrpc":"2.0","id":1,"result":"0x`, 0, proto.ErrBadUpstream},
		{"trailing garbage", good + `GARBAGE{"x":1}`, 0, proto.ErrBadUpstream},
		{"a second answer", good + `{"jsonrpc":"2.0","id":1,"result":"0x2"}`, 0, proto.ErrBadUpstream},
		{"a broken value", `{"jsonrpc":"2.0","id":1,"result":[1,]}`, 0, proto.ErrBadUpstream},
		{"invalid UTF-8", "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\"0x1\xff\"}", 0, proto.ErrBadUpstream},
		{"valid, whitespace around", "\n " + good + " \r\n", 0, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := tc.length
			if n == 0 {
				n = len(tc.body)
			}
			p := testPool(t, rawHTTPUpstream(t, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "+
				strconv.Itoa(n)+"\r\n\r\n"+tc.body))
			got, err := p.Call(nil, request("eth_chainId", ""), []byte(`"x"`), time.Now().Add(10*time.Second))
			if err != tc.want {
				t.Fatalf("got %q %v, want %v", got, err, tc.want)
			}
			if errs := p.metrics.counter(TransportHTTP, proto.MethodOf([]byte("eth_chainId")), OutcomeError).Get(); tc.want != nil && errs != 1 {
				t.Fatalf("%d calls counted as errors, want 1", errs)
			}
		})
	}
}
