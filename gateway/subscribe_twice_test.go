package gateway

import (
	"encoding/json"
	"regexp"
	"testing"
)

// One connection subscribing twice with identical params holds two subscriptions with
// ids of their own, as on geth: each head comes once under each id, and eth_unsubscribe
// of either ends that one only, the group's own id (the first) included. The registry
// shares one group and one id among its holders; the extra ids are the socket's
// (gateway/socket/aliases.go). Before, the second eth_subscribe got the first's id and
// each head came once: a library keeping one handler per id lost the first.
func TestSocket2SocketSubscribeTwice(t *testing.T) {
	node, gw := startNodeGateway(t, nil)
	direct, c := dialWS(t, node.WSURL, nil), dialWS(t, gw.WSURL, nil)
	// geth's ids are quantities (leading zeros trimmed: one in sixteen is shorter); the
	// gateway's are 32 hex digits.
	gethShape, ourShape := regexp.MustCompile(`^0x[1-9a-f][0-9a-f]{0,31}$`), regexp.MustCompile(`^0x[0-9a-f]{32}$`)
	subscribe := func(cl *wsTestClient) string {
		t.Helper()
		idShape := ourShape
		if cl == direct {
			idShape = gethShape
		}
		var id string
		if err := json.Unmarshal(decodeAnswer(t, cl.call(`{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]}`)).Result, &id); err != nil || !idShape.MatchString(id) {
			t.Fatalf("subscribe: %q %v", id, err)
		}
		return id
	}
	unsubscribe := func(id, want string) {
		t.Helper()
		got := string(c.call(`{"jsonrpc":"2.0","id":2,"method":"eth_unsubscribe","params":["` + id + `"]}`))
		if got != want {
			t.Fatalf("eth_unsubscribe %s: %s, want %s", id, got, want)
		}
	}
	const ended = `{"jsonrpc":"2.0","id":2,"result":true}`
	const notFound = `{"jsonrpc":"2.0","id":2,"error":{"code":-32000,"message":"subscription not found"}}`

	// What the gateway matches: geth gives each subscription of a connection its own id.
	if n1, n2 := subscribe(direct), subscribe(direct); n1 == n2 {
		t.Fatalf("geth gave one id twice: %s", n1)
	}
	a, b := subscribe(c), subscribe(c)
	if a == b {
		t.Fatalf("the second subscription got the first's id %s", a)
	}
	waitHeadsUnder(t, c, 2, []string{a, b}, nil)

	// The group's own id ends; the extra one keeps its heads, and a's stop with the answer.
	unsubscribe(a, ended)
	waitHeadsUnder(t, c, 2, []string{b}, []string{a})
	unsubscribe(a, notFound)

	// Subscribed again, the group's id is the client's again, beside b.
	a2 := subscribe(c)
	if a2 == b {
		t.Fatalf("a third subscription got the live extra id %s", b)
	}
	waitHeadsUnder(t, c, 2, []string{a2, b}, nil)

	// The extra id ends first this time; then the last.
	unsubscribe(b, ended)
	waitHeadsUnder(t, c, 2, []string{a2}, []string{b})
	unsubscribe(b, notFound)
	unsubscribe(a2, ended)
	unsubscribe(a2, notFound)
}

// waitHeadsUnder reads c's notifications until heads block numbers have each come under
// every id of want; a notification under an id of never, or any other message, fails.
func waitHeadsUnder(t *testing.T, c *wsTestClient, heads int, want, never []string) {
	t.Helper()
	seen := map[string]map[string]bool{} // block number: ids it came under
	complete := 0
	for complete < heads {
		a := decodeAnswer(t, c.next())
		if a.Method != "eth_subscription" {
			t.Fatalf("waiting for heads, got %+v", a)
		}
		id := a.Params.Subscription
		for _, x := range never {
			if id == x {
				t.Fatalf("a head under %s after it was unsubscribed: %s", x, a.Params.Result)
			}
		}
		var h struct{ Number string }
		if err := json.Unmarshal(a.Params.Result, &h); err != nil || h.Number == "" {
			t.Fatalf("head %s: %v", a.Params.Result, err)
		}
		if seen[h.Number] == nil {
			seen[h.Number] = map[string]bool{}
		}
		if seen[h.Number][id] {
			t.Fatalf("head %s came twice under %s", h.Number, id)
		}
		seen[h.Number][id] = true
		all := true
		for _, w := range want {
			all = all && seen[h.Number][w]
		}
		if all && len(seen[h.Number]) == len(want) {
			complete++
		}
	}
}
