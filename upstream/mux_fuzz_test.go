package upstream

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strconv"
	"testing"

	"github.com/infura-gateway/infura-gateway/proto"
)

var fuzzSeeds = []string{
	`{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}`,
	`{"id":"a\"b\\c\u00e9","method":"x"}`,
	`{ "id" : 123456789012345678901234567890 , "method":"m" }`,
	`{"id":1.0,"method":"m","params":{"id":5}}`,
	`{"id":null,"method":"m"}`,
	`{"method":"notify"}`,
	`{"id":1,"id":2,"method":"dup"}`,
	`{"\u0069d":7,"method":"escaped key"}`,
	`[{"id":1,"method":"a"},{"method":"b"},{"id":"x","method":"c"}]`,
	`[ {"id":-0.5e3,"method":"a"} ]`,
	`{"params":{"subscription":"0xabc","result":{"id":1}},"method":"eth_subscription","jsonrpc":"2.0"}`,
}

// FuzzMuxIDRoundTrip checks the id splicer against encoding/json: the frame sent
// upstream differs from the client's only in the id values (now gateway ids), and
// splicing the client ids back into it restores the client's bytes exactly.
func FuzzMuxIDRoundTrip(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		c := &call{}
		var next uint64 = 1000
		if c.prepare(body, nil, func(n int) uint64 { b := next; next += uint64(n); return b }) != nil {
			return
		}
		if !json.Valid(c.req) {
			t.Fatalf("prepared frame is not JSON: %s", c.req)
		}
		elems := [][]byte{body}
		outs := [][]byte{c.req}
		if c.batch {
			elems, outs = splitArray(t, body), splitArray(t, c.req)
		}
		if len(elems) != len(outs) {
			t.Fatalf("%d elements in, %d out", len(elems), len(outs))
		}
		k := 0
		for i := range elems {
			var in, out map[string]json.RawMessage
			if json.Unmarshal(elems[i], &in) != nil || json.Unmarshal(outs[i], &out) != nil {
				t.Fatalf("element %d does not decode: %s / %s", i, elems[i], outs[i])
			}
			inID, hasID := in["id"]
			if !hasID {
				if !bytes.Equal(elems[i], outs[i]) {
					t.Fatalf("notification changed: %s -> %s", elems[i], outs[i])
				}
				continue
			}
			if got, want := string(out["id"]), strconv.FormatUint(c.base+uint64(k), 10); got != want {
				t.Fatalf("gateway id %s, want %s", got, want)
			}
			delete(in, "id")
			delete(out, "id")
			if !reflect.DeepEqual(in, out) {
				t.Fatalf("members other than id changed: %s -> %s", elems[i], outs[i])
			}
			// Restore: the upstream echoes the element as its answer.
			var msg proto.Message
			if _, err := proto.ScanMessage(outs[i], &msg); err != nil {
				t.Fatal(err)
			}
			back := proto.Splice(nil, outs[i], msg.ID, c.id(k))
			if !bytes.Equal(back, elems[i]) {
				t.Fatalf("round trip changed bytes:\n in %s\nout %s", elems[i], back)
			}
			var id any
			if json.Unmarshal(c.id(k), &id) != nil || json.Unmarshal(inID, &id) != nil {
				t.Fatalf("recorded id %s is not JSON", c.id(k))
			}
			k++
		}
		if k != c.n {
			t.Fatalf("%d ids registered, %d found", c.n, k)
		}
	})
}

func splitArray(t *testing.T, b []byte) [][]byte {
	var out [][]byte
	it, err := proto.NewArrayIter(b)
	if err != nil {
		t.Fatal(err)
	}
	for {
		el, ok, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return out
		}
		out = append(out, el.Bytes(b))
	}
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
