package socket

import (
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
	"github.com/infura-gateway/infura-gateway/upstream"
)

// Counting a websocket call is on every call's path: nothing allocated.
func TestWSCallMetricsAllocatesNothing(t *testing.T) {
	m := newCallMetrics(upstream.NewRegistry().With(`network="x"`))
	start := time.Now()
	if n := testing.AllocsPerRun(1000, func() {
		m.observe(200, start)
		m.observeErr(proto.ErrTimeout, start)
		m.observe(299, start) // "other"
		m.count(502)
	}); n != 0 {
		t.Fatalf("%v allocations per call", n)
	}
}

func TestSubscribeStatus(t *testing.T) {
	for _, tc := range []struct {
		msg  string
		want int
	}{
		{`{"jsonrpc":"2.0","id":1,"result":"0x1"}`, 200},
		{string(proto.AppendError(nil, []byte("1"), proto.ErrUnreachable)), 502},
		{string(proto.AppendError(nil, []byte(`"a"`), proto.ErrTimeout)), 502},
		{string(proto.AppendError(nil, nil, proto.ErrBadUpstream)), 502},
		// The upstream refused the client's params: passed on, as HTTP passes it with 200.
		{`{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"invalid params"}}`, 200},
		{`{"jsonrpc":"2.0","id":1,"error":{"message":"x","code":-32000}}`, 502},
		{`{"jsonrpc":"2.0","error":{"code":"bad"},"id":1}`, 200},
	} {
		if got := subscribeStatus([]byte(tc.msg)); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.msg, got, tc.want)
		}
	}
}

func FuzzErrorCode(f *testing.F) {
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"x"}}`))
	f.Add([]byte(`{"error":{"code":1e3}}`))
	f.Add([]byte(`{"error":[]}`))
	f.Add([]byte(`{"error":{"code":`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = errorCode(b)
		_ = subscribeStatus(b)
	})
}
