package testnode

import (
	"strings"
	"testing"
)

// The harness itself: a node starts, mines a transaction, and comes back after a crash
// on the same ports.
func TestNodeLifecycle(t *testing.T) {
	n := Start(t)
	if got := string(n.Call(t, "eth_chainId")); got != `"0x539"` {
		t.Fatalf("eth_chainId = %s, want 0x539 (1337)", got)
	}
	hash, block := n.SendTx(t)
	if !strings.HasPrefix(hash, "0x") || !strings.HasPrefix(block, "0x") {
		t.Fatalf("SendTx = %q, %q", hash, block)
	}
	url := n.HTTPURL
	n.Restart(t)
	if n.HTTPURL != url {
		t.Fatalf("restart moved the node: %s -> %s", url, n.HTTPURL)
	}
	if got := string(n.Call(t, "eth_chainId")); got != `"0x539"` {
		t.Fatalf("after restart eth_chainId = %s", got)
	}
}
