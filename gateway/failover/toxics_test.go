package failover_test

import (
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/internal/loadgen"
	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
	"github.com/infura-gateway/infura-gateway/gateway/internal/toxiproxy"
)

// Every primary impaired its own way at once, under load over both transports: one
// slow (200 ± 100 ms), one on a thin line (16 KB/s each way per connection), one
// whose connections are reset half a second after they start carrying data, then
// blackholed. Clients see no error and no head going backwards; the fallback gets no
// client call while the slow primary stays healthy; once the toxics are gone every
// primary is healthy again.
func TestEveryPrimaryImpairedUnderLoad(t *testing.T) {
	node := testnode.Start(t)
	tox := toxiproxy.Start(t)
	slow := newChain(t, tox, "slow", "primary", node)
	thin := newChain(t, tox, "thin", "primary", node)
	flaky := newChain(t, tox, "flaky", "primary", node)
	fallback := newChain(t, tox, "fallback", "fallback", node)
	g := startGateway(t, []*chain{slow, thin, flaky, fallback}, "", "-cache=false")

	overHTTP := loadgen.Start(t, loadgen.Config{URL: g.URL + "/", Workers: 6, Rate: 120, Timeout: 30 * time.Second, ChainID: "0x539"})
	overWS := loadgen.Start(t, loadgen.Config{URL: g.WSURL, Workers: 3, Rate: 60, Timeout: 30 * time.Second, ChainID: "0x539", Seed: 2})
	overHTTP.WaitRequests(t, 100, 30*time.Second)

	slow.Tox.Latency(200, 100)
	thin.Tox.Bandwidth(16)
	flaky.Tox.ResetPeer(500)
	overHTTP.WaitRequests(t, 250, 60*time.Second)
	overWS.WaitRequests(t, 120, 60*time.Second)
	states := func(when string) {
		for _, u := range g.status(t).Upstreams {
			t.Logf("%s: %s %s (%s) head %d, latency %.1fms, p90 %.0fms, %d bans, error rate %.2f", when, u.Name, u.State, u.Reason,
				u.Head, u.LatencyMS, u.LatencyP90, u.Bans, u.ErrorRate)
		}
	}
	states("impaired")

	flaky.Tox.Clear()
	flaky.Tox.Timeout(0)
	overHTTP.WaitRequests(t, 250, 60*time.Second)
	overWS.WaitRequests(t, 120, 60*time.Second)
	states("flaky blackholed")

	for _, c := range []*chain{slow, thin, flaky} {
		c.Tox.Clear()
	}
	healed := time.Now()
	waitFor(t, "every primary healthy again", 3*banMax+10*time.Second, func() bool {
		for _, u := range g.status(t).Upstreams {
			if u.State != "healthy" {
				return false
			}
		}
		return true
	})
	t.Logf("every primary healthy %v after the toxics went", time.Since(healed).Round(time.Millisecond))
	overHTTP.WaitRequests(t, 100, 60*time.Second)
	for _, l := range []*loadgen.Load{overHTTP, overWS} {
		r := l.Stop()
		t.Logf("%s", r)
		if err := r.Check(); err != nil {
			t.Errorf("clients saw: %v", err)
		}
		if g := r.Regressions(loadgen.SourceAny); len(g) > 0 {
			t.Errorf("the head went backwards across eth_blockNumber and the latest block %d times, first: %s", len(g), g[0])
		}
	}
	client, upkeep := clientCalls(fallback.Spy.Calls())
	if len(client) > 0 {
		t.Errorf("the fallback got %d client calls (%s)", len(client), rpcspyMethods(client))
	}
	checkUpkeep(t, "fallback", upkeep, upstreamSockets, g.upstream(t, "fallback").Bans)
	for _, c := range []*chain{slow, thin, flaky} {
		calls, _ := clientCalls(c.Spy.Calls())
		t.Logf("%s served %d client calls", c.Name, len(calls))
	}
}
