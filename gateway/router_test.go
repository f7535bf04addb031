package gateway

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/admin"
	"github.com/infura-gateway/infura-gateway/upstream"
)

// Health and routing tests with in-process upstreams: faults a real node cannot be
// made to show on cue. The real-node failover tests are in failover_test.go.

// fastHealth makes bans, probes and reviews quick enough for tests; bounds stated in
// each test follow from these.
var fastHealth = []string{"-review-interval", "50ms", "-probe-interval", "200ms", "-ban-min", "300ms", "-ban-max", "2s",
	"-ban-failures", "2", "-health-window", "2s", "-ban-min-requests", "4", "-readmit", "2", "-cache=false"}

type upstreamDef struct {
	name string
	f    *fakeUpstream
	tier string
	ws   bool
}

// multiGateway starts a gateway in front of several fakes through a configuration file.
func multiGateway(t *testing.T, ups []upstreamDef, extra ...string) *testGateway {
	t.Helper()
	var b strings.Builder
	b.WriteString("upstreams:\n")
	for _, u := range ups {
		fmt.Fprintf(&b, "  - name: %s\n    http: %s\n    tier: %s\n", u.name, u.f.HTTPURL, u.tier)
		if u.ws {
			fmt.Fprintf(&b, "    ws: %s\n", u.f.WSURL)
		}
	}
	path := writeFile(t, t.TempDir(), "gateway.yaml", b.String())
	gw := startGateway(t, append(append([]string{"-config", path}, fastHealth...), extra...)...)
	gw.waitUpstreams(t)
	return gw
}

// state returns an upstream's state as /status shows it.
func (gw *testGateway) state(t *testing.T, name string) upstream.UpstreamStatus {
	t.Helper()
	code, body := do(t, "GET", gw.AdminURL+"/status", "")
	var page admin.StatusPage
	if err := json.Unmarshal(body, &page); code != 200 || err != nil {
		t.Fatalf("/status: %d %v %s", code, err, body)
	}
	for _, u := range page.Upstreams {
		if u.Name == name {
			return u
		}
	}
	t.Fatalf("/status has no upstream %q: %s", name, body)
	return upstream.UpstreamStatus{}
}

// load sends reads from workers goroutines until stop closes and counts what failed.
type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
	wg         sync.WaitGroup
	stop       chan struct{}
}

func startLoad(gw *testGateway, workers int, body string) *load {
	l := &load{stop: make(chan struct{})}
	for range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				code, ans, err := tryDo("POST", gw.URL+"/", body)
				if err != nil || code != 200 || strings.Contains(string(ans), `"error"`) {
					l.failed.Add(1)
					l.mu.Lock()
					l.errs = append(l.errs, fmt.Sprintf("%d %s %v", code, ans, err))
					l.mu.Unlock()
					continue
				}
				l.ok.Add(1)
			}
		}()
	}
	return l
}

func (l *load) end(t *testing.T) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	if n := l.failed.Load(); n > 0 {
		t.Fatalf("%d of %d reads failed; first: %s", n, n+l.ok.Load(), l.errs[0])
	}
	if l.ok.Load() == 0 {
		t.Fatal("no read completed")
	}
}

// A primary that goes down under load: no read fails (they go to the other primary),
// the broken one is banned within a bound, readmitted once it is back; the fallback
// takes no client request while a primary is healthy.
func TestFailoverKeepsReadsAnswered(t *testing.T) {
	a, b, c := startFakeUpstream(t), startFakeUpstream(t), startFakeUpstream(t)
	gw := multiGateway(t, []upstreamDef{{"a", a, "primary", false}, {"b", b, "primary", false}, {"c", c, "fallback", false}})
	const read = `{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}`
	l := startLoad(gw, 4, read)
	waitFor(t, "both primaries serving", func() bool { return a.count("eth_chainId") > 20 && b.count("eth_chainId") > 20 })
	downAt := time.Now()
	a.setDown(true)
	waitFor(t, "a banned", func() bool { return gw.state(t, "a").State == "banned" })
	banned := time.Since(downAt)
	served := b.count("eth_chainId")
	waitFor(t, "b serving alone", func() bool { return b.count("eth_chainId") > served+50 })
	a.setDown(false)
	waitFor(t, "a readmitted", func() bool { return gw.state(t, "a").State == "healthy" })
	before := a.count("eth_chainId")
	waitFor(t, "a serving again", func() bool { return a.count("eth_chainId") > before+20 })
	l.end(t)
	// Two failed calls ban it: a few requests' time, well under the review interval.
	t.Logf("%d reads, none failed; a banned %v after going down", l.ok.Load(), banned)
	if banned > 3*time.Second {
		t.Fatalf("banned %v after going down", banned)
	}
	if n := c.count("eth_chainId"); n != 0 {
		t.Fatalf("the fallback got %d client requests while a primary was healthy", n)
	}
	// With every primary down the fallback serves.
	a.setDown(true)
	b.setDown(true)
	waitFor(t, "the fallback serving", func() bool {
		code, body, err := tryDo("POST", gw.URL+"/", read)
		return err == nil && code == 200 && !strings.Contains(string(body), "error")
	})
	if c.count("eth_chainId") == 0 {
		t.Fatal("the fallback never served")
	}
}

// A write that reached an upstream is never sent again, even when it failed; one that
// could not be sent (nothing listens) goes to another upstream.
func TestWritesAreNeverSentTwice(t *testing.T) {
	fail := func(r fakeRequest) fakeAnswer {
		if r.Method == "eth_sendRawTransaction" {
			return fakeAnswer{Status: 500, Body: "boom"}
		}
		return fakeAnswer{}
	}
	a := startFakeUpstream(t, fakeRespond(fail))
	b := startFakeUpstream(t, fakeRespond(fail))
	gw := multiGateway(t, []upstreamDef{{"a", a, "primary", false}, {"b", b, "primary", false}}, "-retries", "3")
	const write = `{"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":["0x02"]}`
	for range 10 {
		if code, body := do(t, "POST", gw.URL+"/", write); code != 502 {
			t.Fatalf("failed write: %d %s", code, body)
		}
	}
	if got := a.count("eth_sendRawTransaction") + b.count("eth_sendRawTransaction"); got != 10 {
		t.Fatalf("10 writes reached the upstreams %d times", got)
	}
	// A read that fails the same way is retried on the other upstream.
	failRead := func(r fakeRequest) fakeAnswer {
		if r.Method == "eth_getBalance" {
			return fakeAnswer{Status: 503, Body: "busy"}
		}
		return fakeAnswer{}
	}
	a.respond.Store(&failRead)
	code, body := do(t, "POST", gw.URL+"/", `{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["0x01","latest"]}`)
	if code != 200 || !strings.Contains(string(body), `"result"`) {
		t.Fatalf("read after a failure on one upstream: %d %s", code, body)
	}
}

// A call for block N goes only to upstreams that have it; eth_blockNumber never goes
// below the served head when a lagging upstream answers it.
func TestRoutingByHeadAndServedHead(t *testing.T) {
	a, b := startFakeUpstream(t), startFakeUpstream(t)
	a.head.Store(0x10)
	b.head.Store(0x20)
	gw := multiGateway(t, []upstreamDef{{"a", a, "primary", true}, {"b", b, "primary", true}}, "-max-lag", "100")
	b.pushHead(0x20)
	waitFor(t, "the served head", func() bool { return gw.srv.defaultNetwork().Router.ServedHead() == 0x20 })
	for i := range 40 {
		body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"eth_getBlockByNumber","params":["0x18",false]}`, i)
		if _, ans := do(t, "POST", gw.URL+"/", body); !strings.Contains(string(ans), `"number":"0x18"`) {
			t.Fatalf("block 0x18: %s", ans)
		}
	}
	if n := countParams(a, "eth_getBlockByNumber", `["0x18",false]`); n != 0 {
		t.Fatalf("a (head 0x10) got %d calls for block 0x18", n)
	}
	// Only the lagging upstream left: its eth_blockNumber (0x10) is not served below 0x20.
	b.setDown(true)
	waitFor(t, "b banned", func() bool { return gw.state(t, "b").State == "banned" })
	for _, path := range []string{"/", "/blocknumber", "/ws/blocknumber"} {
		method, body := "POST", `{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"}`
		if path != "/" {
			method, body = "GET", ""
		}
		if _, ans := do(t, method, gw.URL+path, body); !strings.Contains(string(ans), `"result":"0x20"`) {
			t.Fatalf("%s with a lagging upstream: %s", path, ans)
		}
	}
	// It catches up and goes past: the served head follows.
	a.pushHead(0x21)
	waitFor(t, "the served head at 0x21", func() bool { return gw.srv.defaultNetwork().Router.ServedHead() == 0x21 })
	if _, ans := do(t, "GET", gw.URL+"/blocknumber", ""); !strings.Contains(string(ans), `"result":"0x21"`) {
		t.Fatalf("after catching up: %s", ans)
	}
}

// A slow primary: with hedging on, a read it has not answered by its latency quantile
// goes to the other too, the first answer wins; hedges stay within their budget.
func TestHedgingBeatsASlowUpstream(t *testing.T) {
	slow := func(r fakeRequest) fakeAnswer {
		if r.Method == "eth_getBalance" {
			time.Sleep(2 * time.Second) // the upstream's own slowness, not synchronisation
		}
		return fakeAnswer{}
	}
	a := startFakeUpstream(t, fakeRespond(slow))
	b := startFakeUpstream(t)
	gw := multiGateway(t, []upstreamDef{{"a", a, "primary", false}, {"b", b, "primary", false}},
		"-hedge-quantile", "0.9", "-hedge-max-extra", "0.5", "-slow-factor", "1000")
	const read = `{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["0x01","latest"]}`
	var worst time.Duration
	for range 30 {
		start := time.Now()
		if code, ans := do(t, "POST", gw.URL+"/", read); code != 200 || !strings.Contains(string(ans), `"result"`) {
			t.Fatalf("%d %s", code, ans)
		}
		worst = max(worst, time.Since(start))
	}
	hedges := gw.metric(t, "gateway_router_hedges_total")
	t.Logf("30 reads, slowest %v, %v hedged", worst, hedges)
	if worst >= 2*time.Second {
		t.Fatalf("a read waited %v for the slow upstream", worst)
	}
	if hedges > 15 {
		t.Fatalf("%v hedges for 30 reads: over the budget", hedges)
	}
}

// /status lists every upstream with its state, and never a URL or a key.
func TestStatusPage(t *testing.T) {
	a := startFakeUpstream(t)
	var b strings.Builder
	fmt.Fprintf(&b, "upstreams:\n  - name: keyed\n    http: %s/v3/${GATEWAY_SECRET_KEY}\n    ws: %s/ws/v3/${GATEWAY_SECRET_KEY}\n    password: ${GATEWAY_SECRET_KEY}\n", a.HTTPURL, a.WSURL)
	path := writeFile(t, t.TempDir(), "gateway.yaml", b.String())
	gw := startGatewayEnv(t, map[string]string{"GATEWAY_SECRET_KEY": "0123456789abcdefSECRET"}, "-config", path)
	gw.waitUpstreams(t)
	_, body := do(t, "GET", gw.AdminURL+"/status", "")
	if strings.Contains(string(body), "SECRET") || strings.Contains(string(body), "127.0.0.1") {
		t.Fatalf("/status shows a URL or a key: %s", body)
	}
	st := gw.state(t, "keyed")
	if st.State != "healthy" || st.Tier != "primary" || st.Head != 0x10 || st.WS == nil || !*st.WS {
		t.Fatalf("status %+v", st)
	}
	if strings.Contains(gw.log.String(), "0123456789abcdefSECRET") {
		t.Fatal("the key is in the logs")
	}
}

// A newHeads and a logs subscriber through a forced move: the same subscription ids,
// every block number exactly once and in order, every log once.
func TestSubscriptionsMoveWithoutGap(t *testing.T) {
	a, b := startFakeUpstream(t), startFakeUpstream(t)
	a.head.Store(0x10)
	b.head.Store(0x10)
	gw := multiGateway(t, []upstreamDef{{"a", a, "primary", true}, {"b", b, "primary", true}})
	c := dialWS(t, gw.WSURL, nil)
	heads := decodeAnswer(t, c.call(`{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]}`))
	logs := decodeAnswer(t, c.call(`{"jsonrpc":"2.0","id":2,"method":"eth_subscribe","params":["logs",{"address":"0x00000000000000000000000000000000000000aa"}]}`))
	if heads.Error != nil || logs.Error != nil {
		t.Fatalf("subscribe: %+v %+v", heads.Error, logs.Error)
	}
	var headsID, logsID string
	_ = json.Unmarshal(heads.Result, &headsID)
	_ = json.Unmarshal(logs.Result, &logsID)
	carrier, other := a, b
	if gw.state(t, "b").Subscriptions > 0 {
		carrier, other = b, a
	}
	both := func(n uint64) { carrier.pushHead(n); other.pushHead(n) }
	both(0x11)
	both(0x12)
	// The carrier dies. The other keeps producing blocks (0x13, 0x14) before the move
	// is done, and the gateway must fill them in.
	carrier.setDown(true)
	other.pushHead(0x13)
	other.pushHead(0x14)
	waitFor(t, "the subscriptions moved", func() bool {
		name := "a"
		if other == b {
			name = "b"
		}
		return gw.state(t, name).Subscriptions == 2
	})
	other.pushHead(0x15)
	other.pushHead(0x16)
	var gotHeads, gotLogs []uint64
	for len(gotHeads) < 6 || len(gotLogs) < 6 {
		n := decodeAnswer(t, c.next())
		var v struct{ Number, BlockNumber string }
		_ = json.Unmarshal(n.Params.Result, &v)
		switch n.Params.Subscription {
		case headsID:
			gotHeads = append(gotHeads, hexNum(t, v.Number))
		case logsID:
			gotLogs = append(gotLogs, hexNum(t, v.BlockNumber))
		default:
			t.Fatalf("notification for %q: %+v", n.Params.Subscription, n)
		}
	}
	want := []uint64{0x11, 0x12, 0x13, 0x14, 0x15, 0x16}
	if fmt.Sprint(gotHeads) != fmt.Sprint(want) {
		t.Fatalf("heads %x, want %x", gotHeads, want)
	}
	sort.Slice(gotLogs, func(i, j int) bool { return gotLogs[i] < gotLogs[j] })
	if fmt.Sprint(gotLogs) != fmt.Sprint(want) {
		t.Fatalf("logs of blocks %x, want each of %x once", gotLogs, want)
	}
	if gw.metric(t, "gateway_subscriptions_moved_total") != 2 {
		t.Fatalf("moves: %v", gw.metric(t, "gateway_subscriptions_moved_total"))
	}
	// 0x13 and 0x14 came while the subscriptions were moving: fetched, not received.
	if got := gw.metric(t, "gateway_subscriptions_backfilled_total"); got < 2 {
		t.Fatalf("backfilled %v", got)
	}
}

func hexNum(t *testing.T, s string) uint64 {
	t.Helper()
	var n uint64
	if _, err := fmt.Sscanf(s, "0x%x", &n); err != nil {
		t.Fatalf("not a hex number: %q", s)
	}
	return n
}
