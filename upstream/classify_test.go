package upstream

import (
	"strings"
	"testing"
	"time"
)

// The providers' real answers (classify.go cites the docs), each classified through the
// HTTP pool and, where a websocket can carry it (no HTTP status), the Mux: the same
// class and back-off on both transports.
func TestClassifyProviderAnswersOnBothTransports(t *testing.T) {
	cases := []struct {
		name    string
		kind    string
		rules   []ErrorRule
		answer  providerAnswer
		want    AnswerClass
		backoff time.Duration // stated back-off expected (0: none)
	}{
		{"alchemy in-body 429", KindAlchemy, nil, alchemyThrottle, AnswerThrottled, 0},
		{"alchemy HTTP 429", KindAlchemy, nil, providerAnswer{429, nil, `{"jsonrpc":"2.0","id":@ID@,"error":{"code":429,"message":"Too Many Requests"}}`}, AnswerThrottled, 0},
		{"alchemy monthly cap", KindAlchemy, nil, providerAnswer{200, nil, `{"jsonrpc":"2.0","id":@ID@,"error":{"code":429,"message":"Monthly capacity limit exceeded. Visit https://dashboard.alchemy.com/settings/billing to upgrade your scaling policy for continued service."}}`}, AnswerExhausted, 0},
		{"infura rate, Retry-After and backoff_seconds", KindInfura, nil, infuraThrottle, AnswerThrottled, 30 * time.Second},
		{"infura rate, data.rate.backoff_seconds", KindInfura, nil, providerAnswer{200, nil, `{"jsonrpc":"2.0","id":@ID@,"error":{"code":-32005,"message":"project ID request rate exceeded","data":{"rate":{"allowed_rps":50,"backoff_seconds":30,"current_rps":80.86666666666666},"see":""}}}`}, AnswerThrottled, 30 * time.Second},
		{"infura daily count", KindInfura, nil, infuraDaily, AnswerExhausted, 0},
		{"infura daily count in a 200", KindInfura, nil, providerAnswer{200, nil, `{"jsonrpc":"2.0","id":@ID@,"error":{"code":-32005,"message":"daily request count exceeded, request rate limited"}}`}, AnswerExhausted, 0},
		{"infura too many results is the call's", KindInfura, nil, providerAnswer{200, nil, `{"jsonrpc":"2.0","id":@ID@,"error":{"code":-32005,"message":"query returned more than 10000 results"}}`}, AnswerClientError, 0},
		{"402 payment required", KindGeneric, nil, paymentRequired, AnswerExhausted, 0},
		{"quicknode -32007", KindQuickNode, nil, quicknodeLimit, AnswerThrottled, 0},
		{"quicknode -32012 in a 200", KindQuickNode, nil, providerAnswer{200, nil, `{"jsonrpc":"2.0","id":@ID@,"error":{"code":-32012,"message":"credits limited to 50/sec"}}`}, AnswerThrottled, 0},
		{"401", KindGeneric, nil, unauthorized, AnswerUnauthorized, 0},
		{"403 without a body", KindGeneric, nil, providerAnswer{403, nil, `forbidden`}, AnswerUnauthorized, 0},
		{"-32002 from a provider", KindInfura, nil, providerAnswer{200, nil, `{"jsonrpc":"2.0","id":@ID@,"error":{"code":-32002,"message":"rejected due to project ID settings"}}`}, AnswerUnauthorized, 0},
		{"-32002 from a plain node is the call's", KindGeneric, nil, providerAnswer{200, nil, `{"jsonrpc":"2.0","id":@ID@,"error":{"code":-32002,"message":"resource unavailable"}}`}, AnswerClientError, 0},
		{"geth header not found", KindGeneric, nil, providerAnswer{200, nil, `{"jsonrpc":"2.0","id":@ID@,"error":{"code":-32000,"message":"header not found"}}`}, AnswerMissingData, 0},
		{"geth missing trie node", KindGeneric, nil, missingTrieNode, AnswerMissingData, 0},
		{"erigon block not found", KindGeneric, nil, providerAnswer{200, nil, `{"jsonrpc":"2.0","id":@ID@,"error":{"code":-32000,"message":"block not found: 123"}}`}, AnswerMissingData, 0},
		{"nethermind unknown block", KindGeneric, nil, providerAnswer{200, nil, `{"jsonrpc":"2.0","id":@ID@,"error":{"code":-32001,"message":"Unknown block"}}`}, AnswerMissingData, 0},
		{"geth execution reverted", KindGeneric, nil, providerAnswer{200, nil, `{"jsonrpc":"2.0","id":@ID@,"error":{"code":3,"message":"execution reverted","data":"0x08c379a0"}}`}, AnswerClientError, 0},
		{"revert reason reading like a throttle", KindAlchemy, nil, reverted, AnswerClientError, 0},
		{"invalid params", KindGeneric, nil, providerAnswer{200, nil, `{"jsonrpc":"2.0","id":@ID@,"error":{"code":-32602,"message":"invalid argument 0: hex string has length 2, want 40 for common.Address"}}`}, AnswerClientError, 0},
		// Messages that echo the client's method or params are the call's, whatever they say.
		{"geth method not found naming an 'unauthorized' method", KindGeneric, nil, providerAnswer{200, nil, `{"jsonrpc":"2.0","id":@ID@,"error":{"code":-32601,"message":"the method eth_unauthorized does not exist/is not available"}}`}, AnswerClientError, 0},
		{"invalid params echoing 'daily limit'", KindGeneric, nil, providerAnswer{200, nil, `{"jsonrpc":"2.0","id":@ID@,"error":{"code":-32602,"message":"invalid argument 0: json: cannot unmarshal string \"daily limit\" into Go value"}}`}, AnswerClientError, 0},
		{"invalid params echoing a provider's throttle text", KindInfura, nil, providerAnswer{200, nil, `{"jsonrpc":"2.0","id":@ID@,"error":{"code":-32602,"message":"invalid argument 0: project id request rate exceeded"}}`}, AnswerClientError, 0},
		{"invalid request echoing 'rate limit' over a 400", KindGeneric, nil, providerAnswer{400, nil, `{"jsonrpc":"2.0","id":@ID@,"error":{"code":-32600,"message":"invalid request: rate limit"}}`}, AnswerClientError, 0},
		{"a 429 status stays a throttle whatever the code", KindGeneric, nil, providerAnswer{429, nil, `{"jsonrpc":"2.0","id":@ID@,"error":{"code":-32600,"message":"slow down"}}`}, AnswerThrottled, 0},
		// A stated back-off is a throttle, with no text to go by.
		{"-32005 with backoff_seconds in a 200", KindGeneric, nil, providerAnswer{200, nil, `{"jsonrpc":"2.0","id":@ID@,"error":{"code":-32005,"message":"limit exceeded","data":{"rate":{"backoff_seconds":5}}}}`}, AnswerThrottled, 5 * time.Second},
		{"-32005 with backoff_seconds on infura", KindInfura, nil, providerAnswer{200, nil, `{"jsonrpc":"2.0","id":@ID@,"error":{"code":-32005,"message":"limit exceeded","data":{"backoff_seconds":2}}}`}, AnswerThrottled, 2 * time.Second},
		{"nonce too low", KindGeneric, nil, providerAnswer{200, nil, `{"jsonrpc":"2.0","id":@ID@,"error":{"code":-32000,"message":"nonce too low: next nonce 5, tx nonce 1"}}`}, AnswerClientError, 0},
		// A refusal of the call's method (the calls here are eth_getBalance) is not one of the key.
		{"403 naming the call's method", KindInfura, nil, providerAnswer{403, nil, `{"jsonrpc":"2.0","id":@ID@,"error":{"code":-32002,"message":"rejected due to project ID settings: eth_getBalance is not in the allowlist"}}`}, AnswerMethodRefused, 0},
		{"403 naming a longer method is the key's", KindGeneric, nil, providerAnswer{403, nil, `{"jsonrpc":"2.0","id":@ID@,"error":{"code":-32000,"message":"key may not call eth_getBalanceOf"}}`}, AnswerUnauthorized, 0},
		{"unsupported method in a 200", KindAlchemy, nil, providerAnswer{200, nil, `{"jsonrpc":"2.0","id":@ID@,"error":{"code":-32000,"message":"Unsupported method: eth_getBalance. See available methods at https://docs.alchemy.com"}}`}, AnswerMethodRefused, 0},
		{"not available on the plan, 403", KindAlchemy, nil, providerAnswer{403, nil, `{"jsonrpc":"2.0","id":@ID@,"error":{"code":-32000,"message":"this method is not available on the Free tier - upgrade"}}`}, AnswerMethodRefused, 0},
		{"500 without a body", KindGeneric, nil, providerAnswer{500, nil, `oops`}, AnswerBroken, 0},
		{"a result", KindGeneric, nil, providerAnswer{200, nil, `{"jsonrpc":"2.0","id":@ID@,"result":"0x1"}`}, AnswerOK, 0},
		{"a configured rule comes first", KindGeneric,
			[]ErrorRule{{Code: -32000, HasCode: true, MessageContains: "Busy", Class: AnswerThrottled, Backoff: 2 * time.Second}},
			providerAnswer{200, nil, `{"jsonrpc":"2.0","id":@ID@,"error":{"code":-32000,"message":"server BUSY, try later"}}`}, AnswerThrottled, 2 * time.Second},
		{"a configured rule on a status", KindGeneric, []ErrorRule{{HTTPStatus: 503, Class: AnswerThrottled}},
			providerAnswer{503, map[string]string{"Retry-After": "4"}, `overloaded`}, AnswerThrottled, 4 * time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cls, err := NewClassifier(c.kind, c.rules)
			if err != nil {
				t.Fatal(err)
			}
			prov := newFakeProvider(t, &c.answer)
			p, err := NewPool(PoolConfig{URL: prov.url, MaxConns: 2, MaxConnWaitTimeout: time.Second, DialTimeout: time.Second,
				MaxIdleConnDuration: time.Minute, MaxResponseBodySize: 1 << 20, Metrics: NewMetrics(NewRegistry(), "p"), Classifier: cls})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			_, n, _ := p.call(nil, request("eth_getBalance", `["0x01","latest"]`), []byte("1"), time.Now().Add(5*time.Second), nil)
			if n.class != c.want || n.backoff != c.backoff {
				t.Fatalf("HTTP: %v with back-off %v; want %v, %v", n.class, n.backoff, c.want, c.backoff)
			}
			if c.answer.status != 200 || c.answer.header != nil {
				return // a websocket has no status or headers to carry it
			}
			ws := newWSProvider(t, &c.answer, 0, "")
			cfg := testMuxConfig(ws.url)
			cfg.Classifier = cls
			m, err := NewMux(cfg)
			if err != nil {
				t.Fatal(err)
			}
			m.Start()
			defer m.Close()
			waitUp(t, m)
			_, n, _ = m.call(nil, request("eth_getBalance", `["0x01","latest"]`), []byte("1"), time.Now().Add(5*time.Second))
			if n.class != c.want || n.backoff != c.backoff {
				t.Fatalf("websocket: %v with back-off %v; want %v, %v", n.class, n.backoff, c.want, c.backoff)
			}
		})
	}
}

func waitUp(t *testing.T, m *Mux) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !m.Up() {
		if time.Now().After(deadline) {
			t.Fatal("websocket not up")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Close frames: the code and the reason say why a provider closed the socket.
func TestClassifyCloseFrames(t *testing.T) {
	cls, _ := NewClassifier(KindInfura, nil)
	for _, c := range []struct {
		code   int
		reason string
		want   AnswerClass
	}{
		{1008, "daily request count exceeded, request rate limited", AnswerExhausted},
		{1008, "project ID request rate exceeded", AnswerThrottled},
		{1008, "invalid project id", AnswerUnauthorized},
		{1013, "", AnswerThrottled},
		{4429, "", AnswerThrottled},
		{4402, "", AnswerExhausted},
		{4401, "", AnswerUnauthorized},
		{1008, "policy", AnswerBroken},
		{1001, "going away", AnswerBroken},
		{1006, "", AnswerBroken},
	} {
		if got := cls.classifyClose(c.code, []byte(c.reason)).class; got != c.want {
			t.Errorf("close %d %q: %v, want %v", c.code, c.reason, got, c.want)
		}
	}
}

func TestDetectKind(t *testing.T) {
	for url, want := range map[string]string{
		"https://mainnet.infura.io/v3/KEY":             KindInfura,
		"wss://mainnet.infura.io/ws/v3/KEY":            KindInfura,
		"https://eth-mainnet.g.alchemy.com/v2/KEY":     KindAlchemy,
		"https://x-y.quiknode.pro/KEY/":                KindQuickNode,
		"http://127.0.0.1:8545":                        KindGeneric,
		"https://notinfura.io.example.com/":            KindGeneric,
		"https://evilinfura.io/":                       KindGeneric,
		"https://user:pass@mainnet.infura.io:443/v3/k": KindInfura,
	} {
		if got := DetectKind(url); got != want {
			t.Errorf("%s: %s, want %s", url, got, want)
		}
	}
}

func TestErrorRuleValidate(t *testing.T) {
	for _, c := range []struct {
		rule ErrorRule
		want string
	}{
		{ErrorRule{Class: AnswerThrottled}, "empty rule"},
		{ErrorRule{HTTPStatus: 42, Class: AnswerThrottled}, "http_status"},
		{ErrorRule{MessageContains: strings.Repeat("x", 201)}, "message_contains"},
		{ErrorRule{HasCode: true, Code: -32000, Backoff: -time.Second}, "backoff"},
	} {
		err := c.rule.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error naming %q", c.rule, err, c.want)
		}
	}
	if _, err := ParseAnswerClass("slow"); err == nil || !strings.Contains(err.Error(), "throttled") {
		t.Errorf("unknown class: %v", err)
	}
	for i, name := range answerClassNames {
		if c, err := ParseAnswerClass(name); err != nil || int(c) != i || c.String() != name {
			t.Errorf("%s: %v %v", name, c, err)
		}
	}
}

// Messages are matched on bounded bytes, whatever their case; codes as numbers.
func FuzzBodyFacts(f *testing.F) {
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"error":{"code":-32005,"message":"project ID request rate exceeded","data":{"backoff_seconds":30.0}}}`))
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"error":{"code":429,"message":"x","data":{"rate":{"backoff_seconds":"7"}}}}`))
	f.Add([]byte(`{"error":{"message":"\u0048eader not found","code":-99999999999999999999}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var fa facts
		bodyFacts(&fa, body)
		if len(fa.msg) > maxMessage {
			t.Fatalf("message of %d bytes", len(fa.msg))
		}
		if fa.backoff < 0 || fa.backoff > maxStatedBackoff {
			t.Fatalf("back-off %v", fa.backoff)
		}
		_ = genericClassifier.decide(&fa)
	})
}

func TestQuotaReset(t *testing.T) {
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, c := range []struct {
		spec, now, want string
	}{
		{"", "2026-12-05T23:40:00Z", "2026-12-06T00:00:00Z"},
		{"00:00", "2026-12-06T00:00:00Z", "2026-12-07T00:00:00Z"},
		{"09:30", "2026-12-05T08:00:00Z", "2026-12-05T09:30:00Z"},
		{"09:30", "2026-12-05T12:00:00+02:00", "2026-12-06T09:30:00Z"},
		{"monthly:1", "2026-12-05T10:00:00Z", "2027-01-01T00:00:00Z"},
		{"monthly:31", "2027-02-03T10:00:00Z", "2027-02-28T00:00:00Z"},
		{"monthly:5", "2026-12-04T10:00:00Z", "2026-12-05T00:00:00Z"},
	} {
		q, err := ParseQuotaReset(c.spec)
		if err != nil {
			t.Fatal(err)
		}
		if got := q.Next(at(c.now)); !got.Equal(at(c.want)) {
			t.Errorf("%q at %s: %s, want %s", c.spec, c.now, got.Format(time.RFC3339), c.want)
		}
	}
	for _, bad := range []string{"24:00", "9am", "monthly:0", "monthly:32", "weekly:1"} {
		if _, err := ParseQuotaReset(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// An unstated throttle backs off exponentially (with jitter, capped), a clean answer
// starts it over; a stated one lasts as stated. Neither touches health.
func TestThrottleBackoff(t *testing.T) {
	r := testRouter(t, Spec{Name: "a", HTTPURL: "http://127.0.0.1:1"})
	u := byName(r, "a")
	g := &u.gate
	for i := range 10 {
		g.throttledUntil.Store(0)
		start := time.Now()
		r.noteAnswer(u, AnswerThrottled, 0)
		d := time.Duration(g.throttledUntil.Load() - start.UnixNano())
		ceiling := min(throttleMin<<i, throttleMax)
		if d < ceiling/2-time.Millisecond || d > ceiling+time.Second {
			t.Fatalf("throttle %d: back-off %v, want within [%v, %v]", i, d, ceiling/2, ceiling)
		}
	}
	r.noteAnswer(u, AnswerOK, 0)
	if g.streak.Load() != 0 {
		t.Fatal("a clean answer did not start the back-off over")
	}
	g.throttledUntil.Store(0)
	r.noteAnswer(u, AnswerThrottled, 10*time.Second)
	if d := g.closedFor(time.Now().UnixNano()); d < 9*time.Second || d > 10*time.Second {
		t.Fatalf("stated 10 s: closed for %v", d)
	}
	if g.open() {
		t.Fatal("a throttled gate is open")
	}
	// A stated rate back-off is honoured up to a minute: Retry-After: 999999999 (parsed
	// up to maxStatedBackoff) does not take the upstream out for an hour.
	r.noteAnswer(u, AnswerThrottled, maxStatedBackoff)
	if d := g.closedFor(time.Now().UnixNano()); d > throttleStatedMax || d < throttleStatedMax-time.Second {
		t.Fatalf("stated %v: closed for %v, want %v", maxStatedBackoff, d, throttleStatedMax)
	}
	g.throttledUntil.Store(0)
	r.noteAnswer(u, AnswerThrottled, 10*time.Second)
	if u.health.State() != StateHealthy {
		t.Fatal("a throttle changed health")
	}
	st := r.Status().Upstreams[0]
	if st.ThrottledFor < 9 || st.Answers["throttled"] != 13 || st.Answers["answer"] != 1 {
		t.Fatalf("/status: throttled_for_s %v, answers %v", st.ThrottledFor, st.Answers)
	}
	g.throttledUntil.Store(time.Now().Add(-time.Millisecond).UnixNano())
	if !g.open() || g.throttledUntil.Load() != 0 {
		t.Fatal("a gate past its back-off is still closed")
	}
}

// The answers of calls that were in flight when an unstated throttle closed the gate
// say nothing new: the back-off doubles once each time the gate opens, not once per
// such answer. Before, 50 clients' calls throttled in one burst took the streak to its
// cap at once, and a provider's 429s for 0.3 s shut a lone upstream out for 10 s and
// more instead of 250 ms.
func TestThrottleBackoffDoublesOncePerOpening(t *testing.T) {
	r := testRouter(t, Spec{Name: "a", HTTPURL: "http://127.0.0.1:1"})
	u := byName(r, "a")
	g := &u.gate
	for round := range 4 {
		g.throttledUntil.Store(0) // the gate opened: the next throttle is news
		start := time.Now()
		for range 50 { // one burst: a call that opened it and 49 sent before it closed
			r.noteAnswer(u, AnswerThrottled, 0)
		}
		d := time.Duration(g.throttledUntil.Load() - start.UnixNano())
		if ceiling := throttleMin << round; d > ceiling+time.Second/10 || d < ceiling/2-time.Millisecond {
			t.Fatalf("round %d: back-off %v after a burst of 50 throttles, want within [%v, %v]", round, d, ceiling/2, ceiling)
		}
	}
	if n := g.streak.Load(); n != 4 {
		t.Fatalf("streak %d after 4 openings, want 4", n)
	}
	// A stated back-off still extends a closed gate.
	r.noteAnswer(u, AnswerThrottled, 10*time.Second)
	if d := g.closedFor(time.Now().UnixNano()); d < 9*time.Second {
		t.Fatalf("stated 10 s on a closed gate: closed for %v", d)
	}
}

// Exhausted lasts until the period resets, shown in /status and the metrics.
func TestExhaustedUntilReset(t *testing.T) {
	r := testRouter(t, Spec{Name: "a", HTTPURL: "http://127.0.0.1:1", QuotaReset: QuotaReset{Minute: 9*60 + 30}})
	u := byName(r, "a")
	now := time.Now()
	r.noteAnswer(u, AnswerExhausted, 0)
	want := QuotaReset{Minute: 9*60 + 30}.Next(now)
	st := r.Status().Upstreams[0]
	if st.ExhaustedUntil != want.Format(time.RFC3339) {
		t.Fatalf("exhausted_until %q, want %s", st.ExhaustedUntil, want.Format(time.RFC3339))
	}
	var b strings.Builder
	r.cfg.Registry.WritePrometheus(&b)
	out := b.String()
	for _, s := range []string{`gateway_upstream_exhausted{upstream="a"} 1`, `gateway_upstream_throttled{upstream="a"} 0`,
		`gateway_upstream_answers_total{upstream="a",class="exhausted"} 1`, `gateway_upstream_exhausted_reset_seconds{upstream="a"} `} {
		if !strings.Contains(out, s) {
			t.Errorf("metrics lack %s", s)
		}
	}
	if strings.Contains(out, `gateway_upstream_exhausted_reset_seconds{upstream="a"} 0`+"\n") {
		t.Error("reset seconds 0 while exhausted")
	}
}

// A back-off a provider states (Retry-After, backoff_seconds) is read as seconds or an
// HTTP date and bounded by maxStatedBackoff however large; what is not a positive time
// (zero, negative, garbage, a date past) states none.
func TestStatedBackoffBounded(t *testing.T) {
	const httpDate = "Mon, 02 Jan 2006 15:04:05 GMT"
	now := time.Now()
	cases := []struct {
		value string
		want  time.Duration // 0: none stated
	}{
		{"30", 30 * time.Second},
		{"2.5", 2500 * time.Millisecond},
		{`"30"`, 30 * time.Second},
		{"3600", maxStatedBackoff},
		{"999999999", maxStatedBackoff},
		{"99999999999", maxStatedBackoff}, // past 292 years: overflowed time.Duration
		{"1e30", maxStatedBackoff},
		{"1e400", maxStatedBackoff},
		{"0", 0},
		{"-5", 0},
		{"-1e30", 0},
		{"1e-400", 0},
		{"NaN", 0},
		{"garbage", 0},
		{now.Add(-90 * time.Second).UTC().Format(httpDate), 0},
		{now.Add(48 * time.Hour).UTC().Format(httpDate), maxStatedBackoff},
	}
	for _, c := range cases {
		d, ok := parseRetryAfter([]byte(c.value))
		if ok != (c.want > 0) || d != c.want {
			t.Errorf("Retry-After %q: %v, %v; want %v", c.value, d, ok, c.want)
		}
	}
	// An HTTP date within the bound: the time until it, to the second.
	if d, ok := parseRetryAfter([]byte(now.Add(90 * time.Second).UTC().Format(httpDate))); !ok || d < 88*time.Second || d > 90*time.Second {
		t.Errorf("Retry-After 90 s from now as a date: %v, %v", d, ok)
	}
}
