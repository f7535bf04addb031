package upstream

import (
	"errors"
	"testing"

	"github.com/infura-gateway/infura-gateway/proto"
)

// With every upstream answering another chain, a websocket-routed call (/ws/…) gets the
// 503 naming the chain, as HTTP calls, batches and subscriptions do (upstream/README.md,
// "No fallback"): their sockets are closed for the wrong chain, and the call was
// answered 502 "upstream unavailable" as if the nodes were down. With no socket up and
// no upstream known to be on another chain, the node is down: 502 still.
func TestNoChainOverWebsocket(t *testing.T) {
	cases := []struct {
		name   string
		answer []uint64 // each upstream's chain id over HTTP; 0: none yet (unchecked)
		want   int      // HTTP status of the error
	}{
		{"every upstream on another chain", []uint64{31337, 5}, 503},
		{"one on another chain, one unchecked", []uint64{31337, 0}, 503},
		{"none answered yet (down)", []uint64{0, 0}, 502},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := testRouterWith(t, withChain(1337), Spec{Name: "a", HTTPURL: "http://127.0.0.1:1"},
				Spec{Name: "b", HTTPURL: "http://127.0.0.1:1"})
			for i, name := range []string{"a", "b"} {
				if tc.answer[i] != 0 {
					r.chainAnswer(byName(r, name), TransportHTTP, tc.answer[i], nil)
				}
			}
			var perr *proto.Error
			if err := r.noUpstream(TransportWS); !errors.As(err, &perr) || perr.Status != tc.want {
				t.Fatalf("noUpstream(ws) = %v, want a %d", err, tc.want)
			}
		})
	}
}
