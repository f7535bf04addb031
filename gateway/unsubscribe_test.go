package gateway

import (
	"encoding/json"
	"testing"
)

// eth_unsubscribe on /socket2socket answers as geth answers on its own websocket: an id
// that is not one of the client's subscriptions (unknown, another client's, already
// ended) is -32000 "subscription not found", not result false; more than one argument
// is -32602. Each case is sent to geth directly and to the gateway, and the error
// objects must be identical.
func TestSocket2SocketUnsubscribeMatchesNode(t *testing.T) {
	node, gw := startNodeGateway(t, nil)
	direct, other := dialWS(t, node.WSURL, nil), dialWS(t, node.WSURL, nil)
	a, b := dialWS(t, gw.WSURL, nil), dialWS(t, gw.WSURL, nil)
	const sub = `{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["logs",{"address":"0x00000000000000000000000000000000000000aa"}]}`
	subID := func(c *wsTestClient) string {
		t.Helper()
		var id string
		if err := json.Unmarshal(decodeAnswer(t, c.call(sub)).Result, &id); err != nil || id == "" {
			t.Fatalf("subscribe: %q %v", id, err)
		}
		return id
	}
	// An ended subscription: subscribed, then unsubscribed (true) by the same client.
	endedNode, endedGW := subID(direct), subID(a)
	for _, c := range []struct {
		cl *wsTestClient
		id string
	}{{direct, endedNode}, {a, endedGW}} {
		if got := decodeAnswer(t, c.cl.call(`{"jsonrpc":"2.0","id":2,"method":"eth_unsubscribe","params":["`+c.id+`"]}`)); string(got.Result) != "true" {
			t.Fatalf("first unsubscribe: %+v", got)
		}
	}
	// Another client's live subscription.
	othersNode, othersGW := subID(other), subID(b)
	for _, tc := range []struct {
		name             string
		paramsNode, prGW string
	}{
		{"unknown id", `["0x1234"]`, `["0x1234"]`},
		{"already ended", `["` + endedNode + `"]`, `["` + endedGW + `"]`},
		{"another client's", `["` + othersNode + `"]`, `["` + othersGW + `"]`},
		{"two arguments", `["0x1","0x2"]`, `["0x1","0x2"]`},
	} {
		req := `{"jsonrpc":"2.0","id":"u","method":"eth_unsubscribe","params":`
		want, got := direct.call(req+tc.paramsNode+`}`), a.call(req+tc.prGW+`}`)
		if string(got) != string(want) {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, want)
		}
	}
	// The other client's subscription is still its own: it unsubscribes it.
	if got := decodeAnswer(t, b.call(`{"jsonrpc":"2.0","id":3,"method":"eth_unsubscribe","params":["`+othersGW+`"]}`)); string(got.Result) != "true" {
		t.Fatalf("owner's unsubscribe: %+v", got)
	}
}

// An eth_unsubscribe sent as a notification (no id) ends the subscription, as geth does,
// though nothing is answered: it was ignored, and the notifications kept coming. No
// time window: the proof is that the subscription is no longer the client's.
func TestSocket2SocketUnsubscribeNotification(t *testing.T) {
	_, gw := startNodeGateway(t, nil)
	c := dialWS(t, gw.WSURL, nil)
	var id string
	if err := json.Unmarshal(decodeAnswer(t, c.call(`{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]}`)).Result, &id); err != nil {
		t.Fatal(err)
	}
	c.mustSend(`{"jsonrpc":"2.0","method":"eth_unsubscribe","params":["` + id + `"]}`)
	// A client's messages are handled in order (one reader per client): once a call sent
	// after it is answered, the notification has been handled. Had it been ignored, the
	// subscription would still be the client's, and a second eth_unsubscribe true.
	decodeAnswer(t, c.call(`{"jsonrpc":"2.0","id":2,"method":"eth_chainId"}`))
	got := string(c.call(`{"jsonrpc":"2.0","id":3,"method":"eth_unsubscribe","params":["` + id + `"]}`))
	if want := `{"jsonrpc":"2.0","id":3,"error":{"code":-32000,"message":"subscription not found"}}`; got != want {
		t.Fatalf("unsubscribe after the notification: %s, want %s", got, want)
	}
}
