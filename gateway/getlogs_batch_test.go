package gateway

import (
	"fmt"
	"strings"
	"testing"

	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
)

// eth_getLogs queries within one chunk in a batch go in the batch's one exchange with
// the upstream, as a single such query goes on as any call: the answer is geth's own
// answer to the batch, byte for byte, and the splitter answers none of them. Before,
// every eth_getLogs of a batch went to the splitter, one after another, each its own
// upstream round trip: a batch of N took N round trips, and behind a provider 1 s away
// a batch of 6 queries with a 3 s deadline had its last 3 answered "upstream timed out".
// Queries the splitter must split still are, and a small one the node refuses for a cap
// the gateway did not know is answered in chunks (TestGetLogsSmallQueryFallsBackOnACap,
// in a batch).
func TestBatchSmallGetLogsGoTogether(t *testing.T) {
	node := testnode.Start(t, testnode.Period(0))
	emitter := node.DeployEmitter(t)
	var last uint64
	for range 6 {
		_, last = node.Emit(t, emitter)
	}
	file := fmt.Sprintf("upstreams:\n  - {name: geth, http: %q, ws: %q}\nlogs: {split_range: 2}\n", node.HTTPURL, node.WSURL)
	gw := startGateway(t, "-config", writeFile(t, t.TempDir(), "gateway.yaml", file), "-cache=false")
	gw.waitUpstreams(t)
	waitFor(t, "the served head", func() bool { return gw.srv.nets.List()[0].Router.ServedHead() >= last })
	var elems []string
	for b := uint64(0); b+1 <= last; b += 2 { // [0,1], [2,3], ...: each within one chunk of 2
		elems = append(elems, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"eth_getLogs","params":[{"fromBlock":"0x%x","toBlock":"0x%x","address":%q}]}`, b, b, b+1, emitter))
	}
	elems = append(elems, `{"jsonrpc":"2.0","id":"n","method":"eth_blockNumber","params":[]}`)
	elems = append(elems, fmt.Sprintf(`{"jsonrpc":"2.0","id":"wide","method":"eth_getLogs","params":[{"fromBlock":"0x0","toBlock":"0x%x","address":%q}]}`, last, emitter))
	batch := "[" + strings.Join(elems[:len(elems)-2], ",") + "]"
	want := strings.TrimSpace(string(node.Raw(t, batch)))
	if !strings.Contains(want, `"result":[{`) {
		t.Fatalf("geth found no logs: %s", want)
	}
	before := gw.metric(t, "gateway_logs_split_queries_total")
	if _, body := do(t, "POST", gw.URL+"/", batch); strings.TrimSpace(string(body)) != want {
		t.Fatalf("batch: %.400s\nwant %.400s", body, want)
	}
	if n := gw.metric(t, "gateway_logs_split_queries_total") - before; n != 0 {
		t.Fatalf("%v of the batch's %d one-chunk queries answered by the splitter, one round trip each; want 0", n, len(elems)-2)
	}
	// The wide query of a batch is still split, and answered as geth answers it.
	wide := elems[len(elems)-1]
	wantWide := strings.TrimSpace(string(node.Raw(t, wide)))
	_, body := do(t, "POST", gw.URL+"/", "["+elems[0]+","+wide+"]")
	if got := string(body); !strings.HasSuffix(strings.TrimSpace(got), ","+wantWide+"]") {
		t.Fatalf("batch with a wide query: %.400s\nwant it to end with %.300s", got, wantWide)
	}
	if n := gw.metric(t, "gateway_logs_split_queries_total") - before; n != 1 {
		t.Fatalf("%v queries split, want the wide one", n)
	}
}

// A one-chunk eth_getLogs of a batch that the node refuses for a cap the gateway did not
// know is answered in chunks, as a single call is.
func TestBatchSmallGetLogsFallsBackOnACap(t *testing.T) {
	const head = 20223
	fake := startFakeUpstream(t, fakeRespond(cappedLogs(1000, head)))
	fake.head.Store(head)
	gw := startGateway(t, fake.args("-cache=false")...)
	gw.waitUpstreams(t)
	waitFor(t, "the served head", func() bool { return gw.srv.nets.List()[0].Router.ServedHead() == head })
	_, body := do(t, "POST", gw.URL+"/", `[{"jsonrpc":"2.0","id":7,"method":"eth_getLogs","params":[{"fromBlock":"0x64","toBlock":"0x257"}]},`+
		`{"jsonrpc":"2.0","id":8,"method":"eth_getLogs","params":[{"fromBlock":"0x2710","toBlock":"0x3a97"}]}]`)
	if got, want := string(body), "["+referenceLogs("7", 100, 599)+","+referenceLogs("8", 10000, 14999)+"]"; got != want {
		t.Fatalf("batch: %.300s\nwant %.300s", got, want)
	}
}
