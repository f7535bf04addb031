package failover_test

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/internal/rpcspy"
	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
	"github.com/infura-gateway/infura-gateway/gateway/internal/toxiproxy"
)

// Issue 19, F1, against geth: a client's calls never get a healthy primary banned or
// marked slow. Ten eth_getLogs answering over the byte budget, four eth_estimateGas
// the node takes 2.5 s over (slow_min is 1 s) and four past the upstream timeout,
// batches of eth_call answering over the budget, all at once on both primaries; then
// 40 ordinary reads all reach the primaries, and /status shows no ban. The spies
// answer the large calls in the node's place and hold the slow ones before geth
// answers them (a dev chain has neither megabytes of logs nor slow execution).
func TestClientCallsNeverBanPrimaries(t *testing.T) {
	node := testnode.Start(t)
	tox := toxiproxy.Start(t)
	a := newChain(t, tox, "a", "primary", node)
	b := newChain(t, tox, "b", "primary", node)
	c := newChain(t, tox, "c", "fallback", node)
	// A small budget: megabytes would only load the machine (the spies answer them).
	const budget = 64 << 10
	big := json.RawMessage(`["0x` + strings.Repeat("ab", budget) + `"]`) // twice the budget
	third := json.RawMessage(`"0x` + strings.Repeat("cd", budget/5) + `"`)
	fault := func(m string) *rpcspy.Fault {
		switch m {
		case "eth_getLogs":
			return &rpcspy.Fault{Result: big}
		case "eth_call":
			return &rpcspy.Fault{Result: third}
		}
		return nil
	}
	for _, ch := range []*chain{a, b, c} {
		ch.Spy.SetFault(fault)
	}
	g := startGateway(t, []*chain{a, b, c}, "", "-cache=false", "-max-response-body", fmt.Sprint(budget))
	from := node.DevAccount(t)

	// Two waves, each all at once; the second holds eth_estimateGas past the timeout.
	wave := func(estimateDelay time.Duration, estimateWant string) {
		t.Helper()
		for _, ch := range []*chain{a, b, c} {
			ch.Spy.SetFault(func(m string) *rpcspy.Fault {
				if m == "eth_estimateGas" {
					return &rpcspy.Fault{Delay: estimateDelay} // then geth answers it
				}
				return fault(m)
			})
		}
		var wg sync.WaitGroup
		send := func(body, want string) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				code, ans, err := postRaw(g.URL+"/", body)
				if err != nil || !strings.Contains(string(ans), want) {
					t.Errorf("%.200s: %d %.200s %v (want %s)", body, code, ans, err, want)
				}
			}()
		}
		for i := range 10 {
			send(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"eth_getLogs","params":[{"fromBlock":"0x0","toBlock":"latest"}]}`, i), "-32005")
		}
		for i := range 4 {
			call := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"eth_call","params":[{"to":"%s"},"latest"]}`, i, from)
			send(`[`+call+`,`+call+`,`+call+`]`, "-32005")
		}
		for i := range 4 {
			send(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"eth_estimateGas","params":[{"from":"%s","to":"%s"}]}`, i, from, from), estimateWant)
		}
		wg.Wait()
	}
	wave(2500*time.Millisecond, `"result"`) // slow: over slow_min (1 s), under the timeout
	wave(upstreamTimeout+2*time.Second, `"error"`)
	for _, ch := range []*chain{a, b, c} {
		ch.Spy.SetFault(nil)
	}

	// Reviews judge latency every 100 ms: let several run. The idle fallback is probed
	// from the review loop every probe interval, so its probes count reviews (unless it
	// is banned itself: then the checks below say so).
	probes := c.Spy.Count("eth_blockNumber")
	waitFor(t, "three more probes of the fallback", 30*time.Second, func() bool {
		return c.Spy.Count("eth_blockNumber") >= probes+3 || g.upstream(t, "c").State == "banned"
	})

	t0 := time.Now()
	for i := range 40 {
		body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"eth_getBalance","params":["%s","latest"]}`, i, from)
		if code, ans, err := postRaw(g.URL+"/", body); err != nil || code != 200 || !strings.Contains(string(ans), `"result"`) {
			t.Fatalf("read %d: %d %s %v", i, code, ans, err)
		}
	}
	count := func(ch *chain) int {
		n := 0
		for _, call := range ch.Spy.CallsSince(t0) {
			if call.Method == "eth_getBalance" {
				n++
			}
		}
		return n
	}
	if onA, onB, onC := count(a), count(b), count(c); onA+onB != 40 || onC != 0 {
		t.Errorf("40 reads after the hostile calls: a %d, b %d, fallback %d; want all on the primaries", onA, onB, onC)
	}
	for _, u := range g.status(t).Upstreams {
		if u.State != "healthy" || u.Bans != 0 {
			t.Errorf("upstream %s: %s (%s), %d bans, last error %q: a client's calls marked it", u.Name, u.State, u.Reason, u.Bans, u.LastError)
		}
	}
}

// postRaw posts a JSON-RPC body and returns the status and the answer.
func postRaw(url, body string) (int, []byte, error) {
	resp, err := adminClient.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	ans, err := io.ReadAll(resp.Body)
	return resp.StatusCode, ans, err
}
