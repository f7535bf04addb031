package upstream

import (
	"sync/atomic"
	"testing"
	"time"
)

// A send-only upstream (a transaction relay) takes writes, also through CallOn, and
// never a read: not as a last resort, not when every other upstream is banned. Its
// head, unknown, does not make the others look behind, and it carries no subscription.
func TestSendOnlyUpstreamTakesOnlySends(t *testing.T) {
	var onRelay, onNode atomic.Int64
	relay := jsonRPCServer(t, func() { onRelay.Add(1) })
	node := jsonRPCServer(t, func() { onNode.Add(1) })
	r := testRouter(t, Spec{Name: "node", HTTPURL: node}, Spec{Name: "relay", HTTPURL: relay, SendOnly: true})
	r.observeHead(byName(r, "node"), header(100))
	deadline := time.Now().Add(5 * time.Second)

	cases := []struct {
		name, method string
		ban          bool // the node banned first: the relay would be a last resort
		viaCallOn    bool
		relayGets    bool
	}{
		{"read", "eth_blockNumber", false, false, false},
		{"read, node banned", "eth_getBalance", true, false, false},
		{"read through CallOn", "eth_chainId", false, true, false},
		{"send through CallOn", "eth_sendRawTransaction", false, true, true},
		{"bundle through CallOn", "eth_sendBundle", false, true, true},
	}
	for _, c := range cases {
		if c.ban {
			h := byName(r, "node").health
			h.mu.Lock()
			h.banLocked(time.Now(), "test")
			h.mu.Unlock()
		}
		before := onRelay.Load()
		var err error
		if c.viaCallOn {
			_, err = r.CallOn("relay", nil, request(c.method, `["0x02"]`), []byte("1"), deadline)
		} else {
			_, err = r.call(nil, request(c.method, `[]`), []byte("1"), deadline, TransportHTTP)
		}
		if got := onRelay.Load() - before; (got == 1) != c.relayGets || got > 1 {
			t.Errorf("%s: the relay got %d calls (err %v), want it to get one: %v", c.name, got, err, c.relayGets)
		}
	}
	if byName(r, "relay").health.Head() != 0 {
		t.Errorf("the relay has a head")
	}
	if canCarry(byName(r, "relay")) {
		t.Errorf("the relay may carry subscriptions")
	}
	if _, err := r.CallOn("nobody", nil, request("eth_sendRawTransaction", `["0x02"]`), []byte("1"), deadline); err == nil {
		t.Errorf("CallOn an unknown upstream: no error")
	}
}
