package upstream

import (
	"strings"
	"testing"
	"time"
)

// serverFrame is payload as one unmasked text frame, as a server writes it.
func serverFrame(payload string) []byte {
	return append([]byte{0x81, byte(len(payload))}, payload...)
}

// An answer naming a decimal id the gateway never issued is dropped and counted in
// gateway_upstream_ws_invalid_messages_total, as its help says; before, only ids that
// were not decimal were counted, one such answer passed as a late one. The call that
// follows it on the socket gets its own answer.
func TestMuxAnswerWithAnIDNeverSentCounted(t *testing.T) {
	f := newFakeUpstream(t, false)
	raw := func(id string) []byte {
		return append(serverFrame(`{"jsonrpc":"2.0","id":987654321,"result":"0xforeign"}`),
			serverFrame(`{"jsonrpc":"2.0","id":`+id+`,"result":"0x1"}`)...)
	}
	f.raw.Store(&raw)
	m := startMux(t, f, func(c *MuxConfig) { c.Conns = 1 })
	before := m.metrics.invalid.Get()
	got, err := callBody(m, `{"jsonrpc":"2.0","id":5,"method":"raw"}`, time.Now().Add(20*time.Second))
	if err != nil || !strings.Contains(string(got), `"id":5,"result":"0x1"`) {
		t.Fatalf("the call after a foreign answer: %s %v", got, err)
	}
	if n := m.metrics.invalid.Get() - before; n != 1 {
		t.Fatalf("invalid messages counted: %d, want 1", n)
	}
}
