package upstream

import (
	"strings"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
)

// waitUntil polls cond until it holds, failing after a generous deadline.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(20 * time.Second); !cond(); {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond) // polling a condition, not a synchronisation
	}
}

func consensusRouter(t *testing.T, cfg ConsensusConfig, fakes map[string]*resultFake) *Router {
	t.Helper()
	var specs []Spec
	for _, name := range []string{"a", "b", "liar"} {
		if f := fakes[name]; f != nil {
			specs = append(specs, Spec{Name: name, HTTPURL: f.url})
		}
	}
	r := testRouter(t, specs...)
	if err := r.SetConsensus(&cfg); err != nil {
		t.Fatal(err)
	}
	return r
}

// 2 of 3 with one liar: the answer is the majority's, the liar is counted and its
// routing weight lowered; it is restored once it agrees again.
func TestConsensusTwoOfThreeWithALiar(t *testing.T) {
	fakes := map[string]*resultFake{
		"a":    newResultFake(t, map[string]string{"eth_getBalance": `"0x1"`}),
		"b":    newResultFake(t, map[string]string{"eth_getBalance": ` "0x1" `}), // whitespace is not a difference
		"liar": newResultFake(t, map[string]string{"eth_getBalance": `"0x2"`}),
	}
	r := consensusRouter(t, ConsensusConfig{Methods: []string{"eth_getBalance"}, Upstreams: 3, Agree: 2}, fakes)
	liar := byName(r, "liar")
	for i := range 10 {
		ans, err := r.call(nil, request("eth_getBalance", `["0x01","latest"]`), []byte("7"), time.Now().Add(5*time.Second), TransportHTTP)
		if err != nil || proto.FirstMember(ans, "result").Bytes(ans) == nil || !strings.Contains(string(ans), `"0x1"`) {
			t.Fatalf("call %d: %s %v; want the majority's 0x1", i, ans, err)
		}
	}
	for name, f := range fakes { // every call asks all 3 (the third may still be on its way)
		waitUntil(t, name+" asked 10 times", func() bool { return f.calls.Load() == 10 })
	}
	waitUntil(t, "the liar's dissent counted", func() bool { return wrongAnswers(r, "liar", "consensus") == "10" })
	if n := wrongAnswers(r, "a", "consensus"); n != "0" {
		t.Fatalf("an agreeing upstream counted %s dissents", n)
	}
	if !liar.integ.lowered.Load() || liar.weight() >= byName(r, "a").weight() {
		t.Fatalf("the liar's weight is %d, a's %d: want the liar's lowered", liar.weight(), byName(r, "a").weight())
	}
	// It agrees again: its weight comes back.
	fakes["liar"].results.Store(&map[string]string{"eth_getBalance": `"0x1"`})
	for range 40 {
		if _, err := r.call(nil, request("eth_getBalance", `["0x01","latest"]`), []byte("7"), time.Now().Add(5*time.Second), TransportHTTP); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "the liar's weight restored", func() bool { return !liar.integ.lowered.Load() })
	if n := wrongAnswers(r, "liar", "consensus"); n != "10" {
		t.Fatalf("the liar has %s dissents after agreeing, want still 10", n)
	}
}

// 2 of 2 that disagree: a clear JSON-RPC error, never either answer.
func TestConsensusDisagreementIsAnError(t *testing.T) {
	fakes := map[string]*resultFake{
		"a": newResultFake(t, map[string]string{"eth_call": `"0x01"`}),
		"b": newResultFake(t, map[string]string{"eth_call": `"0x02"`}),
	}
	r := consensusRouter(t, ConsensusConfig{Methods: []string{"eth_call"}, Upstreams: 2, Agree: 2}, fakes)
	ans, err := r.call(nil, request("eth_call", `[{"to":"0x01"},"latest"]`), []byte("7"), time.Now().Add(5*time.Second), TransportHTTP)
	perr, _ := err.(*proto.Error)
	if len(ans) != 0 || perr == nil || perr.Code != -32000 || perr.Message != "upstreams disagree" {
		t.Fatalf("got %s %v; want -32000 upstreams disagree", ans, err)
	}
	// Methods not under consensus go to one upstream as before.
	before := fakes["a"].calls.Load() + fakes["b"].calls.Load()
	if _, err := r.call(nil, request("eth_chainId", `[]`), []byte("7"), time.Now().Add(5*time.Second), TransportHTTP); err != nil {
		t.Fatal(err)
	}
	if n := fakes["a"].calls.Load() + fakes["b"].calls.Load() - before; n != 1 {
		t.Fatalf("eth_chainId reached %d upstreams, want 1", n)
	}
}

// A batch element under consensus gets the agreed answer too.
func TestConsensusInABatch(t *testing.T) {
	fakes := map[string]*resultFake{
		"a":    newResultFake(t, map[string]string{"eth_getBalance": `"0x1"`}),
		"b":    newResultFake(t, map[string]string{"eth_getBalance": `"0x1"`}),
		"liar": newResultFake(t, map[string]string{"eth_getBalance": `"0x2"`}),
	}
	r := consensusRouter(t, ConsensusConfig{Methods: []string{"eth_getBalance"}, Upstreams: 3, Agree: 2}, fakes)
	for i := range 6 {
		b := &Batch{}
		b.Add(request("eth_getBalance", `["0x01","latest"]`), []byte("8"))
		b.Add(request("eth_chainId", `[]`), []byte("9"))
		if err := r.callBatch(b, time.Now().Add(5*time.Second), TransportHTTP); err != nil {
			t.Fatal(err)
		}
		if ans, e := b.Answer(0); e != nil || string(ans) != `{"jsonrpc":"2.0","id":8,"result":"0x1"}` {
			t.Fatalf("batch %d: %s %v; want the majority's answer", i, ans, e)
		}
	}
}

// Sends, filters and subscriptions are never under consensus; the numbers are checked.
func TestConsensusConfigValidated(t *testing.T) {
	for _, c := range []struct {
		cfg  ConsensusConfig
		want string
	}{
		{ConsensusConfig{Methods: []string{"eth_sendRawTransaction"}, Upstreams: 2, Agree: 2}, "send"},
		{ConsensusConfig{Methods: []string{"eth_getFilterChanges"}, Upstreams: 2, Agree: 2}, "filters"},
		{ConsensusConfig{Methods: []string{"eth_subscribe"}, Upstreams: 2, Agree: 2}, "subscriptions"},
		{ConsensusConfig{Methods: []string{"eth_madeUp"}, Upstreams: 2, Agree: 2}, "knows by name"},
		{ConsensusConfig{Methods: []string{"eth_call"}, Upstreams: 1, Agree: 1}, "upstreams 1"},
		{ConsensusConfig{Methods: []string{"eth_call"}, Upstreams: 3, Agree: 4}, "agree 4"},
		{ConsensusConfig{Upstreams: 3, Agree: 2}, "methods"},
	} {
		if err := c.cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v; want an error about %q", c.cfg, err, c.want)
		}
	}
}
