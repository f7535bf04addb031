package upstream

import (
	"strings"
	"testing"
	"time"
)

// An eth_subscribe a provider refuses for its rate (Infura's -32005 with a stated
// back-off) goes to the next upstream, and the throttle is noted; when every upstream
// refuses it so, the client gets the gateway's refusal (-32005, retry after N s), never
// the provider's text. Before, any error answer to eth_subscribe was the params'
// fault: the client got "project ID request rate exceeded" while the other upstream
// could carry it (the websocket provider audit: 3 of 3 logs subscribers refused, the
// accepting upstream never asked).
func TestSubscribeRefusedForTheRateGoesElsewhere(t *testing.T) {
	throttling := newWSProvider(t, &infuraThrottle, 0, "")
	accepting := newWSProvider(t, nil, 0, "")
	r := testRouterWith(t, withMux,
		Spec{Name: "throttling", HTTPURL: newFakeProvider(t, nil).url, WSURL: throttling.url},
		Spec{Name: "accepting", HTTPURL: newFakeProvider(t, nil).url, WSURL: accepting.url})
	startMuxes(t, r)
	sink := newChanSink(4)
	r.subs.Join([]byte(`["logs",{}]`), []byte("7"), sink, time.Now().Add(5*time.Second))
	if got := string(sink.next(t)); !strings.Contains(got, `"id":7,"result":"0x`) {
		t.Fatalf("eth_subscribe answered %s, want a subscription carried by the accepting upstream", got)
	}
	if throttling.calls.Load() == 0 || accepting.calls.Load() == 0 {
		t.Fatalf("asked: throttling %d, accepting %d; want both", throttling.calls.Load(), accepting.calls.Load())
	}
	if st := byName(r, "throttling").gate.status(time.Now()); st.ThrottledFor == 0 {
		t.Fatalf("the throttle was not noted: %+v", st)
	}
}

func TestSubscribeRefusedEverywhereGetsTheGatewaysRefusal(t *testing.T) {
	a := newWSProvider(t, &infuraThrottle, 0, "")
	b := newWSProvider(t, &infuraThrottle, 0, "")
	r := testRouterWith(t, withMux,
		Spec{Name: "a", HTTPURL: newFakeProvider(t, nil).url, WSURL: a.url},
		Spec{Name: "b", HTTPURL: newFakeProvider(t, nil).url, WSURL: b.url})
	startMuxes(t, r)
	sink := newChanSink(4)
	r.subs.Join([]byte(`["logs",{}]`), []byte("7"), sink, time.Now().Add(5*time.Second))
	got := string(sink.next(t))
	if !strings.Contains(got, `"code":-32005`) || !strings.Contains(got, "upstream rate limit reached") ||
		strings.Contains(got, "project ID") {
		t.Fatalf("eth_subscribe answered %s, want the gateway's -32005 refusal", got)
	}
}

// An eth_subscribe sent to an upstream that takes it and never answers (a blackholed
// route, not yet found so) is given up a reserve (Health.SlowMin) before the client's
// deadline, and the next upstream carries it. Before, the attempt had the Mux's whole
// request timeout: the client got "upstream timed out" after 10 s while a healthy
// upstream was never asked (the audit: 10 subscribes in a row, each 10.00 s).
func TestSubscribeNotAnsweredGoesElsewhereInTime(t *testing.T) {
	silent := newWSProvider(t, nil, 0, "")
	accepting := newWSProvider(t, nil, 0, "")
	r := testRouterWith(t, withMux,
		Spec{Name: "silent", HTTPURL: newFakeProvider(t, nil).url, WSURL: silent.url},
		Spec{Name: "accepting", HTTPURL: newFakeProvider(t, nil).url, WSURL: accepting.url})
	startMuxes(t, r)
	silent.silent.Store(true)
	sink := newChanSink(4)
	deadline := time.Now().Add(3 * time.Second)
	r.subs.Join([]byte(`["logs",{}]`), []byte("7"), sink, deadline)
	got := string(sink.next(t))
	if !strings.Contains(got, `"id":7,"result":"0x`) || time.Now().After(deadline) {
		t.Fatalf("eth_subscribe answered %s at %v past the deadline, want a subscription by the deadline", got, time.Since(deadline))
	}
	if silent.calls.Load() == 0 || accepting.calls.Load() == 0 {
		t.Fatalf("asked: silent %d, accepting %d; want both (the silent one first)", silent.calls.Load(), accepting.calls.Load())
	}
}
