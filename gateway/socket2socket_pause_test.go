package gateway

import (
	"strings"
	"testing"
)

// A client whose reads are paused (its queue is full of what it is owed) for longer
// than two ping intervals, and which answers every ping meanwhile, is not closed as a
// silent client once its reads resume: README, "one silent for two intervals is
// closed". The pause here is a call held upstream until -upstream-timeout (5 s), with
// -ws-client-queue 1 and -ws-ping-interval 1s: the read deadline the last message set
// (2 s) has passed when the reader looks again, although the client's pongs came.
func TestSocket2SocketPausedClientAnsweringPingsStaysOpen(t *testing.T) {
	fake := startFakeUpstream(t, fakeRespond(func(r fakeRequest) fakeAnswer {
		return fakeAnswer{Stall: r.Method == "eth_getBalance"}
	}))
	gw := startGateway(t, fake.args("-cache=false", "-upstream-timeout", "5s", "-ws-ping-interval", "1s",
		"-ws-client-queue", "1")...)
	gw.waitUpstreams(t)
	c := dialWS(t, gw.WSURL, nil)
	// In flight until the upstream timeout: the one answer owed fills the queue of 1.
	got := string(c.call(`{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["0x0000000000000000000000000000000000000000","latest"]}`))
	if !strings.HasPrefix(got, `{"jsonrpc":"2.0","id":1,"error":`) {
		t.Fatalf("held call: %s", got)
	}
	if got := string(c.call(`{"jsonrpc":"2.0","id":2,"method":"eth_blockNumber"}`)); !strings.Contains(got, `"result"`) {
		t.Fatalf("a call after the pause: %s", got)
	}
}
