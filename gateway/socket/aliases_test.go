package socket

import (
	"bytes"
	"testing"
)

func TestSubscriptionIDsInMessages(t *testing.T) {
	for _, tc := range []struct {
		name, msg, id string
		notification  bool
	}{
		{"answer", `{"jsonrpc":"2.0","id":1,"result":"0x0123456789abcdef0123456789abcdef"}`, "0x0123456789abcdef0123456789abcdef", false},
		{"answer, string id", `{"jsonrpc":"2.0","id":"a,\"result\":\"x","result":"0xab"}`, "0xab", false},
		{"answer, error", `{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"x"}}`, "", false},
		{"answer, escaped result", `{"jsonrpc":"2.0","id":1,"result":"0x\u0031"}`, "", false},
		{"answer, cut", `{"jsonrpc":"2.0","id":1,"result":"`, "", false},
		{"notification", `{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":"0xab","result":{"number":"0x1"}}}`, "0xab", true},
		{"notification, id late", `{"jsonrpc":"2.0","method":"eth_subscription","params":{"result":"` + string(bytes.Repeat([]byte("a"), 200)) + `","subscription":"0xab"}}`, "", true},
		{"notification, cut", `{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":"0xab`, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			find := resultID
			if tc.notification {
				find = notificationID
			}
			id, at := find([]byte(tc.msg))
			if string(id) != tc.id {
				t.Fatalf("id %q, want %q", id, tc.id)
			}
			if id != nil && tc.msg[at:at+len(id)] != tc.id {
				t.Fatalf("offset %d does not hold the id", at)
			}
		})
	}
}

// FuzzSubscriptionIDs: on any message, the ids found are where their offsets say, and
// hold no quote or backslash (they are spliced into messages as they are).
func FuzzSubscriptionIDs(f *testing.F) {
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"result":"0xab"}`))
	f.Add([]byte(`{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":"0xab","result":1}}`))
	f.Add([]byte(`,"result":""}`))
	f.Fuzz(func(t *testing.T, msg []byte) {
		for _, find := range []func([]byte) ([]byte, int){resultID, notificationID} {
			id, at := find(msg)
			if id == nil {
				continue
			}
			if at < 0 || at+len(id) > len(msg) || !bytes.Equal(msg[at:at+len(id)], id) {
				t.Fatalf("id %q at %d not in %q", id, at, msg)
			}
			if bytes.ContainsAny(id, `"\`) {
				t.Fatalf("id %q holds a quote or backslash", id)
			}
		}
	})
}

// A drained batch's slice is kept for the next queue unless a burst grew it past the
// queue's count bound: notifications are bounded by bytes only, and an idle client
// would otherwise keep its largest burst's bookkeeping.
func TestKeptQueue(t *testing.T) {
	for _, tc := range []struct {
		capacity, bound int
		kept            bool
	}{{0, 256, true}, {8, 256, true}, {256, 256, true}, {257, 256, false}, {4096, 256, false}} {
		batch := make([]outMsg, tc.capacity/2, tc.capacity)
		got := keptQueue(batch, tc.bound)
		if (got != nil) != tc.kept || len(got) != 0 || (tc.kept && cap(got) != tc.capacity) {
			t.Errorf("capacity %d, bound %d: kept %d/%d (nil %v), want kept %v", tc.capacity, tc.bound, len(got), cap(got), got == nil, tc.kept)
		}
	}
}
