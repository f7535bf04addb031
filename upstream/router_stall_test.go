package upstream

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
)

// silentChain is a provider whose websocket can drop its subscriptions without a word,
// as Infura's does when the node behind a socket changes: the socket stays open and
// answers calls, the subscriptions it had get no more notifications, new ones do. Its
// HTTP side answers the chain's head and its blocks by number.
type silentChain struct {
	ws      *fakeUpstream
	httpURL string
	head    atomic.Uint64
	latest  atomic.Int64 // eth_getBlockByNumber("latest") reads
	// onLatest, when set, runs on each eth_getBlockByNumber("latest") before the head
	// is read for the answer.
	onLatest atomic.Pointer[func()]

	mu   sync.Mutex
	dead map[string]bool // upstream subscription ids the provider forgot
}

func newSilentChain(t *testing.T, head uint64) *silentChain {
	t.Helper()
	c := &silentChain{ws: newFakeUpstream(t, false), dead: map[string]bool{}}
	c.head.Store(head)
	c.httpURL = serveHTTP(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var m proto.Message
		if _, err := proto.ScanMessage(body, &m); err != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		res := `"0x` + strconv.FormatUint(c.head.Load(), 16) + `"` // eth_blockNumber (probes)
		if string(m.Method.Bytes(body)) == `"eth_getLogs"` {
			res = c.logs(m.Params.Bytes(body))
		}
		if string(m.Method.Bytes(body)) == `"eth_getBlockByNumber"` {
			p := m.Params.Bytes(body)
			tag := strings.Trim(string(p[proto.Nth(p, 0).Start:proto.Nth(p, 0).End]), `"`)
			n := c.head.Load()
			if tag == "latest" {
				c.latest.Add(1)
				if f := c.onLatest.Load(); f != nil {
					(*f)()
				}
				n = c.head.Load()
			} else if v, err := strconv.ParseUint(strings.TrimPrefix(tag, "0x"), 16, 64); err == nil && v <= n {
				n = v
			} else {
				res = "null"
			}
			if res != "null" {
				res = string(header(n))
			}
		}
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":`+string(m.ID.Bytes(body))+`,"result":`+res+`}`)
	})
	return c
}

// mine makes k blocks, each with one log; the provider pushes them to every live
// subscription of their kind (newHeads with options too).
func (c *silentChain) mine(k uint64, push bool) {
	for range k {
		n := c.head.Add(1)
		if push {
			for _, sub := range c.live(nil) {
				if strings.HasPrefix(c.kind(sub), `["newHeads"`) {
					c.ws.notify(sub, string(header(n)))
				}
			}
			for _, sub := range c.live(logsParams) {
				c.ws.notify(sub, blockLog(n))
			}
		}
	}
}

var logsParams = []byte(`["logs",{}]`)

// blockLog is the one log of block n.
func blockLog(n uint64) string {
	h := strconv.FormatUint(n, 16)
	return `{"blockNumber":"0x` + h + `","blockHash":"0x` + h + `","logIndex":"0x0"}`
}

// logs answers eth_getLogs(params): the log of each block of its range.
func (c *silentChain) logs(params []byte) string {
	f := proto.Nth(params, 0).Bytes(params)
	from, ok1 := proto.ParseQuantity(proto.FirstMember(f, "fromBlock").Bytes(f))
	to, ok2 := proto.ParseQuantity(proto.FirstMember(f, "toBlock").Bytes(f))
	if !ok1 || !ok2 {
		return "[]"
	}
	var out []string
	for n := from; n <= min(to, c.head.Load()); n++ {
		out = append(out, blockLog(n))
	}
	return "[" + strings.Join(out, ",") + "]"
}

// jump makes k blocks at once, pushed to nobody: no silence check can see half of them.
func (c *silentChain) jump(k uint64) { c.head.Add(k) }

// live returns the subscriptions of params (nil: any) the provider still delivers to.
func (c *silentChain) live(params []byte) []string {
	c.ws.mu.Lock()
	defer c.ws.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for sub := range c.ws.subs {
		if !c.dead[sub] && (params == nil || c.ws.kinds[sub] == string(params)) {
			out = append(out, sub)
		}
	}
	return out
}

// kind returns the params subscription sub was asked with.
func (c *silentChain) kind(sub string) string {
	c.ws.mu.Lock()
	defer c.ws.mu.Unlock()
	return c.ws.kinds[sub]
}

// silence forgets every subscription of params (nil: all) the provider has now,
// keeping the socket open.
func (c *silentChain) silence() { c.silenceOf(nil) }

func (c *silentChain) silenceOf(params []byte) {
	for _, sub := range c.live(params) {
		c.mu.Lock()
		c.dead[sub] = true
		c.mu.Unlock()
	}
}

// stallRouter is a router over c alone, started, with head polls of 50 ms.
func stallRouter(t *testing.T, c *silentChain) (*Router, *Upstream) {
	t.Helper()
	r := testRouterWith(t, func(cfg *RouterConfig) {
		cfg.HeadPoll = 50 * time.Millisecond
		cfg.Mux = testMuxConfig(c.ws.url)
	}, Spec{Name: "solo", HTTPURL: c.httpURL, WSURL: c.ws.url})
	r.Start()
	t.Cleanup(r.Close)
	u := byName(r, "solo")
	waitFor(t, "the head subscription live", func() bool { return u.mux.live(newHeadsParams) && len(c.live(newHeadsParams)) == 1 })
	return r, u
}

// headNumbers reads n newHeads notifications from sink and returns their numbers.
func headNumbers(t *testing.T, sink *chanSink, n int) []uint64 {
	t.Helper()
	var got []uint64
	for range n {
		res := NotificationResult(sink.next(t))
		v, ok := proto.ParseQuantity(proto.FirstMember(res, "number").Bytes(res))
		if !ok {
			t.Fatalf("a notification without a block number: %s", res)
		}
		got = append(got, v)
	}
	return got
}

// A provider drops its subscriptions with the socket open while its chain moves on:
// the router reads the head over HTTP once no head was pushed for a stall period,
// finds the chain ahead, and subscribes again on the same socket. The served head
// moves again, the renewal is counted once, and a client's newHeads subscription gets
// every head once and in order, the ones missed while silent fetched. Before, with one
// upstream, the head stayed at 13 and the client got nothing more, without an error.
func TestSilentSubscriptionsRenewed(t *testing.T) {
	c, r, u, sink := subscribedOnSilentChain(t, newHeadsParams)
	if n := len(c.live(nil)); n != 1 {
		t.Fatalf("%d upstream subscriptions, want the router's and the client's to share one", n)
	}
	c.mine(3, true) // 11, 12, 13
	waitFor(t, "the served head at 13", func() bool { return r.ServedHead() == 13 })

	c.silence()
	c.jump(5) // 14..18: over HTTP only
	waitFor(t, "the served head at 18 again", func() bool { return r.ServedHead() == 18 })
	waitFor(t, "a new upstream subscription", func() bool { return u.mux.live(newHeadsParams) && len(c.live(newHeadsParams)) == 1 })
	c.mine(1, true) // 19: pushed on the new subscription
	want := []uint64{11, 12, 13, 14, 15, 16, 17, 18, 19}
	if got := headNumbers(t, sink, len(want)); !slicesEqual(got, want) {
		t.Fatalf("the client got heads %v, want %v", got, want)
	}
	waitFor(t, "the served head at 19", func() bool { return r.ServedHead() == 19 })
	if n := u.metrics.silentSubs.Get(); n != 1 {
		t.Fatalf("gateway_upstream_ws_silent_subscriptions_total = %d, want 1", n)
	}
	if n := u.metrics.reconnects.Get(); n != 0 {
		t.Fatalf("%d reconnects: the socket was kept, its calls untouched", n)
	}
	select {
	case extra := <-sink.ch:
		t.Fatalf("a notification after the last head: %s", extra)
	default:
	}
}

func slicesEqual(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A chain that makes no block is not a silent subscription: the head is read over
// HTTP at most once per stall period (never per head poll), and the subscription is
// kept. Nor is an HTTP head one block past the last push, when the push arrives
// before the next check: a push in flight.
func TestNoRenewalWhileTheChainStands(t *testing.T) {
	c := newSilentChain(t, 10)
	r, u := stallRouter(t, c)
	c.mine(3, true)
	waitFor(t, "the served head at 13", func() bool { return r.ServedHead() == 13 })
	subs := c.ws.subSeq.Load()

	start, reads := time.Now(), c.latest.Load()
	waitFor(t, "four silence checks", func() bool { return c.latest.Load() >= reads+4 })
	elapsed := time.Since(start)
	// Checks come a stall period apart, at least two head polls (100 ms): four of them
	// take at least three periods. Each head poll reading it would take 150 ms.
	if got := c.latest.Load() - reads; time.Duration(got-1)*100*time.Millisecond > elapsed {
		t.Fatalf("%d head reads in %v: more than one per stall period", got, elapsed)
	}

	c.jump(1) // 14 over HTTP, its push late
	reads = c.latest.Load()
	waitFor(t, "a check seeing block 14 unpushed", func() bool { return c.latest.Load() > reads })
	for _, sub := range c.live(newHeadsParams) {
		c.ws.notify(sub, string(header(14)))
	}
	reads = c.latest.Load()
	waitFor(t, "three more silence checks", func() bool { return c.latest.Load() >= reads+3 })

	if n := u.metrics.silentSubs.Get(); n != 0 {
		t.Fatalf("gateway_upstream_ws_silent_subscriptions_total = %d on a chain that stood", n)
	}
	if n := c.ws.subSeq.Load(); n != subs {
		t.Fatalf("eth_subscribe sent again (%d, was %d) while nothing was silent", n, subs)
	}
	if r.ServedHead() != 14 {
		t.Fatalf("served head %d, want 14", r.ServedHead())
	}
}

// A logs subscription on the upstream goes silent with the rest: it is subscribed
// again with them, and the logs of the blocks it missed are queried (eth_getLogs) and
// delivered once each before the next one pushed. Before, with one upstream, the
// client got no log after the silence, and no error.
func TestSilentLogsBackfilled(t *testing.T) {
	c, _, u, sink := subscribedOnSilentChain(t, logsParams)
	c.mine(3, true) // 11, 12, 13
	c.silence()
	c.jump(5) // 14..18: their logs pushed to nobody
	waitFor(t, "both subscriptions renewed", func() bool {
		return u.metrics.silentSubs.Get() == 1 && len(c.live(newHeadsParams)) == 1 && len(c.live(logsParams)) == 1
	})
	want := []uint64{11, 12, 13, 14, 15, 16, 17, 18, 19}
	var got []uint64
	for len(got) < len(want) {
		res := NotificationResult(sink.next(t))
		n, _ := proto.ParseQuantity(proto.FirstMember(res, "blockNumber").Bytes(res))
		got = append(got, n)
		if n == 18 {
			c.mine(1, true) // 19, pushed once the missed logs are out
		}
	}
	if !slicesEqual(got, want) {
		t.Fatalf("the client got the logs of blocks %v, want %v", got, want)
	}
	select {
	case extra := <-sink.ch:
		t.Fatalf("a notification after the last log: %s", extra)
	default:
	}
}

// subscribedOnSilentChain is a router on a silent-capable chain at block 10 and a
// client subscribed with params through it.
func subscribedOnSilentChain(t *testing.T, params []byte) (*silentChain, *Router, *Upstream, *chanSink) {
	t.Helper()
	c := newSilentChain(t, 10)
	r, u := stallRouter(t, c)
	sink := newChanSink(64)
	r.subs.Join(params, []byte("1"), sink, time.Now().Add(10*time.Second))
	if got := string(sink.next(t)); !strings.Contains(got, `"result":"0x`) {
		t.Fatalf("eth_subscribe answered %s", got)
	}
	return c, r, u, sink
}

// A socket that comes up while the newHeads subscription stays live on its own socket
// (a sibling connecting late, or dialled again with no subscription on it) has the head
// read, but not made the base the pushes continue from: the blocks the HTTP head is
// past the last push are still a silence to find. Before, the read became the base:
// the silence was forgotten, never found on a chain that then stood, and on one that
// moved on the renewal's logs backfill started from it, skipping the blocks between.
func TestSocketUpKeepsTheSilenceBase(t *testing.T) {
	c := newSilentChain(t, 10)
	r := testRouterWith(t, func(cfg *RouterConfig) {
		cfg.HeadPoll = 10 * time.Second // a stall period of 20 s: no silence check meanwhile
		cfg.Mux = testMuxConfig(c.ws.url)
	}, Spec{Name: "solo", HTTPURL: c.httpURL, WSURL: c.ws.url})
	r.Start()
	t.Cleanup(r.Close)
	u := byName(r, "solo")
	waitFor(t, "the head subscription live", func() bool { return u.mux.live(newHeadsParams) && len(c.live(newHeadsParams)) == 1 })
	known := func() (uint64, bool) {
		u.watch.mu.Lock()
		defer u.watch.mu.Unlock()
		return u.watch.known, u.watch.based
	}
	waitFor(t, "the first head read", func() bool { _, based := known(); return based })
	c.mine(3, true) // 11, 12, 13
	waitFor(t, "block 13 pushed", func() bool { n, _ := known(); return n == 13 })
	c.silence()
	c.jump(5)     // 14..18: over HTTP only
	for range 2 { // the second read starts once the first is done
		reads := c.latest.Load()
		u.checkHead() // a socket came up
		waitFor(t, "the head read", func() bool { return c.latest.Load() > reads })
	}
	waitFor(t, "the head at 18", func() bool { return u.health.Head() == 18 })
	if n, _ := known(); n != 13 {
		t.Fatalf("the silence base is %d after a socket came up, want 13 (the last push)", n)
	}
}
