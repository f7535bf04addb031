package gateway

import (
	"testing"
	"time"
)

// A reload swaps a running network's per-method policy: before it, an eth_call that
// meets an upstream that never answers keeps the call's deadline less the retry reserve
// (-upstream-timeout 3s, -slow-min 1s: 2s) before going to the other upstream; after
// `methods: {eth_call: {timeout: 200ms}}` it goes there after 200ms.
func TestMethodPolicyFollowsReload(t *testing.T) {
	hole := startFakeUpstream(t, fakeRespond(func(r fakeRequest) fakeAnswer {
		return fakeAnswer{Stall: r.Method == "eth_call"}
	}))
	good := startFakeUpstream(t)
	// The hole is the only primary: every call is tried there first, then on the fallback.
	ups := "upstreams:\n  - name: hole\n    http: " + hole.HTTPURL + "\n  - name: good\n    http: " + good.HTTPURL + "\n    tier: fallback\n"
	dir := t.TempDir()
	path := writeFile(t, dir, "gateway.yaml", ups)
	gw := startGateway(t, "-config", path, "-cache=false", "-upstream-timeout", "3s", "-slow-min", "1s", "-upstream-ws", "off")
	gw.waitUpstreams(t)
	call := func() time.Duration {
		t.Helper()
		start := time.Now()
		code, body := do(t, "POST", gw.URL+"/", `{"jsonrpc":"2.0","id":1,"method":"eth_call","params":[{"to":"0x01"},"latest"]}`)
		if a := decodeAnswer(t, body); code != 200 || a.Error != nil {
			t.Fatalf("eth_call: %d %s", code, body)
		}
		return time.Since(start)
	}
	if took := call(); took < 1500*time.Millisecond {
		t.Fatalf("before the reload the attempt on the hole ended after %v: a policy is in effect already", took)
	}
	writeFile(t, dir, "gateway.yaml", "methods:\n  eth_call: {timeout: 200ms}\n"+ups)
	if err := gw.srv.ReloadConfig(); err != nil {
		t.Fatal(err)
	}
	if took := call(); took >= 1500*time.Millisecond {
		t.Fatalf("after the reload the attempt on the hole took %v: the 200ms timeout did not apply", took)
	}
	// A send asking to be retried is refused; the running policy stays.
	writeFile(t, dir, "gateway.yaml", "methods:\n  eth_sendRawTransaction: {retries: 2}\n"+ups)
	if err := gw.srv.ReloadConfig(); err == nil {
		t.Fatal("a reload with a retried send was accepted")
	}
	if took := call(); took >= 1500*time.Millisecond {
		t.Fatalf("after a refused reload the attempt on the hole took %v", took)
	}
}
