package upstream

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
)

// The chain-id check's state machine on fake upstreams; gateway/failover's
// chainid_test.go runs it against a real node of another chain.

const (
	chain1337  = `"0x539"`
	chain31337 = `"0x7a69"`
)

// chainHTTP is an HTTP JSON-RPC upstream answering eth_chainId with *chain (an
// unknown method while it is nil) and "0x1" to anything else.
type chainHTTP struct {
	URL   string
	chain atomic.Pointer[string]
	asked atomic.Int64 // eth_chainId calls
}

func newChainHTTP(t *testing.T, chain string) *chainHTTP {
	t.Helper()
	c := &chainHTTP{}
	c.set(chain)
	c.URL = serveHTTP(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		res := `"0x1"`
		if strings.Contains(string(body), `"eth_chainId"`) {
			c.asked.Add(1)
			p := c.chain.Load()
			if p == nil {
				_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"the method eth_chainId does not exist"}}`)
				return
			}
			res = *p
		}
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":`+res+`}`)
	})
	return c
}

// serveHTTP serves h on a loopback port until the test ends and returns its URL.
func serveHTTP(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// set makes the upstream answer chain ("" for an unknown method).
func (c *chainHTTP) set(chain string) {
	if chain == "" {
		c.chain.Store(nil)
		return
	}
	c.chain.Store(&chain)
}

func withChain(id uint64) func(*RouterConfig) {
	return func(c *RouterConfig) { c.ChainID, c.ChainWait = id, 20*time.Second }
}

func stateOf(r *Router, name string) UpstreamStatus {
	for _, s := range r.Status().Upstreams {
		if s.Name == name {
			return s
		}
	}
	return UpstreamStatus{}
}

// The verdict follows the answers of both transports: the chain proved on one serves
// that one only; another chain on either takes the whole upstream out until both
// answer right again; a failed answer changes nothing. Without a chain id every
// upstream serves on both, as before the check.
func TestChainVerdict(t *testing.T) {
	type answer struct {
		via Transport
		got uint64
		err error
	}
	failed := errors.New("connection refused")
	for _, tc := range []struct {
		name          string
		chainID       uint64
		answers       []answer
		http, ws      bool // servesChain
		state         string
		statusChainID uint64
	}{
		{"no check", 0, nil, true, true, "healthy", 0},
		{"unchecked", 1337, nil, false, false, "unchecked", 0},
		{"a failed answer proves nothing", 1337, []answer{{TransportHTTP, 0, failed}}, false, false, "unchecked", 0},
		{"http proved", 1337, []answer{{TransportHTTP, 1337, nil}}, true, false, "healthy", 1337},
		{"a socket proved", 1337, []answer{{TransportWS, 1337, nil}}, false, true, "healthy", 1337},
		{"both proved", 1337, []answer{{TransportHTTP, 1337, nil}, {TransportWS, 1337, nil}}, true, true, "healthy", 1337},
		{"wrong over http", 1337, []answer{{TransportHTTP, 31337, nil}}, false, false, "wrong_chain", 31337},
		{"wrong socket takes http out too", 1337, []answer{{TransportHTTP, 1337, nil}, {TransportWS, 31337, nil}}, false, false, "wrong_chain", 31337},
		{"a failure after wrong keeps it wrong", 1337, []answer{{TransportHTTP, 31337, nil}, {TransportHTTP, 0, failed}}, false, false, "wrong_chain", 31337},
		{"right again", 1337, []answer{{TransportHTTP, 31337, nil}, {TransportHTTP, 1337, nil}}, true, false, "healthy", 1337},
		{"right on http, still wrong on ws", 1337, []answer{{TransportWS, 31337, nil}, {TransportHTTP, 1337, nil}}, false, false, "wrong_chain", 31337},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := testRouterWith(t, withChain(tc.chainID), Spec{Name: "a", HTTPURL: "http://127.0.0.1:1"})
			u := byName(r, "a")
			for _, a := range tc.answers {
				r.chainAnswer(u, a.via, a.got, a.err)
			}
			if got := u.servesChain(TransportHTTP); got != tc.http {
				t.Errorf("serves HTTP: %v, want %v", got, tc.http)
			}
			if got := u.servesChain(TransportWS); got != tc.ws {
				t.Errorf("serves WS: %v, want %v", got, tc.ws)
			}
			if st := stateOf(r, "a"); st.State != tc.state || st.ChainID != tc.statusChainID {
				t.Errorf("status: state %q chain id %d (%s), want %q %d", st.State, st.ChainID, st.Reason, tc.state, tc.statusChainID)
			}
		})
	}
}

// An upstream of another chain, or one not checked yet, is never picked: not when the
// upstream of the chain is banned (the last resort takes it, never the other), not for
// a subscription, and its heads move nothing. With no upstream of the chain a call
// gets a 503 naming the chain, over each path.
func TestNeverAnotherChain(t *testing.T) {
	r := testRouterWith(t, withChain(1337), Spec{Name: "right", HTTPURL: "http://127.0.0.1:1"},
		Spec{Name: "wrong", HTTPURL: "http://127.0.0.1:1", Weight: 100}, Spec{Name: "unchecked", HTTPURL: "http://127.0.0.1:1", Weight: 100})
	right, wrong := byName(r, "right"), byName(r, "wrong")
	r.chainAnswer(right, TransportHTTP, 1337, nil)
	r.chainAnswer(wrong, TransportHTTP, 31337, nil)
	r.observeHead(right, header(10))
	r.observeHead(wrong, header(50))
	if got := r.ServedHead(); got != 10 {
		t.Fatalf("served head %d: another chain's head moved it", got)
	}
	r.review(time.Now())
	if st := right.health.State(); st != StateHealthy {
		t.Fatalf("the right upstream is %v next to another chain's higher head", st)
	}
	if !r.Usable() {
		t.Fatal("not usable with the right upstream")
	}
	req := request("eth_getBalance", `["0x01","latest"]`)
	for _, banned := range []bool{false, true} {
		if banned {
			right.health.Ban("test", time.Now())
		}
		for range 200 {
			if u := r.pick(req, r.needOf(req), TransportHTTP, nil); u != right {
				t.Fatalf("banned %v: picked %v", banned, u.Name())
			}
		}
	}

	r.chainAnswer(right, TransportHTTP, 5, nil) // now every upstream is off the chain
	if r.Usable() {
		t.Fatal("usable with no upstream of the chain")
	}
	check := func(what string, err error) {
		t.Helper()
		var perr *proto.Error
		if !errors.As(err, &perr) || perr.Status != 503 || !strings.Contains(perr.Message, "no upstream of chain 1337") {
			t.Fatalf("%s: %v, want a 503 naming chain 1337", what, err)
		}
	}
	_, err := r.call(nil, req, []byte("1"), time.Now().Add(time.Second), TransportHTTP)
	check("call", err)
	var b Batch
	b.Add(req, []byte("1"))
	check("batch", r.callBatch(&b, time.Now().Add(time.Second), TransportHTTP))
	r.cfg.HedgeQuantile = 0.9
	_, err = r.call(nil, req, []byte("1"), time.Now().Add(time.Second), TransportHTTP)
	check("hedged call", err)
}

// The HTTP check at Start: Start waits for the first answers (bounded), an upstream of
// the chain serves, one of another chain does not, and one that cannot answer is
// unchecked; a wrong one is asked again every probe interval and serves once it
// answers the chain; a reload asks kept upstreams again.
func TestChainCheckedAtStartAndAgain(t *testing.T) {
	right, wrong, mute := newChainHTTP(t, chain1337), newChainHTTP(t, chain31337), newChainHTTP(t, "")
	r := testRouterWith(t, withChain(1337), Spec{Name: "right", HTTPURL: right.URL},
		Spec{Name: "wrong", HTTPURL: wrong.URL}, Spec{Name: "mute", HTTPURL: mute.URL}, Spec{Name: "down", HTTPURL: "http://127.0.0.1:1"})
	r.Start()
	t.Cleanup(r.Close)
	for name, want := range map[string]string{"right": "healthy", "wrong": "wrong_chain", "mute": "unchecked", "down": "unchecked"} {
		if st := stateOf(r, name); st.State != want {
			t.Fatalf("%s after Start: %q (%s), want %q", name, st.State, st.Reason, want)
		}
	}
	if !byName(r, "right").servesChain(TransportHTTP) {
		t.Fatal("the upstream of the chain does not serve after Start")
	}

	wrong.set(chain1337) // fixed behind the same URL
	waitFor(t, "the fixed upstream to serve", func() bool { return byName(r, "wrong").servesChain(TransportHTTP) })

	right.set(chain31337) // another node behind the URL: a reload asks again
	asked := right.asked.Load()
	if err := r.Reload([]Spec{{Name: "right", HTTPURL: right.URL}, {Name: "wrong", HTTPURL: wrong.URL}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the reload's check", func() bool { return right.asked.Load() > asked })
	waitFor(t, "the reloaded upstream to be wrong_chain", func() bool { return byName(r, "right").wrongChain() })
}

// Start's wait is bounded: an upstream that never answers holds it for ChainWait, then
// serves nothing until it answers.
func TestChainWaitBounded(t *testing.T) {
	hole := blackhole(t)
	r := testRouterWith(t, func(c *RouterConfig) { c.ChainID, c.ChainWait = 1337, 100*time.Millisecond },
		Spec{Name: "hole", HTTPURL: hole})
	done := make(chan struct{})
	go func() { r.Start(); close(done) }()
	t.Cleanup(r.Close)
	select {
	case <-done:
	case <-time.After(30 * time.Second): // generous: the bound is 100 ms
		t.Fatal("Start did not return with an upstream that never answers")
	}
	if st := stateOf(r, "hole"); st.State != "unchecked" {
		t.Fatalf("state %q", st.State)
	}
}

// A banned upstream is asked its chain before it is readmitted: another node behind
// its URL is wrong_chain whatever its probes say; no answer is a failed probe.
func TestReadmissionAsksTheChain(t *testing.T) {
	up := newChainHTTP(t, chain1337)
	r := testRouterWith(t, withChain(1337), Spec{Name: "a", HTTPURL: up.URL})
	u := byName(r, "a")
	r.chainAnswer(u, TransportHTTP, 1337, nil)
	r.cfg.Health.BanMin, r.cfg.Health.BanMax = time.Nanosecond, time.Nanosecond

	up.set(chain31337)
	u.health.Ban("test", time.Now())
	r.probe(u, true)
	if !u.wrongChain() || stateOf(r, "a").State != "wrong_chain" {
		t.Fatalf("probed while answering chain 31337: %+v", stateOf(r, "a"))
	}
	up.set("")
	bans := u.health.banCount.Load()
	r.probe(u, true)
	if u.health.State() != StateBanned || u.health.banCount.Load() != bans+1 {
		t.Fatal("a probe with no eth_chainId answer did not fail")
	}
	up.set(chain1337)
	for range r.cfg.Health.Readmit {
		r.probe(u, true)
	}
	if u.health.State() != StateHealthy || !u.servesChain(TransportHTTP) {
		t.Fatalf("not readmitted on its chain: %v, %+v", u.health.State(), stateOf(r, "a"))
	}
}

// Each socket proves the chain before it carries anything: a socket of another chain,
// or one that does not answer eth_chainId, is closed and dialed again; once the node
// answers the chain the sockets come up and serve.
func TestMuxSocketProvesTheChain(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer string // "" for no eth_chainId
		got    uint64
	}{
		{"another chain", chain31337, 31337},
		{"no answer", "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeUpstream(t, false)
			if tc.answer != "" {
				f.chainID.Store(&tc.answer)
			}
			var answers, failures atomic.Int64
			var last atomic.Uint64
			cfg := testMuxConfig(f.url)
			cfg.ChainID = 1337
			cfg.OnChainID = func(got uint64, err error) {
				if err != nil {
					failures.Add(1)
					return
				}
				answers.Add(1)
				last.Store(got)
			}
			m, err := NewMux(cfg)
			if err != nil {
				t.Fatal(err)
			}
			m.Start()
			t.Cleanup(m.Close)
			waitFor(t, "three sockets dialed and refused", func() bool { return f.dialed.Load() >= 3 })
			if m.Up() {
				t.Fatal("a socket that did not prove the chain is up")
			}
			if _, err := callBody(m, `{"jsonrpc":"2.0","id":1,"method":"echo","params":[1]}`, time.Now().Add(time.Second)); err != proto.ErrUnreachable {
				t.Fatalf("a call with no proved socket: %v", err)
			}
			if tc.got != 0 && (last.Load() != tc.got || failures.Load() != 0) {
				t.Fatalf("OnChainID heard %d (%d failures), want %d", last.Load(), failures.Load(), tc.got)
			}
			if tc.got == 0 && (failures.Load() == 0 || answers.Load() != 0) {
				t.Fatalf("OnChainID heard %d answers, %d failures", answers.Load(), failures.Load())
			}
			right := chain1337
			f.chainID.Store(&right)
			waitFor(t, "the sockets up on the chain", func() bool { return m.metrics.wsConns.Load() == int64(cfg.Conns) })
			if got := mustCall(t, m, `{"jsonrpc":"2.0","id":1,"method":"echo","params":[1]}`); got != `{"jsonrpc":"2.0","id":1,"result":[1]}` {
				t.Fatalf("echo: %s", got)
			}
		})
	}
}

// parseChainID reads what encoding/json reads, a result that is a hex quantity string
// above 0, and nothing else; what the gateway's scanner would read otherwise (a
// duplicated result) is refused.
func FuzzParseChainID(f *testing.F) {
	for _, s := range []string{`{"jsonrpc":"2.0","id":1,"result":"0x539"}`, `{"id":1,"result":"0x0"}`,
		`{"id":1,"error":{"code":-32601,"message":"no"}}`, `{"result":1337}`, `{"result":"0x"}`, `{"result":"0xffffffffffffffffff"}`,
		`{"result" : "0x7a69" }`, `[]`, ``, `{"result":"0x1","result":"0x2"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, ans []byte) {
		got, err := parseChainID(ans)
		if err != nil {
			if got != 0 {
				t.Fatalf("error %v with chain id %d", err, got)
			}
			return
		}
		var v struct {
			Result string `json:"result"`
		}
		if jerr := json.Unmarshal(ans, &v); jerr != nil {
			t.Fatalf("%q: parsed %d, not JSON to encoding/json: %v", ans, got, jerr)
		}
		if first, ok := proto.ParseQuantity(proto.FirstMember(ans, "result").Bytes(ans)); !ok || first != got {
			t.Fatalf("%q: parsed %d, the scanner reads %d", ans, got, first)
		}
		want, perr := strconv.ParseUint(strings.TrimPrefix(v.Result, "0x"), 16, 64)
		if !strings.HasPrefix(v.Result, "0x") || perr != nil || want != got || got == 0 {
			t.Fatalf("%q: parsed %d, encoding/json reads result %q", ans, got, v.Result)
		}
	})
}
