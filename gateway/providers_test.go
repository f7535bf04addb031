package gateway

import (
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/gateway/internal/redistest"
)

// fakeProvider is a paid provider as the issue describes them: a rate limit it keeps
// itself (a token bucket of rate calls per second, burst one second), refused the way
// that provider refuses (Alchemy: HTTP 200 and a JSON-RPC 429 in the body; Infura: HTTP
// 429, -32005 and Retry-After; QuickNode: HTTP 429 and -32007), and a daily cap (HTTP
// 402 once the day's calls are spent). It counts what it served and what it refused,
// per second of its own clock, so a test sees what the provider saw.
type fakeProvider struct {
	URL  string
	kind string // alchemy, infura, quicknode: how it refuses
	rate float64
	cap  int64 // daily calls; 0: none

	mu       sync.Mutex
	tat      time.Time // GCRA theoretical arrival time
	calls    int64     // every call that reached it (refused ones too)
	served   int64
	refused  int64
	capped   int64 // refused for the daily cap
	perSec   map[int64]int64
	start    time.Time
	methods  map[string]int64
	lastSeen time.Time
}

func startProvider(t testing.TB, kind string, rate float64, dailyCap int64) *fakeProvider {
	t.Helper()
	p := &fakeProvider{kind: kind, rate: rate, cap: dailyCap, perSec: map[int64]int64{}, methods: map[string]int64{},
		start: time.Now()}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: p.serve}
	done := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(done) }()
	t.Cleanup(func() { _ = srv.Shutdown(); <-done })
	p.URL = "http://" + ln.Addr().String()
	return p
}

// admit spends one call of the provider's own limits: ok, or refused by the rate
// (throttle) or by the daily cap.
func (p *fakeProvider) admit(method string) (ok, capped bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	p.calls++
	p.methods[method]++
	p.perSec[int64(now.Sub(p.start)/time.Second)]++
	if p.cap > 0 && p.served >= p.cap {
		p.capped++
		p.refused++
		return false, true
	}
	if p.rate > 0 {
		interval := time.Duration(float64(time.Second) / p.rate)
		tat := p.tat
		if tat.Before(now) {
			tat = now
		}
		// Burst: one second of calls.
		if tat.Sub(now) > time.Second-interval {
			p.refused++
			return false, false
		}
		p.tat = tat.Add(interval)
	}
	p.served++
	return true, false
}

func (p *fakeProvider) serve(ctx *fasthttp.RequestCtx) {
	var req struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
		Params []json.RawMessage
	}
	if err := json.Unmarshal(ctx.PostBody(), &req); err != nil {
		ctx.SetStatusCode(400)
		ctx.SetBodyString(`{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}`)
		return
	}
	id := string(req.ID)
	ctx.SetContentType("application/json")
	ok, capped := p.admit(req.Method)
	switch {
	case capped:
		ctx.SetStatusCode(402)
		ctx.SetBodyString(`{"jsonrpc":"2.0","id":` + id + `,"error":{"code":-32005,"message":"daily request count exceeded, request rate limited"}}`)
		return
	case !ok && p.kind == "alchemy":
		ctx.SetBodyString(`{"jsonrpc":"2.0","id":` + id + `,"error":{"code":429,"message":"Your app has exceeded its compute units per second capacity. If you have retries enabled, you can safely ignore this message. If not, check out https://docs.alchemy.com/reference/throughput"}}`)
		return
	case !ok && p.kind == "infura":
		ctx.SetStatusCode(429)
		ctx.Response.Header.Set("Retry-After", "1")
		ctx.SetBodyString(`{"jsonrpc":"2.0","id":` + id + `,"error":{"code":-32005,"message":"project ID request rate exceeded","data":{"see":"https://infura.io/dashboard","current_rps":` +
			strconv.FormatFloat(p.rate+1, 'f', 0, 64) + `,"allowed_rps":` + strconv.FormatFloat(p.rate, 'f', 0, 64) + `,"backoff_seconds":1}}}`)
		return
	case !ok:
		ctx.SetStatusCode(429)
		ctx.SetBodyString(`{"jsonrpc":"2.0","id":` + id + `,"error":{"code":-32007,"message":"request limit reached - reduce calls per second or upgrade your account at quicknode.com"}}`)
		return
	}
	const head = 0x100000
	var result string
	switch req.Method {
	case "eth_blockNumber":
		result = fmt.Sprintf(`"0x%x"`, head)
	case "eth_chainId":
		result = `"0x539"`
	case "eth_getBlockByNumber":
		var tag string
		if len(req.Params) > 0 {
			_ = json.Unmarshal(req.Params[0], &tag)
		}
		n, err := strconv.ParseUint(strings.TrimPrefix(tag, "0x"), 16, 64)
		switch {
		case tag == "latest" || err != nil:
			result = fakeBlock(head)
		default:
			result = fakeBlock(n)
		}
	default:
		result = `"0x1"`
	}
	ctx.SetBodyString(`{"jsonrpc":"2.0","id":` + id + `,"result":` + result + `}`)
}

// counts returns what the provider saw: calls, refused (throttled or capped), capped.
func (p *fakeProvider) counts() (calls, refused, capped int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls, p.refused, p.capped
}

// methodCounts is a copy of the calls seen per method: the provider still serves
// (the gateways' health probes) while the test reads it.
func (p *fakeProvider) methodCounts() map[string]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.methods)
}

// maxPerSecond is the most calls the provider saw in one second of its clock, counting
// seconds from..to-1 only (whole seconds of the load).
func (p *fakeProvider) maxPerSecond(from, to time.Time) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var m int64
	for s := int64(from.Sub(p.start)/time.Second) + 1; s < int64(to.Sub(p.start)/time.Second); s++ {
		m = max(m, p.perSec[s])
	}
	return m
}

// offerDistinctReads sends n reads, each for another block, at rate per second spread
// over the replicas (an open loop paced by a schedule, not synchronisation), and
// returns the answers that were not a result. A call is sent 1/rate after the one
// before it, or at once if that time has passed: a stall of the machine (the test
// process, its gateways and its clients alike) delays the schedule rather than leaves
// calls overdue, to be sent back to back once it ends. The rate holds over any second
// but the one a stall ends in, where at most the workers' calls go together.
func offerDistinctReads(t *testing.T, urls []string, rate float64, dur time.Duration, first uint64) (sent int64, errs []string) {
	t.Helper()
	const workers = 32
	total := int(rate * dur.Seconds())
	interval := time.Duration(float64(time.Second) / rate)
	var mu sync.Mutex
	var n atomic.Int64
	var pace sync.Mutex
	next, taken := time.Now(), 0
	// slot is the next call's number (total: none left) and when to send it.
	slot := func() (int, time.Time) {
		pace.Lock()
		defer pace.Unlock()
		at := next
		if now := time.Now(); now.After(at) {
			at = now
		}
		next = at.Add(interval)
		taken++
		return taken - 1, at
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, at := slot(); i < total; i, at = slot() {
				if d := time.Until(at); d > 0 {
					time.Sleep(d) // pacing an open-loop load
				}
				n.Add(1)
				body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"eth_getBlockByNumber","params":["0x%x",false]}`, i, first+uint64(i))
				code, ans, err := tryPost(urls[i%len(urls)]+"/", body)
				if err != nil || code != 200 || !strings.Contains(ans, `"result":{`) {
					mu.Lock()
					errs = append(errs, fmt.Sprintf("%d %.200s %v", code, ans, err))
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return n.Load(), errs
}

// TestProvidersBehindThreeReplicas is the measurement: three replicas sharing a
// real Redis in front of three providers, one throttling past 20 calls/s in the body
// (Alchemy), one past 90 calls/s with HTTP 429 (Infura), one with a 400-call daily cap;
// budgets of 18 and 85 calls/s and the cap; 90 distinct reads per second for 15 s. No
// client sees a provider's throttle, and at most 2 % of what reaches the providers is
// refused by them. 90, not 100: the cap is spent two thirds in (the router spends it
// alongside the others), and from then on 100/s left the two rate budgets 3 % of
// headroom (103/s), which the bunched calls of a loaded machine (a late open-loop
// schedule, leases renewed late) crossed: 4 of 1,500 calls refused by the budgets at the
// end of a CI run. 90/s leaves 13 %, still needs both providers, and still spends the cap.
func TestProvidersBehindThreeReplicas(t *testing.T) {
	rs := redistest.Start(t)
	alchemy := startProvider(t, "alchemy", 20, 0)
	infura := startProvider(t, "infura", 90, 0)
	capped := startProvider(t, "quicknode", 0, 400)
	file := fmt.Sprintf(`
anonymous: {plan: open}
plans:
  open: {}
upstreams:
  - name: alchemy
    http: %s
    kind: alchemy
    budget: {requests_per_second: 18}
  - name: infura
    http: %s
    kind: infura
    budget: {requests_per_second: 85}
  - name: capped
    http: %s
    kind: quicknode
    budget: {daily_units: 400}
`, alchemy.URL, infura.URL, capped.URL)
	path := writeFile(t, t.TempDir(), "gateway.yaml", file)
	var urls []string
	for range 3 {
		gw := startGateway(t, "-config", path, "-redis-addr", rs.Addr, "-cache=false")
		gw.waitUpstreams(t)
		waitFor(t, "Redis usable", func() bool { return gw.metric(t, `gateway_redis_up{client="redis"}`) == 1 })
		urls = append(urls, gw.URL)
	}
	dur := 15 * time.Second
	sent, errs := offerDistinctReads(t, urls, 90, dur, 1)
	var calls, refused int64
	for _, p := range []*fakeProvider{alchemy, infura, capped} {
		c, r, cp := p.counts()
		t.Logf("%s: %d calls, %d refused (%d by the daily cap), methods %v", p.kind, c, r, cp, p.methodCounts())
		calls += c
		refused += r
	}
	t.Logf("%d client calls, %d errors; providers saw %d calls, refused %d (%.2f %%)", sent, len(errs), calls, refused,
		100*float64(refused)/float64(max(calls, 1)))
	if len(errs) > 0 {
		t.Errorf("%d of %d client calls failed; first: %s", len(errs), sent, errs[0])
	}
	if float64(refused) > 0.02*float64(calls) {
		t.Errorf("providers refused %d of %d calls (%.2f %%), want at most 2 %%", refused, calls,
			100*float64(refused)/float64(calls))
	}
}
