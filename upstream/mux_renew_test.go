package upstream

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
)

// A renewal subscribes every subscription again, on the sockets that stay open: the
// old upstream ids are unsubscribed, the gateway ids stay, the next notification
// reaches the same subscribers, and a call in flight meanwhile is not failed (a
// socket closed to the same end would have answered it "upstream unavailable").
func TestMuxRenewKeepsSocketsCallsAndIds(t *testing.T) {
	f := newFakeUpstream(t, false)
	m := startMux(t, f, nil) // two sockets: the subscriptions may be on either
	heads := make(chan string, 16)
	if _, err := m.Subscribe([]byte(`["newHeads"]`), func(r []byte) { heads <- string(r) }); err != nil {
		t.Fatal(err)
	}
	logs := newChanSink(4)
	m.Join([]byte(`["logs",{}]`), []byte("7"), logs, time.Now().Add(10*time.Second))
	joined := string(logs.next(t))
	gw := joined[strings.Index(joined, `"result":`)+len(`"result":`) : len(joined)-1]

	inFlight := make(chan error, 1)
	go func() {
		var r proto.Request
		r.Set([]byte("silent"), []byte(`[]`))
		_, err := m.Call(nil, &r, []byte("1"), time.Now().Add(time.Minute))
		inFlight <- err
	}()
	waitFor(t, "the call in flight", func() bool { return m.metrics.pending.Load() == 1 })

	resubs := m.metrics.resubscribes.Get()
	renewed, done := m.renew([]byte(`["newHeads"]`))
	slices.Sort(renewed)
	if want := []string{`["logs",{}]`, `["newHeads"]`}; !slices.Equal(renewed, want) {
		t.Fatalf("renewed %q, want %q", renewed, want)
	}
	within(t, done, "the renewal answered")
	if got := f.unsubscribed(); !slices.Contains(got, "0xfeed1") || !slices.Contains(got, "0xfeed2") {
		t.Fatalf("unsubscribed %v, want the old ids 0xfeed1 and 0xfeed2", got)
	}
	if n := m.metrics.resubscribes.Get() - resubs; n != 2 {
		t.Fatalf("%d resubscriptions counted, want 2", n)
	}
	if !m.live([]byte(`["newHeads"]`)) {
		t.Fatal("newHeads not live after the renewal")
	}
	// The fake numbers subscriptions in the order it is asked: which of 3 and 4 is
	// which depends on the sockets; each notification reaches its own subscribers.
	for _, sub := range []string{"0xfeed3", "0xfeed4"} {
		if !f.notify(sub, `{"number":"0x9","blockHash":"0x9","logIndex":"0x0"}`) {
			t.Fatalf("%s not subscribed", sub)
		}
	}
	if got := within(t, heads, "a head on the renewed subscription"); !strings.Contains(got, `"0x9"`) {
		t.Fatalf("delivered %s", got)
	}
	if got := string(logs.next(t)); !strings.Contains(got, `"subscription":`+gw) {
		t.Fatalf("the logs subscriber got %s, want its gateway id %s kept", got, gw)
	}
	select {
	case err := <-inFlight:
		t.Fatalf("the call in flight ended with the renewal: %v", err)
	default:
	}
	if n := m.metrics.reconnects.Get(); n != 0 || m.metrics.wsConns.Load() != 2 {
		t.Fatalf("%d reconnects, %d sockets: the sockets must stay open", n, m.metrics.wsConns.Load())
	}
}

// Nothing is renewed while the subscription the router watches is not live: a
// reconnect or a resubscribe already under way renews it.
func TestMuxRenewNothingWhenNotLive(t *testing.T) {
	f := newFakeUpstream(t, false)
	m := startMux(t, f, nil)
	if renewed, done := m.renew([]byte(`["newHeads"]`)); renewed != nil || done != nil {
		t.Fatalf("renewed %q without a newHeads subscription", renewed)
	}
}
