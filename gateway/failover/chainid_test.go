package failover_test

import (
	"bytes"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/internal/rpcspy"
	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
	"github.com/infura-gateway/infura-gateway/internal/syncbuf"
	"github.com/infura-gateway/infura-gateway/proto"
	"github.com/infura-gateway/infura-gateway/upstream"
)

// otherChainID is the chain of the node listed by mistake: a real geth --dev on a
// genesis of its own (testnode.ChainID).
const otherChainID = 31337

// chainRouter is a router for chain 1337 over right (a geth --dev node) and wrong (a
// node of otherChainID), each behind a spy, started. The wrong one has the larger
// weight: were it eligible, it would draw most calls.
func chainRouter(t *testing.T, logs io.Writer) (r *upstream.Router, right, wrong *rpcspy.Spy, reg *upstream.Registry) {
	t.Helper()
	dev := testnode.Start(t)
	other := testnode.Start(t, testnode.ChainID(otherChainID))
	right = rpcspy.Start(t, dev.HTTPURL, dev.WSURL)
	wrong = rpcspy.Start(t, other.HTTPURL, other.WSURL)
	reg = upstream.NewRegistry()
	r, err := upstream.NewRouter(upstream.RouterConfig{
		Health: upstream.HealthConfig{Window: healthWindow, MinRequests: 10, MaxErrorRate: 0.5, MaxFailures: 3,
			MaxLag: 5, SlowFactor: 5, SlowMin: time.Second, BanMin: banMin, BanMax: banMax, Readmit: 2},
		Pool: upstream.PoolConfig{MaxConns: 16, MaxConnWaitTimeout: upstreamTimeout, DialTimeout: time.Second,
			MaxIdleConnDuration: time.Minute, MaxResponseBodySize: 1 << 20},
		Mux: upstream.MuxConfig{Conns: 2, QueueSize: 1024, ReadLimit: 32 << 20, PingInterval: 30 * time.Second,
			PongTimeout: 30 * time.Second, DialTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second,
			BackoffMin: 50 * time.Millisecond, BackoffMax: time.Second, RequestTimeout: upstreamTimeout},
		Retries: 2, ProbeInterval: probeInterval, HeadPoll: time.Second, ReviewInterval: reviewInterval,
		Registry: reg, Logger: slog.New(slog.NewTextHandler(logs, nil)),
		ChainID: testnode.DevChainID, ChainWait: 30 * time.Second,
	}, []upstream.Spec{
		{Name: "dev", HTTPURL: right.URL, WSURL: right.WSURL},
		{Name: "other", HTTPURL: wrong.URL, WSURL: wrong.WSURL, Weight: 5},
	})
	if err != nil {
		t.Fatal(err)
	}
	r.Start()
	t.Cleanup(r.Close)
	return r, right, wrong, reg
}

func statusOf(r *upstream.Router, name string) upstream.UpstreamStatus {
	for _, u := range r.Status().Upstreams {
		if u.Name == name {
			return u
		}
	}
	return upstream.UpstreamStatus{}
}

type nopSink struct{ replies chan []byte }

func (s nopSink) Reply(msg []byte) { s.replies <- bytes.Clone(msg) }
func (nopSink) Notify([]byte)      {}

// An upstream of another chain listed by mistake serves nothing: 0 of 100 calls (half
// over HTTP, half over the websockets) reach it, every answer is the right chain's,
// a subscription is carried by the right one, and Status, the metrics and one log
// line say why.
func TestWrongChainUpstreamServesNothing(t *testing.T) {
	var logs syncbuf.Buffer
	r, right, wrong, reg := chainRouter(t, &logs)
	waitFor(t, "the dev upstream's websocket", 60*time.Second, func() bool {
		return r.Upstreams()[0].Mux().Up()
	})

	var req proto.Request
	req.Set([]byte("net_version"), nil)
	for i := range 100 {
		caller := r.HTTP()
		if i%2 == 1 {
			caller = r.WS()
		}
		ans, err := caller.Call(nil, &req, []byte("7"), time.Now().Add(upstreamTimeout))
		if err != nil || string(ans) != `{"jsonrpc":"2.0","id":7,"result":"1337"}` {
			t.Fatalf("call %d: %s %v", i, ans, err)
		}
	}
	if n := wrong.Count("net_version"); n != 0 {
		t.Fatalf("the upstream of chain %d served %d of 100 calls", otherChainID, n)
	}
	if n := right.Count("net_version"); n != 100 {
		t.Fatalf("the upstream of chain 1337 served %d of 100 calls", n)
	}

	sink := nopSink{replies: make(chan []byte, 1)}
	r.Subscriptions().Join([]byte(`["newHeads"]`), []byte("1"), sink, time.Now().Add(upstreamTimeout))
	if reply := <-sink.replies; !strings.Contains(string(reply), `"result":"0x`) {
		t.Fatalf("newHeads: %s", reply)
	}
	if st := statusOf(r, "dev"); st.Subscriptions != 1 {
		t.Fatalf("the dev upstream carries %d subscriptions", st.Subscriptions)
	}
	if n := wrong.Count("eth_subscribe"); n != 0 {
		t.Fatalf("the upstream of chain %d got %d eth_subscribe", otherChainID, n)
	}

	st := statusOf(r, "other")
	if st.State != "wrong_chain" || st.ChainID != otherChainID || st.Subscriptions != 0 {
		t.Fatalf("status of the wrong upstream: state %q, chain id %d, subscriptions %d", st.State, st.ChainID, st.Subscriptions)
	}
	if st := statusOf(r, "dev"); st.State != "healthy" || st.ChainID != testnode.DevChainID {
		t.Fatalf("status of the right upstream: state %q, chain id %d", st.State, st.ChainID)
	}
	var metrics bytes.Buffer
	reg.WritePrometheus(&metrics)
	for _, want := range []string{`gateway_upstream_wrong_chain{upstream="other"} 1`, `gateway_upstream_wrong_chain{upstream="dev"} 0`,
		`gateway_upstream_chain_id{upstream="other"} 31337`} {
		if !strings.Contains(metrics.String(), want) {
			t.Fatalf("metrics lack %s:\n%s", want, metrics.String())
		}
	}
	if lines := logs.Filter("upstream answers another chain"); strings.Count(lines, "\n") != 1 {
		t.Fatalf("log lines about the wrong chain, want 1:\n%s", lines)
	}
}
