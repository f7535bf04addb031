package filters

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
)

// eth_newBlockFilter takes no argument and eth_newPendingTransactionFilter at most one
// (fullTx): arguments geth refuses are refused with geth's code and words, before a
// filter is made (each would spend one of the client's -filter-max-per-tenant). A
// pending filter of full transactions is refused: the gateway keeps hashes only, and
// polls would have answered hashes where geth answers transactions.
func TestFilterCreationArguments(t *testing.T) {
	s := New(testConfig(&fakeClock{now: time.Now()}))
	chain := newFakeChain()
	for _, tc := range []struct {
		method, params string
		code           int    // 0: a filter is made
		msg            string // the error message, when it is geth's
	}{
		{"eth_newBlockFilter", `[]`, 0, ""},
		{"eth_newBlockFilter", `[1]`, -32602, "too many arguments, want at most 0"},
		{"eth_newBlockFilter", `[null]`, -32602, "too many arguments, want at most 0"},
		{"eth_newBlockFilter", `{}`, -32602, "non-array args"},
		{"eth_newBlockFilter", `{"a":1}`, -32602, "non-array args"},
		{"eth_newPendingTransactionFilter", `[true,1]`, -32602, "too many arguments, want at most 1"},
		{"eth_newPendingTransactionFilter", `[1]`, -32602, ""},
		{"eth_newPendingTransactionFilter", `["false"]`, -32602, ""},
		{"eth_newPendingTransactionFilter", `[true]`, -32602, ""},
		{"eth_newPendingTransactionFilter", `{}`, -32602, "non-array args"},
		// Past the arguments: refused for want of a websocket upstream (-32601) in this test.
		{"eth_newPendingTransactionFilter", `[]`, -32601, ""},
		{"eth_newPendingTransactionFilter", `[false]`, -32601, ""},
		{"eth_newPendingTransactionFilter", `[null]`, -32601, ""},
	} {
		var r proto.Request
		r.Set([]byte(tc.method), []byte(tc.params))
		out, err := s.Serve(nil, chain, &r, []byte("9"), "", time.Now().Add(10*time.Second))
		if err != nil {
			t.Fatalf("%s %s: %v", tc.method, tc.params, err)
		}
		var a answer
		if err := json.Unmarshal(out, &a); err != nil {
			t.Fatalf("%s %s: %s", tc.method, tc.params, out)
		}
		switch {
		case tc.code == 0 && a.Error != nil:
			t.Errorf("%s %s: %+v, want a filter", tc.method, tc.params, a.Error)
		case tc.code != 0 && (a.Error == nil || a.Error.Code != tc.code):
			t.Errorf("%s %s: %s, want error %d", tc.method, tc.params, out, tc.code)
		case tc.msg != "" && a.Error.Message != tc.msg:
			t.Errorf("%s %s: message %q, want geth's %q", tc.method, tc.params, a.Error.Message, tc.msg)
		}
	}
}
