package upstream

import (
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
)

// An eth_subscribe the node answers after its call timed out made a subscription at
// the node that nobody holds: it is unsubscribed as its answer arrives. Before, the
// answer was dropped as one for a call gone, and the node pushed that subscription's
// notifications (dropped on arrival) for the socket's life; the router's next attempt,
// on the same upstream when it is the only carrier (establish), made a second one.
func TestLateSubscribeAnswerUnsubscribed(t *testing.T) {
	f := newFakeUpstream(t, true)
	m := startMux(t, f, func(c *MuxConfig) { c.Conns = 1 })
	conn := within(t, f.accepted, "the Mux's connection")
	frameOf := func(what string) (frame []byte, msg proto.Message) {
		frame = within(t, f.recv, what)
		if _, err := proto.ScanMessage(frame, &msg); err != nil {
			t.Fatalf("upstream got %s: %v", frame, err)
		}
		return frame, msg
	}
	call := func() <-chan error {
		errs := make(chan error, 1)
		go func() {
			_, err := m.Call(nil, request("eth_chainId", "[]"), []byte("1"), time.Now().Add(20*time.Second))
			errs <- err
		}()
		return errs
	}

	subErr := make(chan error, 1)
	go func() {
		_, err := m.SubscribeBy(logsParams, time.Now().Add(200*time.Millisecond), func([]byte) {})
		subErr <- err
	}()
	sub, subMsg := frameOf("the eth_subscribe")
	if string(subMsg.Method.Bytes(sub)) != `"eth_subscribe"` {
		t.Fatalf("upstream got %s, want an eth_subscribe", sub)
	}
	if err := within(t, subErr, "the subscribe timed out"); err == nil {
		t.Fatal("subscribed without an answer")
	}
	// The late answer, then the answer of a call sent after it: once the call has its
	// answer, the reader has routed the late one.
	first := call()
	c1, c1Msg := frameOf("a call")
	f.send(conn, `{"jsonrpc":"2.0","id":`+string(subMsg.ID.Bytes(sub))+`,"result":"0xlate"}`)
	f.send(conn, `{"jsonrpc":"2.0","id":`+string(c1Msg.ID.Bytes(c1))+`,"result":"0x1"}`)
	if err := within(t, first, "the call answered"); err != nil {
		t.Fatal(err)
	}
	_ = call() // queued after whatever routing the late answer queued
	next, msg := frameOf("a frame after the late answer")
	if method, params := string(msg.Method.Bytes(next)), string(msg.Params.Bytes(next)); method != `"eth_unsubscribe"` || params != `["0xlate"]` {
		t.Fatalf("upstream got %s after the late answer, want eth_unsubscribe([\"0xlate\"]): the node keeps a subscription nobody holds", next)
	}
}
