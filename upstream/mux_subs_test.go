package upstream

import (
	"strings"
	"testing"
	"time"
)

// The in-process API survives a reconnect: deliveries resume after the upstream comes
// back, the resubscription and its gap are counted.
func TestMuxSubscribeSurvivesReconnect(t *testing.T) {
	f := newFakeUpstream(t, false)
	m := startMux(t, f, func(c *MuxConfig) { c.Conns = 1 })
	got := make(chan string, 16)
	unsub, err := m.Subscribe([]byte(`["newHeads"]`), func(r []byte) { got <- string(r) })
	if err != nil {
		t.Fatal(err)
	}
	if !f.notify("0xfeed1", `{"number":"0x1"}`) {
		t.Fatal("no upstream subscription")
	}
	if r := recvString(t, got); r != `{"number":"0x1"}` {
		t.Fatalf("delivered %s", r)
	}
	dropAndResubscribed(t, m, f, got)
	unsub()
	waitFor(t, "upstream unsubscribe", func() bool { return strings.Join(f.unsubscribed(), ",") == "0xfeed2" })
	if n := m.metrics.upstreamSubs.Load(); n != 0 {
		t.Fatalf("upstream subscriptions gauge %d after unsubscribe", n)
	}
}

// A resubscribe the upstream refuses (a provider at its subscription cap after a
// reconnect) is tried again after a backoff on the socket that is up, not only on the
// next reconnect: before, the subscription stayed silent, without an error, for as
// long as the new socket lived (the provider audit: 22 subscribers got no head for
// the 35 s the run lasted, the gateway's own head with them).
func TestMuxResubscribesAfterARefusal(t *testing.T) {
	f := newFakeUpstream(t, false)
	m := startMux(t, f, func(c *MuxConfig) { c.Conns = 1 })
	got := make(chan string, 16)
	if _, err := m.Subscribe([]byte(`["newHeads"]`), func(r []byte) { got <- string(r) }); err != nil {
		t.Fatal(err)
	}
	f.subRefusals.Store(2)
	dropAndResubscribed(t, m, f, got)
}

// dropAndResubscribed drops f's sockets, waits for m to subscribe again (as 0xfeed2,
// the fake's second id) and checks the next head reaches got.
func dropAndResubscribed(t *testing.T, m *Mux, f *fakeUpstream, got chan string) {
	t.Helper()
	resubs := m.metrics.resubscribes.Get()
	f.dropAll()
	waitFor(t, "resubscribed upstream", func() bool { return m.metrics.resubscribes.Get() > resubs })
	if !f.notify("0xfeed2", `{"number":"0x2"}`) {
		t.Fatal("not resubscribed as 0xfeed2")
	}
	if r := recvString(t, got); r != `{"number":"0x2"}` {
		t.Fatalf("after the socket came back delivered %s", r)
	}
}

func TestMuxSubscribeRefused(t *testing.T) {
	f := newFakeUpstream(t, false)
	f.refused.Store(true)
	cfg := testMuxConfig(f.url)
	cfg.Conns = 1
	m, err := NewMux(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m.Start()
	defer m.Close()
	if _, err := m.Subscribe([]byte(`["newHeads"]`), func([]byte) {}); err == nil {
		t.Fatal("subscribed without an upstream")
	}
}

// Many sinks subscribing to the same params share one upstream subscription.
func TestMuxSharedSubscriptionFanOut(t *testing.T) {
	f := newFakeUpstream(t, false)
	m := startMux(t, f, nil)
	const n = 50
	sinks := make([]*chanSink, n)
	var gw string
	for i := range sinks {
		sinks[i] = newChanSink(4)
		m.Join([]byte(`["newHeads"]`), []byte(`1`), sinks[i], time.Time{})
		ans := string(sinks[i].next(t))
		if i == 0 {
			gw = ans
		} else if ans != gw {
			t.Fatalf("sink %d got %s, first got %s", i, ans, gw)
		}
	}
	if f.subSeq.Load() != 1 {
		t.Fatalf("%d upstream subscriptions for one params", f.subSeq.Load())
	}
	f.notify("0xfeed1", `"h"`)
	first := sinks[0].next(t)
	for _, s := range sinks[1:] {
		if b := s.next(t); &b[0] != &first[0] {
			t.Fatal("each sink got its own copy of the notification; want one shared frame")
		}
	}
	for _, s := range sinks {
		m.LeaveAll(s)
	}
	waitFor(t, "upstream unsubscribe", func() bool { return len(f.unsubscribed()) == 1 })
}

func recvString(t *testing.T, ch chan string) string {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(20 * time.Second):
		t.Fatal("nothing delivered within 20s")
		return ""
	}
}

// When one of two sockets is lost, its subscriptions move to the other at once.
func TestMuxSubscriptionMovesToLiveSocket(t *testing.T) {
	f := newFakeUpstream(t, false)
	m := startMux(t, f, func(c *MuxConfig) { c.Conns = 2; c.BackoffMin = time.Hour; c.BackoffMax = time.Hour })
	got := make(chan string, 16)
	if _, err := m.Subscribe([]byte(`["newHeads"]`), func(r []byte) { got <- string(r) }); err != nil {
		t.Fatal(err)
	}
	// Close only the socket carrying the subscription.
	resubs := m.metrics.resubscribes.Get()
	f.mu.Lock()
	carrier := f.subs["0xfeed1"]
	f.mu.Unlock()
	_ = carrier.NetConn().Close()
	waitFor(t, "resubscribed on the other socket", func() bool { return m.metrics.resubscribes.Get() > resubs })
	f.notify("0xfeed2", `"moved"`)
	if r := recvString(t, got); r != `"moved"` {
		t.Fatalf("delivered %s", r)
	}
}
