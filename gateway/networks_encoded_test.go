package gateway

import (
	"strings"
	"testing"
)

// A path whose network segment hides a separator in percent-encoding (/a%2F..%2Fb/ is
// /b/ once decoded) is refused: a proxy in front reads network a's prefix there, and
// the gateway must not serve it from b's node (nor a's: the path is ambiguous).
func TestNetworkEncodedSeparatorRefused(t *testing.T) {
	upA, upB := startFakeUpstream(t), startFakeUpstream(t) // both answer chain id 0x1
	file := networksAB(1, upA.HTTPURL, upA.WSURL, upB.HTTPURL, upB.WSURL, "")
	gw := startGateway(t, "-config", writeFile(t, t.TempDir(), "gateway.yaml", file), "-cache=false")
	gw.waitUpstreams(t)
	const balance = `{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["0x0000000000000000000000000000000000000001","latest"]}`
	for _, p := range []string{"/a%2F..%2Fb/", "/a%2f..%2fbee/", "/%2e%2e/b/", "/a/%2E%2E/b/", "/a%5C..%5Cb/", "/b%2F"} {
		code, _, body := post(t, gw.URL+p, balance, nil)
		if code != 400 || !strings.Contains(body, `"code":-32600`) || !strings.Contains(body, "percent-encoded") {
			t.Fatalf("POST %s: %d %s, want 400 with a JSON-RPC -32600 error", p, code, body)
		}
	}
	if a, b := upA.count("eth_getBalance"), upB.count("eth_getBalance"); a != 0 || b != 0 {
		t.Fatalf("encoded paths reached the upstreams: a %d, b %d times", a, b)
	}
	// Encoded letters are still the letters, and plain paths are served.
	for p, up := range map[string]*fakeUpstream{"/%62/": upB, "/a/": upA} {
		before := up.count("eth_getBalance")
		if code, _, body := post(t, gw.URL+p, balance, nil); code != 200 || up.count("eth_getBalance") != before+1 {
			t.Fatalf("POST %s: %d %s, not served by its network's upstream", p, code, body)
		}
	}
}
