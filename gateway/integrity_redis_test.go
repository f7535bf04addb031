package gateway

import (
	"fmt"
	"testing"

	"github.com/infura-gateway/infura-gateway/gateway/internal/redistest"
)

// The shared tier (Redis) holds only right answers: replica A, whose preferred
// upstream answers the wrong block, shares what the honest one answered; replica B,
// asking for the first time, gets the right block from Redis.
func TestWrongAnswerNeverShared(t *testing.T) {
	rs := redistest.Start(t)
	liar := startFakeUpstream(t, fakeRespond(liarAnswers))
	honest := startFakeUpstream(t, fakeRespond(honestAnswers))
	liar.head.Store(5000)
	honest.head.Store(5000)
	start := func(ups string) *testGateway {
		file := sharedOpen + "upstreams:\n" + ups
		gw := startGateway(t, "-config", writeFile(t, t.TempDir(), "gw.yaml", file), "-redis-addr", rs.Addr)
		gw.waitUpstreams(t)
		waitFor(t, "Redis usable", func() bool { return gw.metric(t, `gateway_redis_up{client="redis"}`) == 1 })
		waitFor(t, "the shared tier's chain", func() bool { return gw.metric(t, "gateway_sharedcache_ready") == 1 })
		waitFor(t, "the head", func() bool { return gw.srv.defaultNetwork().Heads.Number() >= 5000 })
		return gw
	}
	a := start(fmt.Sprintf("  - {name: liar, http: %q, weight: 100}\n  - {name: honest, http: %q}\n", liar.HTTPURL, honest.HTTPURL))
	b := start(fmt.Sprintf("  - {name: honest, http: %q}\n", honest.HTTPURL))
	blocks := []uint64{0x20, 0x22, 0x24}
	for _, n := range blocks {
		want := `{"jsonrpc":"2.0","id":1,"result":` + fakeBlock(n) + `}`
		if _, _, body := getCached(t, "POST", a.URL+"/", rpcBody("eth_getBlockByNumber", fmt.Sprintf(`["0x%x",false]`, n))); body != want {
			t.Fatalf("replica A, block %#x: %s\nwant %s", n, body, want)
		}
	}
	waitFor(t, "the blocks stored in Redis", func() bool { return a.metric(t, "gateway_sharedcache_sets_total") >= float64(len(blocks)) })
	settled(t, a)
	for _, n := range blocks {
		want := `{"jsonrpc":"2.0","id":1,"result":` + fakeBlock(n) + `}`
		if _, _, body := getCached(t, "POST", b.URL+"/", rpcBody("eth_getBlockByNumber", fmt.Sprintf(`["0x%x",false]`, n))); body != want {
			t.Fatalf("replica B, block %#x: %s\nwant the right block", n, body)
		}
	}
	if v := b.metric(t, `gateway_sharedcache_requests_total{result="hit"}`); v < float64(len(blocks)) {
		t.Fatalf("replica B read %v values from Redis, want %d: its answers did not come from the shared tier", v, len(blocks))
	}
	if v := a.metric(t, `gateway_upstream_wrong_answers_total{upstream="liar",check="block_number"}`); v == 0 {
		t.Fatal("the liar was never asked: the test proves nothing")
	}
}
