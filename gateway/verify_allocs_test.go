//go:build !race

package gateway

import (
	"strings"
	"testing"
)

// TestCheckedAnswerAllocatesNothing: the integrity checks (upstream/integrity.go) read
// a block's number, a receipt's hash and every log's block with the byte scanners:
// a checked answer costs no allocation either. (eth_getLogs: TestSmallGetLogsAllocatesNothing
// below; a split one allocates its chunks.)
func TestCheckedAnswerAllocatesNothing(t *testing.T) {
	// One upstream, one fixed answer every check passes on: a block (number, hash)
	// that also carries the transactionHash of the receipt asked for. One server:
	// each one's background adds to what later allocation counts see.
	answer := `{"jsonrpc":"2.0","id":1,"result":{"number":"0xc6af55","hash":"` + fakeHash(1) + `","transactionHash":"` +
		fakeHash(1) + `","parentHash":"` + fakeHash(0) + `","transactions":[],"size":"0x220"}}`
	s := newDirectServerAnswering(t, answer, "-cache=false")
	for _, c := range []struct{ name, method, uri, body string }{
		{"POST /blockbynumber", "POST", "/blockbynumber", `{"block":"0xc6af55","txdetails":"true"}`},
		{"POST / eth_getBlockByNumber", "POST", "/", `{"jsonrpc":"2.0","id":1,"method":"eth_getBlockByNumber","params":["0xc6af55",false]}`},
		{"POST / eth_getBlockByHash", "POST", "/", `{"jsonrpc":"2.0","id":1,"method":"eth_getBlockByHash","params":["` + fakeHash(1) + `",false]}`},
		{"POST / eth_getTransactionReceipt", "POST", "/", `{"jsonrpc":"2.0","id":1,"method":"eth_getTransactionReceipt","params":["` + fakeHash(1) + `"]}`},
	} {
		d := newDirectCall(s, c.method, c.uri, c.body)
		for range 100 {
			d.run(t)
		}
		if got := string(d.ctx.Response.Body()); !strings.Contains(got, `"result":{`) {
			t.Fatalf("%s: %s; want the upstream's answer", c.name, got)
		}
		if n := allocsPerRequest(func() { d.run(t) }); n != 0 {
			t.Errorf("%s: %v allocations per checked request, want 0", c.name, n)
		}
	}
}

// TestSmallGetLogsAllocatesNothing: an eth_getLogs within one chunk goes on as any call
// (gateway/logs Splitter.Small): parsed in place, checked in place, no allocation.
func TestSmallGetLogsAllocatesNothing(t *testing.T) {
	s := newDirectServerAnswering(t, `{"jsonrpc":"2.0","id":1,"result":[]}`, "-cache=false")
	d := newDirectCall(s, "POST", "/", `{"jsonrpc":"2.0","id":1,"method":"eth_getLogs","params":[{"fromBlock":"0x10","toBlock":"0x20"}]}`)
	for range 100 {
		d.run(t)
	}
	if got := string(d.ctx.Response.Body()); got != `{"jsonrpc":"2.0","id":1,"result":[]}` {
		t.Fatalf("eth_getLogs: %s; want the upstream's answer", got)
	}
	if n := allocsPerRequest(func() { d.run(t) }); n != 0 {
		t.Errorf("a small eth_getLogs: %v allocations per request, want 0", n)
	}
}
