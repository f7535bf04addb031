package gateway

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/infura-gateway/infura-gateway/gateway/socket"
)

// TestDrainAnswersWebsocketCallsInFlight: a drain closes a /socket2socket client only
// once the calls it has in flight are answered: the answer, then 1001 "draining,
// reconnect". Calls it sends meanwhile are refused (-32000 naming the drain). Before,
// the close went out at the client's turn in the drain window and the answer of a call
// under way was lost: the client never learned whether its send went out. The same
// with no drain delay nor window (clients closed at once): before, that skipped the
// drain and cut the call. And with an answer still being written when the drain
// queued the close behind it: the drain ended there, and the server's close that follows
// cut the queue and said "server shutting down" (once in CI with a small answer; every
// time with a large one).
func TestDrainAnswersWebsocketCallsInFlight(t *testing.T) {
	noDrain := []string{"-drain-delay", "0s", "-ws-drain-window", "0s"}
	for _, tc := range []struct {
		name   string
		drain  []string
		answer int // bytes of the call's result string
	}{
		{"a drain delay", []string{"-drain-delay", "100ms"}, 2},
		{"no drain delay nor window", noDrain, 2},
		{"an answer still being written", noDrain, 4 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) { drainAnswersCallsInFlight(t, tc.drain, tc.answer) })
	}
}

func drainAnswersCallsInFlight(t *testing.T, drain []string, size int) {
	result := `"0x` + strings.Repeat("2a", (size-2)/2) + `"`
	arrived, gate := make(chan struct{}, 1), make(chan struct{})
	fake := startFakeUpstream(t, fakeRespond(func(r fakeRequest) fakeAnswer {
		if r.Method == "eth_getBalance" {
			arrived <- struct{}{}
			<-gate
			return fakeAnswer{Result: result}
		}
		return fakeAnswer{}
	}))
	gw := startGateway(t, fake.args(append(drain, "-shutdown-timeout", "60s")...)...)
	gw.waitUpstreams(t)
	c, _, err := websocket.DefaultDialer.Dial(gw.WSURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(wsWait))
	if err := c.WriteMessage(websocket.TextMessage, []byte(`{"jsonrpc":"2.0","id":7,"method":"eth_getBalance","params":["0x00000000000000000000000000000000000000aa","latest"]}`)); err != nil {
		t.Fatal(err)
	}
	<-arrived
	done := make(chan error, 1)
	go func() { done <- gw.srv.Shutdown(context.Background()) }()
	// Another call until the drain refuses it: the drain has reached this client.
	for id := 100; ; id++ {
		if err := c.WriteMessage(websocket.TextMessage, []byte(`{"jsonrpc":"2.0","id":`+strconv.Itoa(id)+`,"method":"eth_chainId","params":[]}`)); err != nil {
			t.Fatalf("write during the drain: %v", err)
		}
		_, msg, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("closed while its eth_getBalance was in flight, unanswered: %v", err)
		}
		if strings.Contains(string(msg), `"id":7`) {
			t.Fatalf("eth_getBalance answered before the upstream did: %s", msg)
		}
		if strings.Contains(string(msg), "gateway draining") {
			break
		}
	}
	close(gate)
	_, msg, err := c.ReadMessage()
	if want := `{"jsonrpc":"2.0","id":7,"result":` + result + `}`; err != nil || string(msg) != want {
		t.Fatalf("the call in flight: %.200s (%d bytes) %v, want its answer (%d bytes)", msg, len(msg), err, len(want))
	}
	_, _, err = c.ReadMessage()
	var ce *websocket.CloseError
	if !asCloseError(err, &ce) || ce.Code != websocket.CloseGoingAway || ce.Text != socket.DrainReason {
		t.Fatalf("after the answer: %v, want close 1001 %q", err, socket.DrainReason)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
