package upstream

import (
	"bytes"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/proto"
)

// Budgets (budget.go): meters, the auto-tuned rate, selection past spent budgets, the
// gateway's own refusal, the brief wait, reloads. Time is a fake clock the test moves,
// so nothing depends on the machine's speed.

type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Duration      { return time.Duration(c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// countingServer answers every call with result 0x1 and counts them; refuse, when it
// returns true, makes it answer HTTP 429 instead (a provider's throttle).
func countingServer(t testing.TB, refuse func() bool) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if refuse != nil && refuse() {
			ctx.SetStatusCode(fasthttp.StatusTooManyRequests)
			ctx.SetBodyString(`{"jsonrpc":"2.0","id":1,"error":{"code":-32005,"message":"project ID request rate exceeded"}}`)
			return
		}
		n.Add(1)
		ctx.SetContentType("application/json")
		if bytes.HasPrefix(ctx.PostBody(), []byte("[")) {
			ctx.SetBodyString(`[{"jsonrpc":"2.0","id":0,"result":"0x1"},{"jsonrpc":"2.0","id":1,"result":"0x1"}]`)
			return
		}
		ctx.SetBodyString(`{"jsonrpc":"2.0","id":1,"result":"0x1"}`)
	}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return "http://" + ln.Addr().String(), &n
}

func TestAIMD(t *testing.T) {
	ms := int64(time.Millisecond)
	for _, tc := range []struct {
		name       string
		configured float64
		sent       int64   // requests counted in the first second (learning)
		calls      []int64 // single requests at these times (ms)
		cuts       []int64 // throttles at these times (ms)
		at         int64   // rate read at (ms)
		want       float64
	}{
		{"configured, untouched", 100, 0, nil, nil, 5000, 100},
		{"one cut", 100, 0, nil, []int64{1000}, 1000, 75},
		{"cuts within 200ms count once", 100, 0, nil, []int64{1000, 1100, 1199}, 1000 + 199, 75 + 5*0.199},
		{"two cuts", 100, 0, nil, []int64{1000, 1200}, 1200, (75 + 5*0.2) * 0.75},
		{"additive recovery: 5% of configured per second", 100, 0, nil, []int64{1000}, 3000, 85},
		{"recovery stops at configured", 100, 0, nil, []int64{1000}, 60000, 100},
		{"learned: unlimited before a throttle", 0, 100, nil, nil, 1500, 0},
		{"learned: cut from the rate sent", 0, 100, nil, []int64{1500}, 1500, 75},
		{"learned: +1/s at least", 0, 20, nil, []int64{1500}, 3500, 17},
		// Before, one throttle while quiet cut an unconfigured upstream to 1 req/s, and it
		// grew back by 1 req/s per second, never to unlimited.
		{"learned: a throttle while quiet leaves it unlimited", 0, 1, nil, []int64{1500}, 1600, 0},
		{"learned: cut from the recent peak, not a quiet last second", 0, 100, []int64{2500}, []int64{2600}, 2600, 0.75 * 100 * 0.9},
		{"learned: recovers 5% of the peak per second", 0, 100, nil, []int64{1500}, 3500, 85},
		{"learned: unlimited once back above the peak", 0, 100, nil, []int64{1500}, 6600, 0},
		{"learned: throttles repeated hold it under the peak", 0, 100, nil, []int64{1500, 1700, 1900}, 1900, ((75+5*0.2)*0.75 + 5*0.2) * 0.75},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var a aimd
			a.init(tc.configured)
			for i := range tc.sent {
				a.take(i*int64(time.Second)/tc.sent, 1)
			}
			for _, c := range tc.calls {
				a.take(c*ms, 1)
			}
			for _, c := range tc.cuts {
				a.cut(c * ms)
			}
			if got := a.rate(tc.at * ms); got < tc.want-0.01 || got > tc.want+0.01 {
				t.Fatalf("rate %v, want %v", got, tc.want)
			}
		})
	}
}

// The gateway's refusal names the budgets that refused: configured ones, or rates
// learned from a provider's throttles (before, always "its configured budget", also of
// an upstream with none).
func TestBudgetRefusalSaysWhichBudget(t *testing.T) {
	url, _ := countingServer(t, nil)
	const prefix = "upstream budgets spent: every upstream that can serve eth_chainId "
	configured := Spec{Name: "c", HTTPURL: url, Budget: BudgetSpec{RequestsPerSecond: 1}}
	learned := Spec{Name: "l", HTTPURL: url}
	for _, tc := range []struct {
		name  string
		specs []Spec
		want  string
	}{
		{"configured", []Spec{configured}, "is at its configured budget"},
		{"learned", []Spec{learned}, "is at the rate learned from its provider's throttles"},
		{"both", []Spec{configured, learned}, "is at its configured budget or at the rate learned from its provider's throttles"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var clk fakeClock // stands still: no budget refills during the test
			r := budgetRouter(t, &clk, nil, tc.specs...)
			req := request("eth_chainId", `[]`)
			if u := byName(r, "l"); u != nil {
				r.throttled(u) // cut to its floor, 1/s, with no call sent before
			}
			var err error
			for range 10 {
				if _, err = r.HTTP().Call(nil, req, []byte("1"), time.Now().Add(5*time.Second)); err != nil {
					break
				}
			}
			if e, ok := err.(*proto.Error); !ok || e.Code != proto.CodeLimitExceeded || e.Message != prefix+tc.want {
				t.Fatalf("refusal %v, want %q", err, prefix+tc.want)
			}
		})
	}
}

// The pacing lets through the effective rate, no more.
func TestAIMDPaces(t *testing.T) {
	var a aimd
	a.init(100)
	a.cut(1) // 75/s from here; recovery adds 5/s per second
	admitted := 0
	for i := int64(0); i < 1000; i++ { // one second, a call every millisecond
		if _, ok := a.take(1+i*int64(time.Millisecond), 1); ok {
			admitted++
		}
	}
	// 75..80/s over the second, plus the burst of 0.1 s.
	if admitted < 75 || admitted > 80+8+1 {
		t.Fatalf("admitted %d in a second at ~75-80/s", admitted)
	}
}

func TestLocalMeters(t *testing.T) {
	var clk fakeClock
	day := func(now int64) (int64, time.Duration) {
		return now / int64(24*time.Hour), time.Duration(int64(24*time.Hour) - now%int64(24*time.Hour))
	}
	f := localMeters(func() int64 { return int64(clk.now()) }, day)
	for _, tc := range []struct {
		kind    MeterKind
		limit   float64
		take    int64
		ok      int // takes that pass at one instant
		advance time.Duration
		okAfter int
	}{
		{MeterRequests, 10, 1, 10, 100 * time.Millisecond, 1},
		{MeterUnits, 100, 26, 3, time.Second, 3},
		{MeterDaily, 100, 10, 10, 24 * time.Hour, 10},
	} {
		t.Run(tc.kind.String(), func(t *testing.T) {
			clk.ns.Store(0)
			m, err := f("u", tc.kind, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			count := func() (n int) {
				for i := 0; i < 1000; i++ {
					if ok, _ := m.Take(tc.take); !ok {
						return n
					}
					n++
				}
				return n
			}
			if n := count(); n != tc.ok {
				t.Fatalf("%d takes passed, want %d", n, tc.ok)
			}
			clk.advance(tc.advance)
			if n := count(); n != tc.okAfter {
				t.Fatalf("after %v: %d takes passed, want %d", tc.advance, n, tc.okAfter)
			}
		})
	}
}

func TestCostPresets(t *testing.T) {
	for _, tc := range []struct {
		preset    string
		overrides map[string]int64
		method    string
		want      int64
	}{
		{"", nil, "eth_getLogs", 1},
		{"generic", nil, "eth_call", 1},
		{"alchemy", nil, "eth_blockNumber", 10},
		{"alchemy", nil, "eth_call", 26},
		{"alchemy", nil, "eth_getLogs", 75},
		{"alchemy", nil, "trace_call", 75}, // outside the gateway's method table
		{"alchemy", nil, "eth_sendRawTransaction", 250},
		{"alchemy", nil, "somechain_custom", 26},
		{"infura", nil, "eth_call", 80},
		{"infura", nil, "eth_getLogs", 255},
		{"infura", nil, "eth_chainId", 5},
		{"infura", map[string]int64{"eth_call": 100, "bor_getAuthor": 7}, "eth_call", 100},
		{"infura", map[string]int64{"eth_call": 100, "bor_getAuthor": 7}, "bor_getAuthor", 7},
	} {
		t.Run(tc.preset+"/"+tc.method, func(t *testing.T) {
			ct, err := newCostTable(tc.preset, tc.overrides)
			if err != nil {
				t.Fatal(err)
			}
			if got := ct.of(request(tc.method, `[]`)); got != tc.want {
				t.Fatalf("cost %d, want %d", got, tc.want)
			}
		})
	}
	if _, err := newCostTable("quicknode-credits", nil); err == nil || !strings.Contains(err.Error(), "alchemy, generic, infura") {
		t.Fatalf("unknown preset: %v", err)
	}
}

// budgetRouter is a router over specs with the budgets' clock clk.
func budgetRouter(t *testing.T, clk *fakeClock, mod func(*RouterConfig), specs ...Spec) *Router {
	t.Helper()
	return testRouterWith(t, func(c *RouterConfig) {
		if clk != nil {
			c.Clock = clk.now
		}
		c.Retries = 0
		if mod != nil {
			mod(c)
		}
	}, specs...)
}

// An upstream whose budget is spent is passed over: the calls go to the other one.
func TestBudgetSpentUpstreamIsPassedOver(t *testing.T) {
	urlA, a := countingServer(t, nil)
	urlB, b := countingServer(t, nil)
	var clk fakeClock
	r := budgetRouter(t, &clk, nil,
		Spec{Name: "a", HTTPURL: urlA, Budget: BudgetSpec{RequestsPerSecond: 10}},
		Spec{Name: "b", HTTPURL: urlB})
	req := request("eth_chainId", `[]`)
	for i := 0; i < 50; i++ {
		if _, err := r.HTTP().Call(nil, req, []byte("1"), time.Now().Add(5*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	// The fake clock stands still: a has its one second of burst (10), no more.
	if a.Load() > 10 || a.Load()+b.Load() != 50 {
		t.Fatalf("a got %d calls (budget 10), b %d", a.Load(), b.Load())
	}
}

// Every budget spent: the gateway refuses with its own -32005 (HTTP 429, Retry-After),
// naming the method, and counts it; the provider never sees the call.
func TestBudgetEverySpentRefuses(t *testing.T) {
	url, n := countingServer(t, nil)
	var clk fakeClock
	r := budgetRouter(t, &clk, nil, Spec{Name: "a", HTTPURL: url,
		Budget: BudgetSpec{UnitsPerSecond: 100, Costs: "alchemy"}})
	req := request("eth_call", `[{"to":"0x0000000000000000000000000000000000000000"},"latest"]`)
	var errs []error
	for i := 0; i < 5; i++ {
		_, err := r.HTTP().Call(nil, req, []byte("1"), time.Now().Add(5*time.Second))
		errs = append(errs, err)
	}
	if n.Load() != 3 { // 100 units at 26 per eth_call
		t.Fatalf("provider saw %d calls, want 3", n.Load())
	}
	e, ok := errs[4].(*proto.Error)
	if !ok || e.Code != proto.CodeLimitExceeded || e.Status != 429 || e.RetryAfter != 1 ||
		e.Message != "upstream budgets spent: every upstream that can serve eth_call is at its configured budget" {
		t.Fatalf("refusal %#v", errs[4])
	}
	if got := r.budgetRefusedN.Get(); got != 2 {
		t.Fatalf("gateway_budget_refused_total %d, want 2", got)
	}
	var out bytes.Buffer
	r.cfg.Registry.WritePrometheus(&out)
	for _, want := range []string{
		`gateway_upstream_budget_spent_units_total{upstream="a"} 78`,
		`gateway_upstream_budget_requests_total{upstream="a"} 3`,
		`gateway_upstream_budget_configured{upstream="a",budget="units_per_second"} 100`,
		`gateway_upstream_budget_effective{upstream="a",budget="units_per_second"} 100`,
		`gateway_upstream_budget_skipped_total{upstream="a"} 1`, // refused once, then passed over
		`gateway_budget_refused_total 2`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("metrics lack %s in\n%s", want, out.String())
		}
	}
	// A batch costs the sum of its calls.
	clk.advance(time.Second)
	var b Batch
	b.Add(request("eth_getLogs", `[{}]`), []byte("1"))
	b.Add(request("eth_blockNumber", `[]`), []byte("2"))
	if err := r.HTTP().CallBatch(&b, time.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := byName(r, "a").budget.spent.Get(); got != 78+85 {
		t.Fatalf("spent %d units, want %d", got, 78+85)
	}
}

// A call that finds every budget spent waits briefly for room (bounded by BudgetWait
// and the queue's bytes), then is served; with the queue full it is refused at once.
func TestBudgetWaitsBriefly(t *testing.T) {
	url, n := countingServer(t, nil)
	for _, tc := range []struct {
		name       string
		queueBytes int64
		wantOK     bool
	}{
		{"room comes within the wait", 1 << 20, true},
		{"queue full: refused at once", 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := budgetRouter(t, nil, func(c *RouterConfig) {
				c.BudgetWait, c.BudgetQueueBytes = 10*time.Second, tc.queueBytes
			}, Spec{Name: "a", HTTPURL: url, Budget: BudgetSpec{RequestsPerSecond: 0.5}})
			req := request("eth_chainId", `[]`)
			before := n.Load()
			if _, err := r.HTTP().Call(nil, req, []byte("1"), time.Now().Add(30*time.Second)); err != nil {
				t.Fatal(err)
			}
			// The second: room in 2 s at 0.5/s; the wait is bounded by 10 s.
			_, err := r.HTTP().Call(nil, req, []byte("1"), time.Now().Add(30*time.Second))
			if (err == nil) != tc.wantOK {
				t.Fatalf("second call: %v", err)
			}
			if got := n.Load() - before; got > 2 {
				t.Fatalf("provider saw %d calls", got)
			}
			if r.budgetQueued.Load() != 0 {
				t.Fatalf("queue holds %d bytes after the calls", r.budgetQueued.Load())
			}
		})
	}
}

// A reload that changes only the budget keeps the upstream (its connections, health).
func TestBudgetReloadKeepsUpstream(t *testing.T) {
	url, _ := countingServer(t, nil)
	r := budgetRouter(t, nil, nil, Spec{Name: "a", HTTPURL: url, Budget: BudgetSpec{RequestsPerSecond: 10}})
	before := byName(r, "a")
	if err := r.Reload([]Spec{{Name: "a", HTTPURL: url, Budget: BudgetSpec{RequestsPerSecond: 50, Costs: "infura"}}}); err != nil {
		t.Fatal(err)
	}
	after := byName(r, "a")
	if after != before {
		t.Fatal("a budget change rebuilt the upstream")
	}
	if got := after.budgetConfigured(MeterRequests); got != 50 {
		t.Fatalf("configured %v after the reload, want 50", got)
	}
	if st := r.Status().Upstreams[0].Budget; st == nil || st.Costs != "infura" || st.Configured["requests_per_second"] != 50 {
		t.Fatalf("status %+v", st)
	}
}

// With no budget configured, a provider that throttles above a hidden 40 req/s, offered
// 100 req/s for 30 s (simulated: the provider's limit and the gateway's budgets share
// the fake clock, the calls are real HTTP), makes the effective rate converge to
// within 20% of 40. Asserted on the metric's trajectory over the last 10 s.
func TestBudgetAutoTuneFindsHiddenLimit(t *testing.T) {
	var clk fakeClock
	const hidden = 40.0
	// The provider's limit: a token bucket of 40/s and a burst of one second.
	var tokens = hidden
	var last time.Duration
	url, served := countingServer(t, func() bool {
		now := clk.now()
		tokens = min(hidden, tokens+hidden*(now-last).Seconds())
		last = now
		if tokens < 1 {
			return true
		}
		tokens--
		return false
	})
	// The throttle gate's back-off (gate.go) runs on real time while this test's clock
	// is simulated: a rule with a 1 ns back-off leaves only the auto-tune under test.
	r := budgetRouter(t, &clk, nil, Spec{Name: "p", HTTPURL: url,
		Errors: []ErrorRule{{HTTPStatus: 429, Class: AnswerThrottled, Backoff: time.Nanosecond}}})
	u := byName(r, "p")
	req := request("eth_chainId", `[]`)
	var trajectory []float64
	for sec := 0; sec < 30; sec++ {
		for i := 0; i < 100; i++ { // one call every 10 ms, one at a time
			_, _ = r.HTTP().Call(nil, req, []byte("1"), time.Now().Add(5*time.Second))
			clk.advance(10 * time.Millisecond)
		}
		trajectory = append(trajectory, u.budgetEffective(r.clock(), MeterRequests))
	}
	t.Logf("effective req/s each second: %.1f", trajectory)
	if trajectory[0] == 0 {
		t.Fatal("no throttle was noticed: the effective rate is still unlimited")
	}
	var sum float64
	for _, v := range trajectory[20:] {
		sum += v
		if v < hidden*0.5 || v > hidden*1.5 {
			t.Fatalf("effective rate %.1f in the last 10 s, far from %v", v, hidden)
		}
	}
	if mean := sum / 10; mean < hidden*0.8 || mean > hidden*1.2 {
		t.Fatalf("mean effective rate %.1f over the last 10 s, want within 20%% of %v", mean, hidden)
	}
	if s := served.Load(); s < int64(hidden*30*0.7) {
		t.Fatalf("the provider served %d calls in 30 s: the gateway held back far below its limit", s)
	}
}

// A batch of more calls (or units) than a budget's burst is served when the budget is
// full, charged in full: the calls after it wait for the debt (before, such a batch was
// refused however long the upstream was idle). Per meter and for the auto-tuned pacing.
func TestBudgetBatchLargerThanBurst(t *testing.T) {
	call := request("eth_call", `[{"to":"0x0000000000000000000000000000000000000000"},"latest"]`)
	for _, tc := range []struct {
		name     string
		budget   BudgetSpec
		cut      bool // a throttle first: the pacing (burst 0.1 s of 75/s) is what limits
		calls    int
		payBack  time.Duration // at least the batch's cost at the rate: the debt is paid
		requests int64         // what the budget counts after the second batch
	}{
		{"requests_per_second 5, batch of 10", BudgetSpec{RequestsPerSecond: 5}, false, 10, 2 * time.Second, 20},
		{"units_per_second 330, 13 eth_call (338 units)", BudgetSpec{UnitsPerSecond: 330, Costs: "alchemy"}, false, 13, 2 * time.Second, 26},
		{"paced at 75/s after a throttle, batch of 20", BudgetSpec{RequestsPerSecond: 100}, true, 20, time.Second, 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url, _ := countingServer(t, nil)
			var clk fakeClock
			r := budgetRouter(t, &clk, nil, Spec{Name: "a", HTTPURL: url, Budget: tc.budget})
			u := byName(r, "a")
			if tc.cut {
				u.budget.cur.Load().tune.cut(r.clock())
			}
			batch := func() error {
				var b Batch
				for i := range tc.calls {
					b.Add(call, []byte{byte('0' + i%10)})
				}
				return r.HTTP().CallBatch(&b, time.Now().Add(5*time.Second))
			}
			if err := batch(); err != nil {
				t.Fatalf("a batch on an idle upstream: %v", err)
			}
			// In debt: a single call at once is refused, the rate holds.
			if _, err := r.HTTP().Call(nil, call, []byte("1"), time.Now().Add(5*time.Second)); err == nil {
				t.Fatal("a call right after the batch admitted: the batch was not charged in full")
			}
			clk.advance(tc.payBack)
			if err := batch(); err != nil {
				t.Fatalf("a batch once the debt is paid back: %v", err)
			}
			if got := u.budget.requests.Get(); got != uint64(tc.requests) {
				t.Fatalf("budget counted %d requests, want %d", got, tc.requests)
			}
		})
	}
}

// A spent daily budget refuses at once, with Retry-After the time until the day's
// reset (before: each call waited out -budget-wait and was told 1 s).
func TestBudgetDailySpentRefusesUntilReset(t *testing.T) {
	url, _ := countingServer(t, nil)
	var clk fakeClock
	clk.advance(time.Hour) // 01:00: 23 h until the day resets
	r := budgetRouter(t, &clk, func(c *RouterConfig) { c.BudgetWait, c.BudgetQueueBytes = time.Hour, 1<<20 },
		Spec{Name: "a", HTTPURL: url, Budget: BudgetSpec{DailyUnits: 1}})
	req := request("eth_chainId", `[]`)
	if _, err := r.HTTP().Call(nil, req, []byte("1"), time.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		call func(deadline time.Time) error
	}{
		{"call", func(d time.Time) error { _, err := r.HTTP().Call(nil, req, []byte("1"), d); return err }},
		{"batch", func(d time.Time) error {
			var b Batch
			b.Add(req, []byte("1"))
			b.Add(req, []byte("2"))
			return r.HTTP().CallBatch(&b, d)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			deadline := time.Now().Add(10 * time.Second)
			err := tc.call(deadline)
			if !time.Now().Before(deadline) {
				t.Fatal("the refusal waited for room that comes only tomorrow")
			}
			if e, ok := err.(*proto.Error); !ok || e.Code != proto.CodeLimitExceeded || e.RetryAfter != 23*3600 {
				t.Fatalf("refusal %#v, want -32005 with Retry-After %d", err, 23*3600)
			}
		})
	}
}
