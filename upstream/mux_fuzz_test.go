package upstream

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/infura-gateway/infura-gateway/proto"
)

var fuzzSeeds = []string{
	`{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}`,
	`{"jsonrpc":"2.0","id":"a\"b\\c\u00e9","method":"x"}`,
	`{ "id" : 123456789012345678901234567890 , "method":"m" , "jsonrpc" : "2.0" }`,
	`{"id":1.0,"method":"m","params":{"id":5},"jsonrpc":"2\u002e0"}`,
	`{"jsonrpc":"2.0","id":null,"method":"m"}`,
	`{"jsonrpc":"2.0","method":"notify"}`,
	`{"jsonrpc":"2.0","id":1,"id":2,"method":"dup"}`,
	`{"jsonrpc":"2.0","\u0069d":7,"method":"escaped key"}`,
	`{"jsonrpc":"2.0","id":-0.5e3,"method":"a","params":[ 1 , {"b" : " c "} ]}`,
	`{"jsonrpc":"2.0","id":1,"ID":2,"method":"a"}`,
	`{"id":1,"method":"no_version"}`,
	`{"params":{"subscription":"0xabc","result":{"id":1}},"method":"eth_subscription","jsonrpc":"2.0"}`,
}

// FuzzMuxEnvelope checks what the Mux sends and gives back, against encoding/json: for
// any request the gateway accepts, the frame sent upstream decodes (as a Go upstream
// decodes it) to the gateway id, the decoded method and the canonical params, with no
// other member; and an answer carrying the gateway id comes back carrying the client's
// id, every other byte unchanged.
func FuzzMuxEnvelope(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var r proto.Request
		if r.Parse(body) != nil {
			return
		}
		c := &call{}
		c.prepare(&r, r.ID, 1000)
		var sent map[string]json.RawMessage
		if err := json.Unmarshal(c.req, &sent); err != nil {
			t.Fatalf("frame is not JSON: %s", c.req)
		}
		var method string
		if len(sent) != 4 || string(sent["id"]) != "1000" || string(sent["jsonrpc"]) != `"2.0"` ||
			json.Unmarshal(sent["method"], &method) != nil || method != string(r.Name) ||
			!bytes.Equal(sent["params"], r.Params) {
			t.Fatalf("frame %s for %s", c.req, body)
		}
		if r.ID == nil {
			return
		}
		answer := []byte(`{"jsonrpc":"2.0","id":1000,"result":{"id":5}}`)
		var msg proto.Message
		if _, err := proto.ScanMessage(answer, &msg); err != nil {
			t.Fatal(err)
		}
		out := proto.Splice(nil, answer, msg.ID, c.id)
		var got struct {
			ID     json.RawMessage `json:"id"`
			Result json.RawMessage `json:"result"`
		}
		if err := json.Unmarshal(out, &got); err != nil || !bytes.Equal(got.ID, r.ID) || string(got.Result) != `{"id":5}` {
			t.Fatalf("answer %s for id %s", out, r.ID)
		}
	})
}

// FuzzNotificationRewrite checks the subscription id rewrite: only
// params.subscription changes, every other byte stays.
func FuzzNotificationRewrite(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		var msg proto.Message
		end, err := proto.ScanMessage(frame, &msg)
		if err != nil || proto.SkipWS(frame, end) != len(frame) || !msg.Subscription.Present() {
			return
		}
		gw := []byte(`"0x00000000000000000000000000000001"`)
		out := proto.Splice(nil, frame, msg.Subscription, gw)
		var in, got struct {
			Params map[string]json.RawMessage `json:"params"`
		}
		var inAll, gotAll map[string]json.RawMessage
		if json.Unmarshal(frame, &inAll) != nil {
			t.Fatalf("scanner accepted what encoding/json rejects: %s", frame)
		}
		if err := json.Unmarshal(out, &gotAll); err != nil {
			t.Fatalf("rewrite broke JSON: %s: %v", out, err)
		}
		if json.Unmarshal(frame, &in) != nil || json.Unmarshal(out, &got) != nil {
			return // params is not an object for encoding/json: nothing more to compare
		}
		if string(got.Params["subscription"]) != string(gw) {
			t.Fatalf("subscription not rewritten: %s", out)
		}
		delete(in.Params, "subscription")
		delete(got.Params, "subscription")
		delete(inAll, "params")
		delete(gotAll, "params")
		if !reflect.DeepEqual(in.Params, got.Params) || !reflect.DeepEqual(inAll, gotAll) {
			t.Fatalf("rewrite changed other members:\n in %s\nout %s", frame, out)
		}
		if !bytes.Equal(out[:msg.Subscription.Start], frame[:msg.Subscription.Start]) ||
			!bytes.Equal(out[msg.Subscription.Start+len(gw):], frame[msg.Subscription.End:]) {
			t.Fatal("bytes around the subscription id changed")
		}
	})
}
