package upstream

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
)

// An upstream websocket message that is not one JSON-RPC answer fails the call it names
// with ErrBadUpstream at once, as the HTTP pool refuses the same bytes
// (TestPoolRefusesInvalidJSON, TestPoolRefusesAnswersWithoutOneOutcome): trailing bytes
// after the object were relayed to the client as a 200 before, and an answer with both
// or neither of result and error too. The socket carries on: the next call is answered.
func TestMuxRefusesInvalidAnswers(t *testing.T) {
	cases := []struct {
		name, msg string // msg: the answer, %ID% standing for the call's id
		want      error
	}{
		{"trailing garbage", `{"jsonrpc":"2.0","id":%ID%,"result":"0x1"} garbage`, proto.ErrBadUpstream},
		{"a second object after it", `{"jsonrpc":"2.0","id":%ID%,"result":"0x1"}{"jsonrpc":"2.0","id":%ID%,"result":"0x2"}`, proto.ErrBadUpstream},
		{"neither result nor error", `{"jsonrpc":"2.0","id":%ID%}`, proto.ErrBadUpstream},
		{"both result and error", `{"jsonrpc":"2.0","id":%ID%,"result":"0x1","error":{"code":-32000,"message":"x"}}`, proto.ErrBadUpstream},
		{"valid, whitespace after", `{"jsonrpc":"2.0","id":%ID%,"result":"0x1"}` + " \n", nil},
		{"valid error", `{"jsonrpc":"2.0","id":%ID%,"error":{"code":-32000,"message":"x"}}`, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeUpstream(t, false)
			raw := func(id string) []byte { return serverFrame(strings.ReplaceAll(tc.msg, "%ID%", id)) }
			f.raw.Store(&raw)
			m := startMux(t, f, func(c *MuxConfig) { c.Conns = 1 })
			got, err := callBody(m, `{"jsonrpc":"2.0","id":5,"method":"raw"}`, time.Now().Add(20*time.Second))
			if err != tc.want {
				t.Fatalf("got %s %v, want %v", got, err, tc.want)
			}
			got, err = callBody(m, `{"jsonrpc":"2.0","id":6,"method":"echo","params":["ok"]}`, time.Now().Add(20*time.Second))
			if err != nil || !strings.Contains(string(got), `"ok"`) {
				t.Fatalf("the next call: %s %v", got, err)
			}
		})
	}
}

// An HTTP answer that is one JSON value but not one JSON-RPC answer (neither result nor
// error, or both) is refused as ErrBadUpstream, on a single call as in a batch: before,
// it reached the client as a 200 (and the cache).
func TestPoolRefusesAnswersWithoutOneOutcome(t *testing.T) {
	for _, body := range []string{
		`{"jsonrpc":"2.0","id":1}`,
		`{"jsonrpc":"2.0","id":1,"result":"0x1","error":{"code":-32000,"message":"x"}}`,
		`{"jsonrpc":"2.0", "id":1, "error":{"code":-32000,"message":"x"}, "result":null}`,
	} {
		p := testPool(t, rawHTTPUpstream(t, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "+
			strconv.Itoa(len(body))+"\r\n\r\n"+body))
		if got, err := p.Call(nil, request("eth_chainId", ""), []byte(`"x"`), time.Now().Add(10*time.Second)); err != proto.ErrBadUpstream {
			t.Errorf("answer %s: got %s %v, want ErrBadUpstream", body, got, err)
		}
	}
	for _, tc := range []struct{ batch, want0 string }{
		{`[{"jsonrpc":"2.0","id":0},{"jsonrpc":"2.0","id":1,"result":"b"}]`, "error"},
		{`[{"jsonrpc":"2.0","id":0,"result":"a","error":{"code":1,"message":"x"}},{"jsonrpc":"2.0","id":1,"result":"b"}]`, "error"},
		{`[{"jsonrpc":"2.0", "id":0, "result":"a"},{"jsonrpc":"2.0","id":1,"result":"b"}]`, `{"jsonrpc":"2.0", "id":"c0", "result":"a"}`},
	} {
		p := testPool(t, rawHTTPUpstream(t, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "+
			strconv.Itoa(len(tc.batch))+"\r\n\r\n"+tc.batch))
		var b Batch
		b.Add(request("eth_chainId", ""), []byte(`"c0"`))
		b.Add(request("eth_chainId", ""), []byte(`"c1"`))
		_ = p.CallBatch(&b, time.Now().Add(10*time.Second))
		ans, e := b.Answer(0)
		got := string(ans)
		if e != nil {
			got = "error"
		}
		if got != tc.want0 {
			t.Errorf("batch %s: answer 0 = %s, want %s", tc.batch, got, tc.want0)
		}
		if ans, e := b.Answer(1); e != nil || string(ans) != `{"jsonrpc":"2.0","id":"c1","result":"b"}` {
			t.Errorf("batch %s: answer 1 = %s %v", tc.batch, ans, e)
		}
	}
}
