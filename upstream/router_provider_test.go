package upstream

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
)

// Providers that throttle, cap or refuse: the client never sees it while another
// upstream can answer, and the refusing upstream is kept out (not banned: it is not
// broken) instead of being asked again on every call.
func TestProviderRefusalsRetriedElsewhere(t *testing.T) {
	cases := []struct {
		name   string
		answer providerAnswer
		// once: the refusing upstream is asked exactly once (a stated back-off or a
		// quota period keeps it out for the rest of the test); else at least once.
		once bool
		// banned: whether it may end banned (unauthorized counts against health).
		mayBan bool
	}{
		{"alchemy: 200 with an in-body 429", alchemyThrottle, false, false},
		{"infura: 429, -32005 with Retry-After", infuraThrottle, true, false},
		{"infura: daily count exceeded", infuraDaily, true, false},
		{"402: daily cap", paymentRequired, true, false},
		{"quicknode: 429, -32007", quicknodeLimit, false, false},
		{"401: key refused", unauthorized, false, true},
		{"missing trie node", missingTrieNode, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bad := newFakeProvider(t, &c.answer)
			good := newFakeProvider(t, nil)
			// The refusing upstream is picked first (its weight makes its score the best).
			r := testRouter(t, Spec{Name: "bad", HTTPURL: bad.url, Weight: 1000}, Spec{Name: "good", HTTPURL: good.url})
			for i := range 20 {
				ans, err := r.call(nil, request("eth_getBalance", `["0x01","latest"]`), []byte("7"), time.Now().Add(5*time.Second), TransportHTTP)
				if err != nil || string(ans) != `{"jsonrpc":"2.0","id":7,"result":"0x1"}` {
					t.Fatalf("read %d: %s %v; want the other upstream's answer", i, ans, err)
				}
			}
			if n := bad.calls.Load(); n == 0 || (c.once && n != 1) {
				t.Fatalf("the refusing upstream was asked %d times, want %s", n, map[bool]string{true: "1", false: "at least 1"}[c.once])
			}
			if st := byName(r, "bad").health.State(); st == StateBanned && !c.mayBan {
				t.Fatalf("the refusing upstream is banned: a throttle, a cap or a missing block is not a fault")
			}
		})
	}
}

// A reverted call is the node's answer, even when its reason reads like a throttle:
// returned as is, never sent to another upstream.
func TestRevertIsTheAnswer(t *testing.T) {
	bad := newFakeProvider(t, &reverted)
	good := newFakeProvider(t, &reverted)
	r := testRouter(t, Spec{Name: "node", HTTPURL: bad.url}, Spec{Name: "other", HTTPURL: good.url})
	for i := range 10 {
		ans, err := r.call(nil, request("eth_call", `[{"to":"0x01"},"latest"]`), []byte("7"), time.Now().Add(5*time.Second), TransportHTTP)
		if err != nil || !strings.Contains(string(ans), "execution reverted: rate limit") {
			t.Fatalf("call %d: %s %v; want the revert as is", i, ans, err)
		}
	}
	if n := bad.calls.Load() + good.calls.Load(); n != 10 {
		t.Fatalf("10 reverting calls reached upstreams %d times, want 10", n)
	}
}

// When every upstream throttles, the client gets the gateway's own refusal: -32005,
// 429, Retry-After the shortest back-off, no provider text.
func TestEveryUpstreamThrottledGetsTheGatewaysRefusal(t *testing.T) {
	slow := infuraThrottle // Retry-After 30
	short := providerAnswer{429, nil, `{"jsonrpc":"2.0","id":@ID@,"error":{"code":-32005,"message":"project ID request rate exceeded","data":{"rate":{"allowed_rps":50,"backoff_seconds":7,"current_rps":80.8}}}}`}
	a, b := newFakeProvider(t, &slow), newFakeProvider(t, &short)
	r := testRouter(t, Spec{Name: "a", HTTPURL: a.url}, Spec{Name: "b", HTTPURL: b.url})
	for i := range 5 {
		_, err := r.call(nil, request("eth_getBalance", `["0x01","latest"]`), []byte("7"), time.Now().Add(5*time.Second), TransportHTTP)
		var perr *proto.Error
		if !errors.As(err, &perr) || perr.Code != -32005 || perr.Status != 429 || perr.RetryAfter < 1 || perr.RetryAfter > 7 ||
			strings.Contains(perr.Message, "project ID") {
			t.Fatalf("call %d: %#v; want the gateway's -32005, 429, Retry-After 1-7 s", i, err)
		}
	}
	if na, nb := a.calls.Load(), b.calls.Load(); na != 1 || nb != 1 {
		t.Fatalf("the throttling upstreams were asked %d and %d times, want once each", na, nb)
	}
}

// withMux gives testRouter's upstreams a websocket configuration.
func withMux(c *RouterConfig) { c.Mux = testMuxConfig("") }

// startMuxes connects the router's websockets (testRouter starts nothing) and waits
// until they are up.
func startMuxes(t *testing.T, r *Router) {
	t.Helper()
	for _, u := range r.Upstreams() {
		if u.mux == nil {
			continue
		}
		u.mux.Start()
		t.Cleanup(u.mux.Close)
		deadline := time.Now().Add(10 * time.Second)
		for !u.mux.Up() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: websocket not up", u.Name())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// Websocket error frames are classified like HTTP answers: an in-body 429 on one
// upstream's socket sends the call to the other's at once.
func TestWebsocketErrorFramesRetriedElsewhere(t *testing.T) {
	for _, c := range []struct {
		name   string
		answer providerAnswer
	}{
		{"alchemy in-body 429", alchemyThrottle},
		{"infura -32005 rate", infuraThrottle},
		{"missing trie node", missingTrieNode},
	} {
		t.Run(c.name, func(t *testing.T) {
			bad := newWSProvider(t, &c.answer, 0, "")
			good := newWSProvider(t, nil, 0, "")
			http := newFakeProvider(t, nil)
			r := testRouterWith(t, withMux, Spec{Name: "bad", HTTPURL: http.url, WSURL: bad.url, Weight: 1000},
				Spec{Name: "good", HTTPURL: http.url, WSURL: good.url})
			startMuxes(t, r)
			for i := range 10 {
				ans, err := r.call(nil, request("eth_getBalance", `["0x01","latest"]`), []byte("7"), time.Now().Add(5*time.Second), TransportWS)
				if err != nil || string(ans) != `{"jsonrpc":"2.0","id":7,"result":"0x1"}` {
					t.Fatalf("read %d: %s %v; want the other upstream's answer", i, ans, err)
				}
			}
			if bad.calls.Load() == 0 {
				t.Fatal("the refusing upstream was never asked")
			}
		})
	}
}

// A provider that closes the socket for its quota (Infura severs websockets once the
// daily limit is reached) is out on both transports until the quota resets.
func TestWebsocketClosedForTheQuotaTakesTheUpstreamOut(t *testing.T) {
	for _, c := range []struct {
		name   string
		code   int
		reason string
	}{
		{"1008 with the daily text", 1008, "daily request count exceeded, request rate limited"},
		{"4402", 4402, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			ws := newWSProvider(t, nil, c.code, c.reason)
			capped := newFakeProvider(t, nil)
			good := newFakeProvider(t, nil)
			r := testRouterWith(t, withMux, Spec{Name: "capped", HTTPURL: capped.url, WSURL: ws.url, Weight: 1000},
				Spec{Name: "good", HTTPURL: good.url})
			startMuxes(t, r)
			// The socket is closed at this call: it fails (nowhere else to go over ws).
			_, _ = r.call(nil, request("eth_getBalance", `["0x01","latest"]`), []byte("7"), time.Now().Add(5*time.Second), TransportWS)
			for i := range 10 {
				ans, err := r.call(nil, request("eth_getBalance", `["0x01","latest"]`), []byte("7"), time.Now().Add(5*time.Second), TransportHTTP)
				if err != nil || string(ans) != `{"jsonrpc":"2.0","id":7,"result":"0x1"}` {
					t.Fatalf("read %d: %s %v", i, ans, err)
				}
			}
			if n := capped.calls.Load(); n != 0 {
				t.Fatalf("the capped upstream got %d calls over HTTP after closing its socket for the quota, want 0", n)
			}
		})
	}
}

// Two upstreams, one throttling (in-body 429, no stated back-off) and picked first,
// under concurrent reads: no client error, and the throttling one, backing off, sees a
// small share of the calls instead of every one.
func TestOneThrottlingUpstreamNoClientErrors(t *testing.T) {
	bad := newFakeProvider(t, &alchemyThrottle)
	good := newFakeProvider(t, nil)
	r := testRouter(t, Spec{Name: "bad", HTTPURL: bad.url, Weight: 1000}, Spec{Name: "good", HTTPURL: good.url})
	const workers, each = 8, 100
	errs := make(chan error, workers*each)
	done := make(chan struct{})
	for range workers {
		go func() {
			defer func() { done <- struct{}{} }()
			for range each {
				ans, err := r.call(nil, request("eth_getBalance", `["0x01","latest"]`), []byte("7"), time.Now().Add(10*time.Second), TransportHTTP)
				if err == nil && string(ans) != `{"jsonrpc":"2.0","id":7,"result":"0x1"}` {
					err = errors.New(string(ans))
				}
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	for range workers {
		<-done
	}
	close(errs)
	for err := range errs {
		t.Errorf("client error: %v", err)
	}
	if n := bad.calls.Load(); n == 0 || n >= workers*each/4 {
		t.Errorf("the throttling upstream got %d of %d calls: want some, and far fewer than its weight would give it", n, workers*each)
	}
}

// A call on one named upstream (a broadcast's target) that meets the provider's
// throttle or quota answers the gateway's refusal, with its Retry-After, as a call the
// router picks for: before, the attempt that met it returned the bare "upstream
// throttled the call" with no Retry-After, and only the next call, finding the gate
// closed, got the refusal.
func TestCallOnRefusedGetsTheGatewaysRefusal(t *testing.T) {
	cases := []struct {
		name     string
		answer   providerAnswer
		minAfter int // the least Retry-After expected, seconds
	}{
		{"throttled, Retry-After 30", infuraThrottle, 29},
		{"throttled in the body", alchemyThrottle, 1},
		{"daily quota", infuraDaily, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := newFakeProvider(t, &c.answer)
			r := testRouter(t, Spec{Name: "a", HTTPURL: p.url})
			for i := range 2 { // the attempt that meets the refusal, then the closed gate
				_, err := r.CallOn("a", nil, request("eth_sendRawTransaction", `["0x02f8"]`), []byte("7"), time.Now().Add(5*time.Second))
				var perr *proto.Error
				if !errors.As(err, &perr) || perr.Code != -32005 || perr.Status != 429 || perr.RetryAfter < c.minAfter ||
					!strings.HasPrefix(perr.Message, "upstream rate limit reached") {
					t.Fatalf("call %d: %#v; want the gateway's -32005, 429, Retry-After at least %d s", i, err, c.minAfter)
				}
			}
			if n := p.calls.Load(); n != 1 {
				t.Fatalf("the refusing upstream was asked %d times, want once", n)
			}
		})
	}
}

// An upstream out of its quota is asked for its head, or probed, once a minute, not on
// every head poll and review: its answer says when it takes calls again, and more is
// refused calls (the flake hunt: a capped provider polled every second by each replica
// after its cap was spent, 2.5 % of all the providers' calls refused in 30 s).
func TestExhaustedUpstreamPolledOnceAMinute(t *testing.T) {
	// Its quota spent: it refuses every call (a clean answer would open the gate again).
	p := newFakeProvider(t, &providerAnswer{200, nil, `{"jsonrpc":"2.0","id":@ID@,"error":{"code":-32005,"message":"daily request count exceeded, request rate limited"}}`})
	r := testRouter(t, Spec{Name: "capped", HTTPURL: p.url, Kind: KindInfura})
	u := byName(r, "capped")
	u.gate.exhaust(time.Hour, time.Now())
	for range 5 {
		r.pollHead(u)
		r.probe(u, false)
	}
	if n := p.calls.Load(); n != 1 {
		t.Fatalf("%d calls to an exhausted upstream in 10 polls and probes, want 1", n)
	}
	u.gate.polledAt.Add(-int64(exhaustedPoll)) // a minute later
	r.pollHead(u)
	if n := p.calls.Load(); n != 2 {
		t.Fatalf("%d calls after a minute, want 2", n)
	}
	p.answer.Store(nil)            // its period reset
	u.gate.exhaustedUntil.Store(0) // and the gate knows
	for range 3 {
		r.pollHead(u)
	}
	if n := p.calls.Load(); n != 5 {
		t.Fatalf("%d calls once open again, want 5", n)
	}
}

// README (the exhausted class): "its head polls and probes go once a minute meanwhile
// (one answer says when it takes calls again)"; gate.go's exhaustedPoll: "one answer a
// minute says when it takes calls again (a provider that resets early, a reset
// misconfigured)". A clean answer to the probe of an upstream out of its quota opens
// its gate again, rather than leaving it closed until the configured reset.
func TestExhaustedUpstreamOpenAgainOnACleanAnswer(t *testing.T) {
	p := newFakeProvider(t, nil) // answers every call cleanly: its quota is back
	r := testRouter(t, Spec{Name: "capped", HTTPURL: p.url})
	u := byName(r, "capped")
	u.gate.exhaust(time.Hour, time.Now())
	r.probe(u, false)
	if n := p.calls.Load(); n != 1 {
		t.Fatalf("%d calls, want the probe", n)
	}
	if !u.gate.open() {
		t.Fatal("the gate of an upstream that answered its probe cleanly is still closed for the rest of its quota period")
	}
}
