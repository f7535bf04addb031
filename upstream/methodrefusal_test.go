package upstream

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
)

func TestNamesMethod(t *testing.T) {
	for _, c := range []struct {
		msg, method string
		want        bool
	}{
		{"method eth_sign not allowed", "eth_sign", true},
		{"eth_sign", "eth_sign", true},
		{"debug_traceBlock is not available on your plan", "debug_traceBlock", true},
		{"(trace_block)", "trace_block", true},
		{"eth_signTransaction is not allowed", "eth_sign", false}, // inside a longer name
		{"x_eth_sign", "eth_sign", false},
		{"invalid project id", "invalid", false}, // no namespace: any word could match
		{"a_b refused", "a_b", false},            // too short
		{"eth_sign eth_signX", "eth_signX", true},
		{"", "eth_sign", false},
	} {
		if got := namesMethod([]byte(c.msg), []byte(c.method)); got != c.want {
			t.Errorf("namesMethod(%q, %q) = %v, want %v", c.msg, c.method, got, c.want)
		}
	}
}

// TestMethodRefusals: the table remembers names, bounded in number and length, and
// forgets them after methodRefusedFor.
func TestMethodRefusals(t *testing.T) {
	var m methodRefusals
	now := time.Now()
	if !m.add([]byte("debug_traceBlock"), now) || m.add([]byte("debug_traceBlock"), now) {
		t.Fatal("a new name must be new once")
	}
	if !m.refuses([]byte("debug_traceBlock")) || m.refuses([]byte("debug_traceCall")) {
		t.Fatal("refuses the remembered name only")
	}
	if m.add([]byte(strings.Repeat("x_", 40)), now) {
		t.Fatal("a name over maxRefusedName remembered")
	}
	for i := range 3 * maxRefusedMethods {
		m.add([]byte("junk_"+strings.Repeat("y", i%50)+string(rune('a'+i%26))), now.Add(time.Duration(i)*time.Millisecond))
	}
	if n := m.live(); n != maxRefusedMethods {
		t.Fatalf("%d entries live, want the table's %d", n, maxRefusedMethods)
	}
	var old methodRefusals
	old.add([]byte("eth_sign"), now.Add(-methodRefusedFor-time.Second))
	if old.refuses([]byte("eth_sign")) || old.live() != 0 {
		t.Fatal("an expired refusal still counts")
	}
}

// methodProvider answers every call with a result, except calls of refuse, which it
// answers with status and body (its id put in place of @ID@).
type methodProvider struct {
	url     string
	refused atomic.Int64 // calls of the refused method it got
	others  atomic.Int64
}

func newMethodProvider(t *testing.T, refuse string, status int, body string) *methodProvider {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &methodProvider{url: "http://" + ln.Addr().String()}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		id := idOf(b)
		w.Header().Set("Content-Type", "application/json")
		if refuse != "" && strings.Contains(string(b), `"method":"`+refuse+`"`) {
			p.refused.Add(1)
			w.WriteHeader(status)
			_, _ = io.WriteString(w, strings.ReplaceAll(body, "@ID@", id))
			return
		}
		p.others.Add(1)
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":`+id+`,"result":"0x1"}`)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return p
}

// TestMethodRefusedElsewhere: a provider answering 403 for one method (its plan, its
// allowlist) is not banned: the method goes to the upstream that serves it, the
// refusing one keeps serving every other method, and is asked for the refused method
// no more (at most the once that taught the router). Before, the 403 counted as the
// key refused: the upstream was banned for every method.
func TestMethodRefusedElsewhere(t *testing.T) {
	const body = `{"jsonrpc":"2.0","id":@ID@,"error":{"code":-32000,"message":"method debug_traceBlockByNumber is not allowed for this key"}}`
	plan := newMethodProvider(t, "debug_traceBlockByNumber", 403, body)
	full := newMethodProvider(t, "", 0, "")
	// The refusing upstream is picked first (its weight makes its score the best).
	r := testRouter(t, Spec{Name: "plan", HTTPURL: plan.url, Weight: 1000}, Spec{Name: "full", HTTPURL: full.url})
	deadline := func() time.Time { return time.Now().Add(5 * time.Second) }
	for i := range 30 {
		ans, err := r.call(nil, request("debug_traceBlockByNumber", `["0x1",{}]`), []byte("7"), deadline(), TransportHTTP)
		if err != nil || string(ans) != `{"jsonrpc":"2.0","id":7,"result":"0x1"}` {
			t.Fatalf("call %d of the refused method: %s %v; want the other upstream's answer", i, ans, err)
		}
	}
	if n := plan.refused.Load(); n > 1 {
		t.Fatalf("the refusing upstream was asked for the method %d times, want at most once", n)
	}
	if st := byName(r, "plan").health.State(); st != StateHealthy {
		t.Fatalf("the refusing upstream is %v: a refused method is not a refused key", st)
	}
	before := plan.others.Load()
	for range 30 {
		if _, err := r.call(nil, request("eth_getBalance", `["0x01","latest"]`), []byte("7"), deadline(), TransportHTTP); err != nil {
			t.Fatal(err)
		}
	}
	if plan.others.Load() == before {
		t.Fatal("the refusing upstream got none of 30 calls of other methods (weight 1000)")
	}
	if got := byName(r, "plan").refusedMethods.list(time.Now()); len(got) != 1 || got[0] != "debug_traceBlockByNumber" {
		t.Fatalf("refused methods on /status: %v", got)
	}
}

// TestMethodRefusedByEveryUpstream: with no upstream serving the method, the client
// gets the gateway's own -32601 (no provider text), and the upstream stays in.
func TestMethodRefusedByEveryUpstream(t *testing.T) {
	const body = `{"jsonrpc":"2.0","id":@ID@,"error":{"code":-32000,"message":"trace_block is not available on the Free tier - upgrade at https://dashboard.example/billing?key=SECRET"}}`
	only := newMethodProvider(t, "trace_block", 403, body)
	r := testRouter(t, Spec{Name: "only", HTTPURL: only.url})
	for i := range 10 {
		_, err := r.call(nil, request("trace_block", `["0x1"]`), []byte("7"), time.Now().Add(5*time.Second), TransportHTTP)
		var perr *proto.Error
		if !errors.As(err, &perr) || perr.Code != proto.CodeMethodNotFound || strings.Contains(perr.Message, "SECRET") {
			t.Fatalf("call %d: %v; want the gateway's -32601", i, err)
		}
	}
	if st := byName(r, "only").health.State(); st != StateHealthy {
		t.Fatalf("the upstream is %v", st)
	}
	ans, err := r.call(nil, request("eth_blockNumber", `[]`), []byte("7"), time.Now().Add(5*time.Second), TransportHTTP)
	if err != nil || !strings.Contains(string(ans), `"result"`) {
		t.Fatalf("another method: %s %v", ans, err)
	}
}
