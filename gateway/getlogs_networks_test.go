package gateway

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
)

// A network whose upstream holds its eth_getLogs chunks (a provider that stalls them:
// the in-process fake, as geth cannot be made to stall one method) must not hold the
// chunks of another network: network a's split query, over a real geth node, is
// answered as geth answers it while b's chunks are all held. Before, process_parallel
// was one pool for every network: b's held chunks took it all and a's query waited for
// a slot until its deadline (504).
func TestGetLogsNetworksDoNotShareChunkSlots(t *testing.T) {
	node := testnode.Start(t, testnode.Period(0))
	emitter := node.DeployEmitter(t)
	var last uint64
	for range 6 {
		_, last = node.Emit(t, emitter)
	}
	hold := make(chan struct{})
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(hold) }) }
	defer release()
	stalling := startFakeUpstream(t, fakeRespond(func(r fakeRequest) fakeAnswer {
		if r.Method == "eth_getLogs" {
			<-hold
		}
		return fakeAnswer{}
	}))
	file := fmt.Sprintf(`logs: {split_range: 2, parallel: 2, process_parallel: 2}
networks:
  - name: a
    chain_id: 1337
    upstreams: [{name: geth, http: %q}]
  - name: b
    chain_id: 1
    upstreams: [{name: stalling, http: %q}]
`, node.HTTPURL, stalling.HTTPURL)
	gw := startGateway(t, "-config", writeFile(t, t.TempDir(), "gateway.yaml", file), "-upstream-ws", "off", "-upstream-timeout", "60s")
	gw.waitUpstreams(t)
	waitFor(t, "network a's served head", func() bool {
		for _, n := range gw.srv.nets.List() {
			if n.Name == "a" {
				return n.Router.ServedHead() >= last
			}
		}
		return false
	})

	// Network b: a query of 9 chunks, two at once, each held by its upstream.
	bDone := make(chan struct{})
	go func() {
		defer close(bDone)
		_, _, _ = tryDo("POST", gw.URL+"/b/", `{"jsonrpc":"2.0","id":1,"method":"eth_getLogs","params":[{"fromBlock":"0x0","toBlock":"0x10"}]}`)
	}()
	waitFor(t, "network b's chunks held by its upstream", func() bool { return stalling.count("eth_getLogs") >= 2 })

	// Network a: a split query, answered while b's chunks are held (the client gives it
	// 20 s; unbounded, it waited for b's 60 s deadline).
	req := fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"eth_getLogs","params":[{"fromBlock":"0x0","toBlock":"0x%x","address":%q}]}`, last, emitter)
	want := strings.TrimSpace(string(node.Raw(t, req)))
	if !strings.Contains(want, `"result":[{`) {
		t.Fatalf("geth found no logs: %s", want)
	}
	client := &http.Client{Timeout: 20 * time.Second}
	resp, err := client.Post(gw.URL+"/a/", "application/json", strings.NewReader(req))
	if err != nil {
		t.Fatalf("network a's eth_getLogs while network b's chunks are held: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got := strings.TrimSpace(string(body)); got != want {
		t.Fatalf("network a: %d %.300s\nwant %.300s", resp.StatusCode, got, want)
	}
	release()
	<-bDone
}
