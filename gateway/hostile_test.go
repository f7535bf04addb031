package gateway

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
)

// Hostile requests, on every transport, against an upstream that decodes JSON as Go's
// encoding/json does (keys matched without case, the last duplicate wins): whatever
// the client writes, the upstream sees only envelopes the gateway wrote, with the
// method the gateway decided on.
func TestHostileRequestsOnEveryTransport(t *testing.T) {
	fake := startFakeUpstream(t)
	gw := startGateway(t, fake.args("-cache=false")...)
	gw.waitUpstreams(t)
	ws := dialWS(t, gw.WSURL, nil)

	const refusedDup = -32600
	cases := []struct {
		name, req string
		code      int    // error code the client gets; 0: a result
		upstream  string // the method the upstream must see; "" for none
		params    string // the params the upstream must see, when it sees the call
	}{
		{"escaped deny-listed method", `{"jsonrpc":"2.0","id":1,"method":"admin\u005fnodeInfo"}`, -32601, "", ""},
		{"escaped deny-listed prefix", `{"jsonrpc":"2.0","id":1,"method":"\u0064ebug_traceTransaction","params":["0x1"]}`, -32601, "", ""},
		{"ID beside id", `{"jsonrpc":"2.0","id":1,"ID":2,"method":"eth_chainId"}`, refusedDup, "", ""},
		{"Id alone", `{"jsonrpc":"2.0","Id":2,"method":"eth_chainId"}`, refusedDup, "", ""},
		{"PARAMS beside params", `{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["0x01","latest"],"PARAMS":["0x02","0x0"]}`, refusedDup, "", ""},
		{"Method beside method", `{"jsonrpc":"2.0","id":1,"method":"eth_chainId","Method":"admin_nodeInfo"}`, refusedDup, "", ""},
		{"Method alone", `{"jsonrpc":"2.0","id":1,"Method":"admin_nodeInfo"}`, refusedDup, "", ""},
		{"duplicate method", `{"jsonrpc":"2.0","id":1,"method":"eth_chainId","method":"admin_nodeInfo"}`, refusedDup, "", ""},
		{"escaped duplicate id", `{"jsonrpc":"2.0","id":1,"\u0069d":2,"method":"eth_chainId"}`, refusedDup, "", ""},
		{"unicode fold of params", `{"jsonrpc":"2.0","id":1,"method":"eth_chainId","param\u017f":[1]}`, refusedDup, "", ""},
		{"JSONRPC variant", `{"JSONRPC":"2.0","id":1,"method":"eth_chainId"}`, refusedDup, "", ""},
		{"wrong version", `{"jsonrpc":"1.0","id":1,"method":"eth_chainId"}`, -32600, "", ""},
		// No "jsonrpc" member: geth refuses it (-32600) and so does the gateway, before
		// any other decision; nothing reaches the upstream.
		{"no version", `{"id":1,"method":"eth_chainId","params":[]}`, -32600, "", ""},
		{"no version, deny-listed method", `{"id":1,"method":"admin_nodeInfo"}`, -32600, "", ""},
		{"version only inside params", `{"id":1,"method":"eth_getBalance","params":[{"jsonrpc":"2.0"},"latest"]}`, -32600, "", ""},
		{"NUL in method", `{"jsonrpc":"2.0","id":1,"method":"eth_chainId\u0000admin_nodeInfo"}`, -32600, "", ""},
		{"punctuation in method", `{"jsonrpc":"2.0","id":1,"method":"eth_chainId\",\"x\":\"y"}`, -32600, "", ""},
		{"object id", `{"jsonrpc":"2.0","id":{"id":1},"method":"eth_chainId"}`, -32600, "", ""},
		{"string params", `{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":"x"}`, -32602, "", ""}, // as geth: "non-array args"
		{"extra members are not forwarded", `{"jsonrpc":"2.0","id":1,"method":"eth_chainId","extra":{"id":9,"method":"admin_x"},"result":1}`, 0, "eth_chainId", `[]`},
		{"escaped allowed method", `{"jsonrpc":"2.0","id":1,"method":"eth_\u0063hainId"}`, 0, "eth_chainId", `[]`},
		// Every decision on decoded values (issue 19, F6): an escaped block tag is the tag
		// for the cache and the router, and the upstream sees the gateway's spelling.
		{"escaped block tag", `{"jsonrpc":"2.0","id":1,"method":"eth_getBlockTransactionCountByNumber","params":["l\u0061test"]}`, 0, "eth_getBlockTransactionCountByNumber", `["latest"]`},
		{"escaped address and tag", `{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["\u00301",  "s\u0061fe"]}`, 0, "eth_getBalance", `["01","safe"]`},
		{"needed escapes stay", `{"jsonrpc":"2.0","id":1,"method":"eth_call","params":[{"data":"a\"b\\c\n"},"latest"]}`, 0, "eth_call", `[{"data":"a\"b\\c\n"},"latest"]`},
		{"whitespace in params", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_getBalance\",\"params\":[ \"0x01\" ,\n \"latest\" ]}", 0, "eth_getBalance", `["0x01","latest"]`},
		{"long escaped key", `{"jsonrpc":"2.0","id":1,"method":"eth_chainId","` + strings.Repeat(`\u0061`, 20000) + `":1}`, 0, "eth_chainId", `[]`},
		{"huge string id stays with the client", `{"jsonrpc":"2.0","id":"` + strings.Repeat("i", 5000) + `","method":"eth_chainId"}`, 0, "eth_chainId", `[]`},
	}
	transports := []struct {
		name string
		send func(t *testing.T, req string) rpcAnswer
	}{
		{"POST /", func(t *testing.T, req string) rpcAnswer {
			code, body := do(t, "POST", gw.URL+"/", req)
			if code != 200 {
				t.Fatalf("HTTP %d %s", code, body)
			}
			return decodeAnswer(t, body)
		}},
		{"POST / batch", func(t *testing.T, req string) rpcAnswer {
			code, body := do(t, "POST", gw.URL+"/", `[`+req+`,{"jsonrpc":"2.0","id":"probe","method":"eth_chainId"}]`)
			var els []json.RawMessage
			if code != 200 || json.Unmarshal(body, &els) != nil || len(els) != 2 {
				t.Fatalf("HTTP %d %s", code, body)
			}
			if a := decodeAnswer(t, els[1]); string(a.ID) != `"probe"` {
				t.Fatalf("answers out of request order: %s", body)
			}
			return decodeAnswer(t, els[0])
		}},
		{"/socket2socket", func(t *testing.T, req string) rpcAnswer { return decodeAnswer(t, ws.call(req)) }},
		{"/socket2socket batch", func(t *testing.T, req string) rpcAnswer {
			var els []json.RawMessage
			body := ws.call(`[` + req + `,{"jsonrpc":"2.0","id":"probe","method":"eth_chainId"}]`)
			if json.Unmarshal(body, &els) != nil || len(els) != 2 {
				t.Fatalf("%s", body)
			}
			return decodeAnswer(t, els[0])
		}},
	}
	gatewayID := regexp.MustCompile(`^[0-9]+$`)
	for _, tr := range transports {
		for _, c := range cases {
			t.Run(tr.name+"/"+c.name, func(t *testing.T) {
				fake.reset()
				a := tr.send(t, c.req)
				switch {
				case c.code == 0 && (a.Error != nil || len(a.Result) == 0):
					t.Fatalf("want a result, got %+v", a)
				case c.code != 0 && (a.Error == nil || a.Error.Code != c.code):
					t.Fatalf("want error %d, got %+v", c.code, a)
				}
				var sawCall bool
				for _, r := range fake.requests() {
					if r.Method == "eth_blockNumber" || r.Method == "eth_subscribe" || r.Method == "eth_getBlockByNumber" {
						continue // the gateway's own head tracking
					}
					if len(r.Keys) != 0 || !gatewayID.Match(r.ID) || !strings.HasPrefix(r.Raw, `{"jsonrpc":"2.0","id":`) {
						t.Fatalf("the upstream got a request the gateway did not write: %s", r.Raw)
					}
					if r.Method == "eth_chainId" && strings.Contains(tr.name, "batch") && c.upstream != "eth_chainId" {
						continue // the probe
					}
					if r.Method != c.upstream || string(r.Params) != c.params {
						t.Fatalf("the upstream got %s, want method %q params %s", r.Raw, c.upstream, c.params)
					}
					sawCall = true
				}
				if c.upstream != "" && !sawCall {
					t.Fatalf("the upstream never got %s", c.upstream)
				}
			})
		}
	}
}

// A notification (no id) to a denied method gets nothing back and never reaches the
// upstream, on HTTP and websocket alike.
func TestDeniedNotificationsGetNothing(t *testing.T) {
	fake := startFakeUpstream(t)
	gw := startGateway(t, fake.args("-cache=false")...)
	gw.waitUpstreams(t)
	fake.reset()
	if code, body := do(t, "POST", gw.URL+"/", `{"jsonrpc":"2.0","method":"admin\u005faddPeer","params":["enode://x"]}`); code != 200 || len(body) != 0 {
		t.Fatalf("HTTP: %d %q", code, body)
	}
	ws := dialWS(t, gw.WSURL, nil)
	ws.mustSend(`{"jsonrpc":"2.0","method":"admin\u005faddPeer","params":["enode://x"]}`)
	if a := decodeAnswer(t, ws.call(`{"jsonrpc":"2.0","id":"next","method":"eth_chainId"}`)); string(a.ID) != `"next"` {
		t.Fatalf("websocket: the next answer is %+v", a)
	}
	if n := fake.count("admin_addPeer"); n != 0 {
		t.Fatalf("the upstream got admin_addPeer %d times", n)
	}
}
