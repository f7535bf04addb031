package gateway

import (
	"bytes"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	pb "google.golang.org/protobuf/proto"

	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
)

// otlpReceiver is an OTLP/HTTP trace receiver: it decodes each export's protobuf and
// keeps the spans (no OpenTelemetry Collector or Jaeger binary is installed here).
type otlpReceiver struct {
	URL   string
	mu    sync.Mutex
	spans []*tracepb.Span
}

func startOTLPReceiver(t *testing.T) *otlpReceiver {
	r := &otlpReceiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var ex collectorpb.ExportTraceServiceRequest
		if req.URL.Path != "/v1/traces" || pb.Unmarshal(body, &ex) != nil {
			http.Error(w, "bad export", http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		for _, rs := range ex.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				r.spans = append(r.spans, ss.Spans...)
			}
		}
		r.mu.Unlock()
		out, _ := pb.Marshal(&collectorpb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

// trace returns the spans received of trace id (hex).
func (r *otlpReceiver) trace(id string) []*tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*tracepb.Span
	for _, s := range r.spans {
		if hex.EncodeToString(s.TraceId) == id {
			out = append(out, s)
		}
	}
	return out
}

func attr(s *tracepb.Span, key string) string {
	for _, a := range s.Attributes {
		if a.Key == key {
			return a.Value.GetStringValue()
		}
	}
	return ""
}

// flakyProxy is an upstream in front of a real node that fails the first
// eth_getBalance of all the proxies sharing failed (503), and records the
// traceparent and X-Request-Id of every eth_getBalance it gets.
type flakyProxy struct {
	URL    string
	mu     sync.Mutex
	parent []string
	reqID  []string
}

func startFlakyProxy(t *testing.T, node string, failed *atomic.Bool) *flakyProxy {
	p := &flakyProxy{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if bytes.Contains(body, []byte(`"eth_getBalance"`)) {
			p.mu.Lock()
			p.parent = append(p.parent, req.Header.Get("traceparent"))
			p.reqID = append(p.reqID, req.Header.Get("X-Request-Id"))
			p.mu.Unlock()
			if failed.CompareAndSwap(false, true) {
				http.Error(w, "overloaded", http.StatusServiceUnavailable)
				return
			}
		}
		res, err := http.Post(node, "application/json", bytes.NewReader(body))
		if err != nil {
			http.Error(w, "node down", http.StatusBadGateway)
			return
		}
		defer res.Body.Close()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(res.StatusCode)
		_, _ = io.Copy(w, res.Body)
	}))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

func (p *flakyProxy) seen() (parents, ids []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.parent...), append([]string(nil), p.reqID...)
}

// TestTracingRetriedCall: with a real OTLP/HTTP receiver and a real node behind two
// upstreams of which the first attempt fails, a client's call (its traceparent
// sampled, its X-Request-Id given) arrives as a server span, child of the client's,
// with one span per attempt under it (first, failed; retry, ok); each attempt's request
// carried the attempt's own traceparent and the client's request id; a batch's
// elements are children of the batch's span; a websocket call is a child of the
// upgrade's traceparent. No attribute holds the key, the params or an address.
func TestTracingRetriedCall(t *testing.T) {
	node := testnode.Start(t)
	recv := startOTLPReceiver(t)
	var failed atomic.Bool
	a, b := startFlakyProxy(t, node.HTTPURL, &failed), startFlakyProxy(t, node.HTTPURL, &failed)
	// Websocket calls go to the node itself (up-a's ws): a frame cannot fail on cue here.
	file := accessConfig("{}") + "upstreams:\n  - name: up-a\n    http: " + a.URL + "\n    ws: " + node.WSURL +
		"\n  - name: up-b\n    http: " + b.URL + "\n"
	path := writeFile(t, t.TempDir(), "gateway.yaml", file)
	gw := startGateway(t, append([]string{"-config", path, "-trace-exporter", "otlp-http", "-trace-endpoint", recv.URL,
		"-trace-sample-ratio", "0", "-log-requests"}, fastHealth...)...)
	gw.waitUpstreams(t)

	const account = "0x00000000000000000000000000000000000000ab"
	getBalance := func(id int) string {
		return `{"jsonrpc":"2.0","id":` + string(rune('0'+id)) + `,"method":"eth_getBalance","params":["` + account + `","latest"]}`
	}
	cases := []struct {
		name, traceID, body string
		ws                  bool
		check               func(t *testing.T, spans []*tracepb.Span, root *tracepb.Span)
		want                int // spans of the trace
	}{
		{name: "retried call", traceID: "4bf92f3577b34da6a3ce929d0e0e4736", body: getBalance(1), want: 3,
			check: func(t *testing.T, spans []*tracepb.Span, root *tracepb.Span) {
				outcomes := map[string]string{}
				for _, s := range spans {
					if s != root && bytes.Equal(s.ParentSpanId, root.SpanId) {
						outcomes[attr(s, "attempt")] = attr(s, "outcome")
					}
				}
				if outcomes["first"] == "" || outcomes["first"] == "ok" || outcomes["retry"] != "ok" {
					t.Fatalf("attempts under the call's span: %v, want a failed first and an ok retry", outcomes)
				}
				// Each attempt's request carried its own span as parent, and the request id.
				pa, ia := a.seen()
				pb, ib := b.seen()
				parents, ids := append(pa, pb...), append(ia, ib...)
				if len(parents) != 2 {
					t.Fatalf("upstreams got %d eth_getBalance, want 2", len(parents))
				}
				for i, p := range parents {
					if !strings.HasPrefix(p, "00-4bf92f3577b34da6a3ce929d0e0e4736-") || strings.Contains(p, hex.EncodeToString(root.SpanId)) ||
						ids[i] != "trace-test-1" {
						t.Errorf("upstream request %d: traceparent %q, X-Request-Id %q", i, p, ids[i])
					}
				}
			}},
		{name: "batch", traceID: "5bf92f3577b34da6a3ce929d0e0e4736", body: "[" + getBalance(1) + "," + getBalance(2) + "]", want: 4,
			check: func(t *testing.T, spans []*tracepb.Span, root *tracepb.Span) {
				elements := 0
				for _, s := range spans {
					if bytes.Equal(s.ParentSpanId, root.SpanId) && s.Name == "eth_getBalance" {
						elements++
					}
				}
				if root.Name != "batch" || elements != 2 {
					t.Fatalf("batch span %q with %d element spans, want batch with 2", root.Name, elements)
				}
			}},
		{name: "websocket call", traceID: "6bf92f3577b34da6a3ce929d0e0e4736", body: getBalance(3), ws: true, want: 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			parent := "00-" + tc.traceID + "-00f067aa0ba902b7-01"
			if tc.ws {
				hdr := http.Header{"traceparent": {parent}, "X-Request-Id": {"trace-test-1"}, "X-API-Key": {keyAlice}}
				conn, _, err := websocket.DefaultDialer.Dial(gw.WSURL, hdr)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				if err := conn.WriteMessage(websocket.TextMessage, []byte(tc.body)); err != nil {
					t.Fatal(err)
				}
				_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
				if _, msg, err := conn.ReadMessage(); err != nil || !bytes.Contains(msg, []byte(`"result"`)) {
					t.Fatalf("websocket answer %s, %v", msg, err)
				}
			} else {
				req, _ := http.NewRequest("POST", gw.URL+"/v3/"+keyAlice, strings.NewReader(tc.body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("traceparent", parent)
				req.Header.Set("X-Request-Id", "trace-test-1")
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				ans, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode != 200 || !bytes.Contains(ans, []byte(`"result"`)) || res.Header.Get("X-Request-Id") != "trace-test-1" {
					t.Fatalf("answer %d %s, X-Request-Id %q", res.StatusCode, ans, res.Header.Get("X-Request-Id"))
				}
			}
			var spans []*tracepb.Span
			waitFor(t, "the trace's spans at the receiver", func() bool {
				spans = recv.trace(tc.traceID)
				return len(spans) >= tc.want
			})
			var root *tracepb.Span
			for _, s := range spans {
				if hex.EncodeToString(s.ParentSpanId) == "00f067aa0ba902b7" {
					if root != nil {
						t.Fatalf("two spans are children of the client's")
					}
					root = s
				}
				for _, kv := range s.Attributes {
					v := kv.Value.GetStringValue()
					if strings.Contains(v, keyAlice) || strings.Contains(v, account[2:]) || strings.Contains(v, "127.0.0.1") ||
						strings.Contains(v, "://") {
						t.Errorf("span %q: attribute %s=%q holds a key, params or an address", s.Name, kv.Key, v)
					}
				}
			}
			if root == nil || attr(root, "network") == "" || attr(root, "request_id") != "trace-test-1" {
				t.Fatalf("no span of the call under the client's, with network and request id: %v", spans)
			}
			if tc.check != nil {
				tc.check(t, spans, root)
			}
		})
	}
	// An unsampled caller's traceparent goes upstream as it came, and no span is made.
	t.Run("unsampled parent passed on", func(t *testing.T) {
		const parent = "00-7bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
		req, _ := http.NewRequest("POST", gw.URL+"/v3/"+keyAlice, strings.NewReader(getBalance(4)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("traceparent", parent)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		pa, _ := a.seen()
		pb, _ := b.seen()
		got := 0
		for _, p := range append(pa, pb...) {
			if p == parent {
				got++
			}
		}
		if res.StatusCode != 200 || got != 1 {
			t.Fatalf("status %d; %d upstream requests carried %q, want 1", res.StatusCode, got, parent)
		}
		if n := len(recv.trace("7bf92f3577b34da6a3ce929d0e0e4736")); n != 0 {
			t.Fatalf("%d spans of an unsampled trace", n)
		}
	})
	// The request lines name the request id.
	waitFor(t, "a request line with the request id", func() bool { return strings.Contains(gw.log.String(), `"request_id":"trace-test-1"`) })
}
