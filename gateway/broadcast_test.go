package gateway

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/infura-gateway/infura-gateway/gateway/internal/redistest"
	"github.com/infura-gateway/infura-gateway/proto"
)

// The fakes a broadcast goes to: nodes answering a send with the hash of the raw
// transaction it carries (as a node does), unless told to answer otherwise.
var txSeq atomic.Uint64

// rawTx returns a fresh raw transaction (a typed envelope's bytes; fakes do not decode
// it) and its hash as a node names it.
func rawTx() (raw, hash string) {
	b := []byte(fmt.Sprintf("\x02\xf8\x70test transaction %d", txSeq.Add(1)))
	h := proto.Keccak256(b)
	return "0x" + hex.EncodeToString(b), "0x" + hex.EncodeToString(h[:])
}

// sendHashOf is what an honest node answers to r: the hash of its raw transaction.
func sendHashOf(r fakeRequest) string {
	var p []string
	_ = json.Unmarshal(r.Params, &p)
	b, _ := hex.DecodeString(strings.TrimPrefix(p[0], "0x"))
	h := proto.Keccak256(b)
	return `"0x` + hex.EncodeToString(h[:]) + `"`
}

// sendAnswer makes a fake answer sends with send(r) and everything else as usual.
func sendAnswer(send func(r fakeRequest) fakeAnswer) fakeOption {
	return fakeRespond(func(r fakeRequest) fakeAnswer {
		if r.Method == "eth_sendRawTransaction" {
			return send(r)
		}
		return fakeAnswer{}
	})
}

func honest(r fakeRequest) fakeAnswer { return fakeAnswer{Result: sendHashOf(r)} }

// sendsOf counts the sends of raw a fake received.
func sendsOf(f *fakeUpstream, raw string) int {
	n := 0
	for _, r := range f.requests() {
		if r.Method == "eth_sendRawTransaction" && strings.Contains(string(r.Params), raw) {
			n++
		}
	}
	return n
}

const broadcastFile = `upstreams:
  - name: a
    http: %s
    ws: %s
  - name: b
    http: %s
  - name: relay
    http: %s
    send_only: true
broadcast:
  targets: all
  dedupe_window: 10m
`

func broadcastConfig(t *testing.T, a, b, relay *fakeUpstream) string {
	return writeFile(t, t.TempDir(), "gateway.yaml", fmt.Sprintf(broadcastFile, a.HTTPURL, a.WSURL, b.HTTPURL, relay.HTTPURL))
}

// A send goes to two upstreams and a send-only one, each exactly once, over POST /, in
// a batch and over /socket2socket; the client gets the transaction's hash; a resend
// within the window reaches none of them. The send-only upstream is asked nothing else.
func TestBroadcastEachTargetOnce(t *testing.T) {
	a, b, relay := startFakeUpstream(t, sendAnswer(honest)), startFakeUpstream(t, sendAnswer(honest)), startFakeUpstream(t, sendAnswer(honest))
	gw := startGateway(t, append([]string{"-config", broadcastConfig(t, a, b, relay)}, fastHealth...)...)
	gw.waitUpstreams(t)
	ws := dialWS(t, gw.WSURL, nil)

	send := func(transport, raw string) string {
		call := `{"jsonrpc":"2.0","id":7,"method":"eth_sendRawTransaction","params":["` + raw + `"]}`
		switch transport {
		case "post":
			_, body := do(t, "POST", gw.URL+"/", call)
			return string(body)
		case "batch":
			_, body := do(t, "POST", gw.URL+"/", `[{"jsonrpc":"2.0","id":1,"method":"eth_chainId"},`+call+`]`)
			var answers []json.RawMessage
			if err := json.Unmarshal(body, &answers); err != nil || len(answers) != 2 {
				t.Fatalf("batch answer %s", body)
			}
			return string(answers[1])
		}
		return string(ws.call(call))
	}
	for _, transport := range []string{"post", "batch", "socket2socket"} {
		t.Run(transport, func(t *testing.T) {
			raw, hash := rawTx()
			want := `{"jsonrpc":"2.0","id":7,"result":"` + hash + `"}`
			deduped := gw.metric(t, "gateway_broadcast_deduped_total")
			for i := range 3 { // the first broadcasts, the resends are deduplicated
				if got := send(transport, raw); got != want {
					t.Fatalf("send %d: %s, want %s", i, got, want)
				}
				// The client is answered at the first accept; the other targets may
				// still be receiving it.
				for name, f := range map[string]*fakeUpstream{"a": a, "b": b, "relay": relay} {
					waitFor(t, name+" receiving the transaction", func() bool { return sendsOf(f, raw) >= 1 })
					if n := sendsOf(f, raw); n != 1 {
						t.Fatalf("send %d: %s received the transaction %d times, want once", i, name, n)
					}
				}
			}
			if got := gw.metric(t, "gateway_broadcast_deduped_total") - deduped; got != 2 {
				t.Errorf("deduped %v resends, want 2", got)
			}
		})
	}
	for _, r := range relay.requests() {
		if r.Method != "eth_sendRawTransaction" {
			t.Errorf("the send-only upstream was asked %s", r.Method)
		}
	}
	for _, u := range []string{"a", "b", "relay"} {
		series := `gateway_broadcast_targets_total{upstream="` + u + `",result="accepted"}`
		waitFor(t, series, func() bool { return seriesValue(gw, series) == 3 })
	}
}

// What each target answers decides what the client gets: the hash when one accepted
// (an "already known" or a "nonce too low" for this very transaction counts), the
// node's own refusal rather than a transport failure, and never a hash that is not
// the transaction's.
func TestBroadcastAnswers(t *testing.T) {
	wrong := func(fakeRequest) fakeAnswer { return fakeAnswer{Result: `"0x` + strings.Repeat("ab", 32) + `"`} }
	rpcErr := func(msg string) func(fakeRequest) fakeAnswer {
		return func(r fakeRequest) fakeAnswer {
			return fakeAnswer{Body: `{"jsonrpc":"2.0","id":` + string(r.ID) + `,"error":{"code":-32000,"message":"` + msg + `"}}`}
		}
	}
	broken := func(fakeRequest) fakeAnswer { return fakeAnswer{Status: 500, Body: "boom"} }
	cases := []struct {
		name         string
		a, b, relay  func(fakeRequest) fakeAnswer
		want         string // in the client's answer
		results      [3]string
		nonceKnowsTx bool // a's eth_getTransactionByHash finds the transaction
	}{
		{"one answers another hash", wrong, honest, honest, `"result":"%s"`, [3]string{"wrong_hash", "accepted", "accepted"}, false},
		{"all answer another hash", wrong, wrong, wrong, `another transaction hash`, [3]string{"wrong_hash", "wrong_hash", "wrong_hash"}, false},
		{"already known", rpcErr("already known"), broken, broken, `"result":"%s"`, [3]string{"known", "failed", "failed"}, false},
		{"nonce too low, same transaction", rpcErr("nonce too low: next nonce 5, tx nonce 4"), broken, broken, `"result":"%s"`, [3]string{"known", "failed", "failed"}, true},
		{"nonce too low, another transaction", rpcErr("nonce too low: next nonce 5, tx nonce 4"), broken, wrong, `nonce too low`, [3]string{"rejected", "failed", "wrong_hash"}, false},
		{"the node's refusal over a transport failure", broken, rpcErr("insufficient funds for gas * price + value"), broken, `insufficient funds`, [3]string{"failed", "rejected", "failed"}, false},
		{"every target down", broken, broken, broken, `"code":-32000`, [3]string{"failed", "failed", "failed"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			raw, hash := rawTx()
			a := startFakeUpstream(t, fakeRespond(func(r fakeRequest) fakeAnswer {
				switch r.Method {
				case "eth_sendRawTransaction":
					return c.a(r)
				case "eth_getTransactionByHash":
					if c.nonceKnowsTx {
						return fakeAnswer{Result: `{"hash":"` + hash + `","nonce":"0x4"}`}
					}
					return fakeAnswer{Result: "null"}
				}
				return fakeAnswer{}
			}))
			b, relay := startFakeUpstream(t, sendAnswer(c.b)), startFakeUpstream(t, sendAnswer(c.relay))
			gw := startGateway(t, append([]string{"-config", broadcastConfig(t, a, b, relay)}, fastHealth...)...)
			gw.waitUpstreams(t)
			_, body := do(t, "POST", gw.URL+"/", `{"jsonrpc":"2.0","id":"x","method":"eth_sendRawTransaction","params":["`+raw+`"]}`)
			want := c.want
			if strings.Contains(want, "%s") {
				want = fmt.Sprintf(want, hash)
			}
			if !strings.Contains(string(body), want) || !strings.Contains(string(body), `"id":"x"`) {
				t.Fatalf("answer %s, want it to hold %s and the client's id", body, want)
			}
			for i, u := range []string{"a", "b", "relay"} {
				// Wait for every target: the client may be answered before the last one is.
				series := `gateway_broadcast_targets_total{upstream="` + u + `",result="` + c.results[i] + `"}`
				waitFor(t, series, func() bool { return seriesValue(gw, series) == 1 })
			}
			for name, f := range map[string]*fakeUpstream{"a": a, "b": b, "relay": relay} {
				if n := sendsOf(f, raw); n != 1 {
					t.Errorf("%s received the transaction %d times, want once", name, n)
				}
			}
		})
	}
}

// seriesValue is gw.metric for a series that may not exist yet (0).
func seriesValue(gw *testGateway, series string) float64 {
	var v float64
	var b bytes.Buffer
	gw.srv.reg.WritePrometheus(&b)
	for _, line := range strings.Split(b.String(), "\n") {
		if rest, ok := strings.CutPrefix(defaultSeries(line), series+" "); ok {
			_, _ = fmt.Sscan(rest, &v)
		}
	}
	return v
}

// A send that is not a signed transaction the gateway can name is refused before it
// reaches anyone.
func TestBroadcastRefusesWhatItCannotHash(t *testing.T) {
	a, b, relay := startFakeUpstream(t, sendAnswer(honest)), startFakeUpstream(t, sendAnswer(honest)), startFakeUpstream(t, sendAnswer(honest))
	gw := startGateway(t, append([]string{"-config", broadcastConfig(t, a, b, relay)}, fastHealth...)...)
	gw.waitUpstreams(t)
	for _, params := range []string{`["0x"]`, `["0x123"]`, `["banana"]`, `[]`, `[{"raw":"0x02"}]`} {
		code, body := do(t, "POST", gw.URL+"/", `{"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":`+params+`}`)
		if code != 200 || !strings.Contains(string(body), `"code":-32602`) {
			t.Errorf("params %s: %d %s, want -32602", params, code, body)
		}
	}
	if n := a.count("eth_sendRawTransaction") + b.count("eth_sendRawTransaction") + relay.count("eth_sendRawTransaction"); n != 0 {
		t.Errorf("%d sends reached the upstreams", n)
	}
}

// Two replicas sharing a real redis-server: a resend through the other replica within
// the window reaches no upstream; the same transaction sent through both at once is
// broadcast once.
func TestBroadcastDedupeAcrossReplicas(t *testing.T) {
	rs := redistest.Start(t)
	a, b, relay := startFakeUpstream(t, sendAnswer(honest)), startFakeUpstream(t, sendAnswer(honest)), startFakeUpstream(t, sendAnswer(honest))
	path := broadcastConfig(t, a, b, relay)
	var gws [2]*testGateway
	for i := range gws {
		gws[i] = startGateway(t, append([]string{"-config", path, "-redis-addr", rs.Addr}, fastHealth...)...)
		gws[i].waitUpstreams(t)
		waitFor(t, "Redis usable", func() bool { return gws[i].metric(t, `gateway_redis_up{client="redis"}`) == 1 })
	}
	send := func(gw *testGateway, raw string) string {
		_, body := do(t, "POST", gw.URL+"/", `{"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":["`+raw+`"]}`)
		return string(body)
	}
	onceEach := func(raw string) {
		t.Helper()
		for name, f := range map[string]*fakeUpstream{"a": a, "b": b, "relay": relay} {
			waitFor(t, name+" receiving the transaction", func() bool { return sendsOf(f, raw) >= 1 })
			if n := sendsOf(f, raw); n != 1 {
				t.Fatalf("%s received the transaction %d times, want once", name, n)
			}
		}
	}

	raw, hash := rawTx()
	want := `{"jsonrpc":"2.0","id":1,"result":"` + hash + `"}`
	if got := send(gws[0], raw); got != want {
		t.Fatalf("first send: %s, want %s", got, want)
	}
	onceEach(raw)
	if got := send(gws[1], raw); got != want {
		t.Fatalf("resend through the other replica: %s, want %s", got, want)
	}
	onceEach(raw)
	if got := gws[1].metric(t, "gateway_broadcast_deduped_total"); got != 1 {
		t.Errorf("the other replica deduplicated %v sends, want 1", got)
	}

	raw, hash = rawTx()
	want = `{"jsonrpc":"2.0","id":1,"result":"` + hash + `"}`
	answers := make(chan string, 2)
	for _, gw := range gws {
		go func() { answers <- send(gw, raw) }()
	}
	for range gws {
		if got := <-answers; got != want {
			t.Errorf("send through both at once: %s, want %s", got, want)
		}
	}
	onceEach(raw)
}

// Redis gone: sends still go out (each target once), deduplicated in the process.
func TestBroadcastWithoutRedis(t *testing.T) {
	rs := redistest.Start(t)
	a, b, relay := startFakeUpstream(t, sendAnswer(honest)), startFakeUpstream(t, sendAnswer(honest)), startFakeUpstream(t, sendAnswer(honest))
	gw := startGateway(t, append([]string{"-config", broadcastConfig(t, a, b, relay), "-redis-addr", rs.Addr}, fastHealth...)...)
	gw.waitUpstreams(t)
	rs.Kill()
	raw, hash := rawTx()
	want := `{"jsonrpc":"2.0","id":1,"result":"` + hash + `"}`
	for i := range 2 {
		if _, body := do(t, "POST", gw.URL+"/", `{"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":["`+raw+`"]}`); string(body) != want {
			t.Fatalf("send %d with Redis down: %s, want %s", i, body, want)
		}
	}
	for name, f := range map[string]*fakeUpstream{"a": a, "b": b, "relay": relay} {
		waitFor(t, name+" receiving the transaction", func() bool { return sendsOf(f, raw) >= 1 })
		if n := sendsOf(f, raw); n != 1 {
			t.Errorf("%s received the transaction %d times, want once", name, n)
		}
	}
}

// A reload turns broadcast on and off for a network that stays (its clients with it).
func TestBroadcastFollowsReload(t *testing.T) {
	a, b := startFakeUpstream(t, sendAnswer(honest)), startFakeUpstream(t, sendAnswer(honest))
	dir := t.TempDir()
	file := fmt.Sprintf("upstreams:\n  - name: a\n    http: %s\n  - name: b\n    http: %s\n", a.HTTPURL, b.HTTPURL)
	path := writeFile(t, dir, "gateway.yaml", file)
	gw := startGateway(t, append([]string{"-config", path, "-config-poll", "100ms"}, fastHealth...)...)
	gw.waitUpstreams(t)
	targets := func() float64 {
		return seriesValue(gw, `gateway_broadcast_targets_total{upstream="a",result="accepted"}`) +
			seriesValue(gw, `gateway_broadcast_targets_total{upstream="b",result="accepted"}`)
	}
	reached := func() int {
		raw, _ := rawTx()
		before := targets()
		do(t, "POST", gw.URL+"/", `{"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":["`+raw+`"]}`)
		// A broadcast counts its first accept before it answers; a send to one upstream
		// has reached it when the client is answered.
		if targets() == before {
			return sendsOf(a, raw) + sendsOf(b, raw)
		}
		waitFor(t, "both targets' answers", func() bool { return targets() == before+2 })
		return sendsOf(a, raw) + sendsOf(b, raw)
	}
	for i, c := range []struct {
		broadcast string
		want      int
	}{{"", 1}, {"broadcast: {targets: all}\n", 2}, {"", 1}} {
		if i > 0 {
			writeFile(t, dir, "gateway.yaml", file+c.broadcast)
			waitFor(t, "the reload", func() bool { return gw.metric(t, `gateway_config_reloads_total{result="ok"}`) == float64(i) })
		}
		if got := reached(); got != c.want {
			t.Errorf("step %d: the send reached %d upstreams, want %d", i, got, c.want)
		}
	}
}
