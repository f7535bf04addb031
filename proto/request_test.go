package proto

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestParseRequestRefuses lists every request shape the gateway refuses, with the error
// it answers. Each is something a client could use to make the gateway and an upstream
// disagree about what was asked, or that no legitimate client sends.
func TestParseRequestRefuses(t *testing.T) {
	f := func(name, body string, want *Error, wantID string) {
		t.Helper()
		var r Request
		got := r.Parse([]byte(body))
		if got != want {
			t.Errorf("%s: %s: got %v, want %v", name, body, errText(got), errText(want))
		}
		if string(r.ID) != wantID {
			t.Errorf("%s: id = %q, want %q", name, r.ID, wantID)
		}
	}
	// Not JSON, or not a request object.
	f("empty", ``, ErrParse, "")
	f("truncated", `{"jsonrpc":"2.0","id":1,"method":"eth_chainId"`, ErrParse, "")
	f("trailing garbage", `{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}x`, ErrParse, "")
	f("two objects", `{"jsonrpc":"2.0","id":1,"method":"a"}{"id":2,"method":"b"}`, ErrParse, "")
	// JSON is UTF-8 (RFC 8259 §8.1); an answer echoing these bytes would be a text frame
	// a websocket client must reject.
	f("invalid UTF-8 in the id", "{\"jsonrpc\":\"2.0\",\"id\":\"\xff\",\"method\":\"eth_chainId\"}", ErrParse, "")
	f("invalid UTF-8 in params", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_call\",\"params\":[\"\xc3\x28\"]}", ErrParse, "")
	f("UTF-8 encoded surrogate", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_call\",\"params\":[\"\xed\xa0\x80\"]}", ErrParse, "")
	f("overlong UTF-8", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_call\",\"params\":[\"\xc0\xaf\"]}", ErrParse, "")
	f("array", `[1]`, ErrInvalidRequest, "")
	f("string", `"eth_chainId"`, ErrInvalidRequest, "")
	f("number", `1`, ErrInvalidRequest, "")
	// Duplicate members and letter-case variants: encoding/json matches keys without
	// case and takes the last; other decoders take the first.
	f("duplicate id", `{"jsonrpc":"2.0","id":1,"id":2,"method":"eth_chainId"}`, ErrDuplicateMember, "1")
	f("ID beside id", `{"jsonrpc":"2.0","id":1,"ID":2,"method":"eth_chainId"}`, ErrDuplicateMember, "1")
	f("Id alone", `{"jsonrpc":"2.0","Id":1,"method":"eth_chainId"}`, ErrDuplicateMember, "")
	f("duplicate method", `{"jsonrpc":"2.0","id":1,"method":"eth_chainId","method":"admin_nodeInfo"}`, ErrDuplicateMember, "1")
	f("Method beside method", `{"jsonrpc":"2.0","id":1,"method":"eth_chainId","Method":"admin_nodeInfo"}`, ErrDuplicateMember, "1")
	f("METHOD alone", `{"jsonrpc":"2.0","id":1,"METHOD":"admin_nodeInfo"}`, ErrDuplicateMember, "1")
	f("PARAMS beside params", `{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["0x0","latest"],"PARAMS":["0x1","latest"]}`, ErrDuplicateMember, "1")
	f("duplicate params", `{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":[],"params":[1]}`, ErrDuplicateMember, "1")
	f("JSONRPC variant", `{"JSONRPC":"2.0","id":1,"method":"eth_chainId"}`, ErrDuplicateMember, "1")
	f("duplicate jsonrpc", `{"jsonrpc":"2.0","jsonrpc":"1.0","id":1,"method":"eth_chainId"}`, ErrDuplicateMember, "1")
	f("escaped duplicate id", `{"jsonrpc":"2.0","id":1,"\u0069d":2,"method":"eth_chainId"}`, ErrDuplicateMember, "1")
	f("escaped ID variant", `{"jsonrpc":"2.0","id":1,"\u0049\u0044":2,"method":"eth_chainId"}`, ErrDuplicateMember, "1")
	f("unicode fold: long s", `{"jsonrpc":"2.0","id":1,"method":"eth_chainId","param\u017f":[1]}`, ErrDuplicateMember, "1")
	f("unicode fold raw", "{\"id\":1,\"method\":\"eth_chainId\",\"jſonrpc\":\"2.0\"}", ErrDuplicateMember, "1")
	// The version.
	f("version 1.0", `{"jsonrpc":"1.0","id":1,"method":"eth_chainId"}`, ErrBadVersion, "1")
	f("version number", `{"jsonrpc":2.0,"id":1,"method":"eth_chainId"}`, ErrBadVersion, "1")
	f("version null", `{"jsonrpc":null,"id":1,"method":"eth_chainId"}`, ErrBadVersion, "1")
	f("version empty", `{"jsonrpc":"","id":1,"method":"eth_chainId"}`, ErrBadVersion, "1")
	// No version at all: JSON-RPC 2.0 requires the member and geth answers -32600
	// "invalid request", with the id when there is one and null without. It is decided
	// before the method and the params, as geth does (its params error is -32602).
	f("no version", `{"id":1,"method":"eth_chainId","params":[]}`, ErrNoVersion, "1")
	f("no version, null id", `{"id":null,"method":"eth_chainId"}`, ErrNoVersion, "null")
	f("no version, notification", `{"method":"eth_chainId","params":[]}`, ErrNoVersion, "")
	f("no version, string id", `{"id":"a","method":"eth_chainId"}`, ErrNoVersion, `"a"`)
	f("no version, string params", `{"id":1,"method":"eth_chainId","params":"x"}`, ErrNoVersion, "1")
	f("no version, bad method", `{"id":1,"method":"eth-chainId"}`, ErrNoVersion, "1")
	f("no version nor method", `{"id":1}`, ErrNoVersion, "1")
	f("version only nested", `{"id":1,"method":"eth_chainId","params":[{"jsonrpc":"2.0"}],"x":{"jsonrpc":"2.0"}}`, ErrNoVersion, "1")
	f("empty object", `{}`, ErrNoVersion, "")
	// The id.
	f("object id", `{"jsonrpc":"2.0","id":{"a":1},"method":"eth_chainId"}`, ErrBadID, "")
	f("array id", `{"jsonrpc":"2.0","id":[1],"method":"eth_chainId"}`, ErrBadID, "")
	// The method.
	f("no method", `{"jsonrpc":"2.0","id":1}`, ErrBadMethod, "1")
	f("number method", `{"jsonrpc":"2.0","id":1,"method":1}`, ErrBadMethod, "1")
	f("null method", `{"jsonrpc":"2.0","id":1,"method":null}`, ErrBadMethod, "1")
	f("empty method", `{"jsonrpc":"2.0","id":1,"method":""}`, ErrBadMethod, "1")
	f("dash in method", `{"jsonrpc":"2.0","id":1,"method":"eth-chainId"}`, ErrBadMethod, "1")
	f("space in method", `{"jsonrpc":"2.0","id":1,"method":"eth_chainId "}`, ErrBadMethod, "1")
	f("NUL in method", `{"jsonrpc":"2.0","id":1,"method":"admin_nodeInfo\u0000"}`, ErrBadMethod, "1")
	f("non-ASCII method", `{"jsonrpc":"2.0","id":1,"method":"eth_chaınId"}`, ErrBadMethod, "1")
	f("long method", `{"jsonrpc":"2.0","id":1,"method":"`+strings.Repeat("a", MaxMethodLen+1)+`"}`, ErrBadMethod, "1")
	// The params.
	f("string params", `{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":"x"}`, ErrBadParams, "1")
	f("number params", `{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":1}`, ErrBadParams, "1")
	f("true params", `{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":true}`, ErrBadParams, "1")
}

// TestRefusalAnswered: which refused requests get an answer, as geth decides it. An
// invalid request (-32600: no or a wrong version, a bad method or id) is answered even
// without an id (with id null); a valid notification with wrong params (-32602) is not.
func TestRefusalAnswered(t *testing.T) {
	for _, c := range []struct {
		body   string
		code   int
		answer bool
	}{
		{`{"method":"eth_chainId","params":[]}`, CodeInvalidRequest, true},
		{`{"id":1,"method":"eth_chainId","params":[]}`, CodeInvalidRequest, true},
		{`{"method":"eth_chainId","params":"x"}`, CodeInvalidRequest, true}, // no version decides first
		{`{"jsonrpc":"1.0","method":"eth_chainId"}`, CodeInvalidRequest, true},
		{`{"jsonrpc":"2.0","method":"eth-chainId"}`, CodeInvalidRequest, true},
		{`{"jsonrpc":"2.0","method":"eth_chainId","params":"x"}`, CodeInvalidParams, false},
		{`{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":"x"}`, CodeInvalidParams, true},
	} {
		var r Request
		err := r.Parse([]byte(c.body))
		if err == nil || err.Code != c.code {
			t.Errorf("%s: got %v, want code %d", c.body, errText(err), c.code)
			continue
		}
		if got := RefusalAnswered(err, r.ID); got != c.answer {
			t.Errorf("%s: answered %v, want %v", c.body, got, c.answer)
		}
	}
}

func errText(e *Error) string {
	if e == nil {
		return "nil"
	}
	return e.Message
}

func TestParseRequestAccepts(t *testing.T) {
	f := func(body, id, name, params string) {
		t.Helper()
		var r Request
		if err := r.Parse([]byte(body)); err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		if string(r.ID) != id || string(r.Name) != name || string(r.Params) != params {
			t.Errorf("%s: got id=%q name=%q params=%q, want %q %q %q", body, r.ID, r.Name, r.Params, id, name, params)
		}
		if r.Method != MethodOf([]byte(name)) {
			t.Errorf("%s: method index %d", body, r.Method)
		}
	}
	f(`{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}`, "1", "eth_blockNumber", "[]")
	f(`{"jsonrpc":"2.0","method":"eth_blockNumber"}`, "", "eth_blockNumber", "[]")      // notification
	f(`{"id":1,"method":"eth_chainId","jsonrpc":"2.0"}`, "1", "eth_chainId", "[]")      // the version last
	f(`{"jsonrpc":"2\u002e0","id":1,"method":"eth_chainId"}`, "1", "eth_chainId", "[]") // decoded, as geth reads it
	f(`{"jsonrpc":"2.0","id":null,"method":"eth_chainId","params":null}`, "null", "eth_chainId", "[]")
	f(`{"jsonrpc":"2.0","id":"a\"b","method":"eth_chainId"}`, `"a\"b"`, "eth_chainId", "[]")
	f(`{"jsonrpc":"2.0","id":18446744073709551617,"method":"eth_chainId"}`, "18446744073709551617", "eth_chainId", "[]")
	f(`{"jsonrpc":"2.0","id":1.0,"method":"eth_chainId"}`, "1.0", "eth_chainId", "[]")
	f(`{"jsonrpc":"2.0","id":true,"method":"eth_chainId"}`, "true", "eth_chainId", "[]") // geth accepts any non-structured id
	// Escapes are decoded before any decision: this is admin_nodeInfo.
	f(`{"jsonrpc":"2.0","id":1,"method":"admin\u005fnodeInfo"}`, "1", "admin_nodeInfo", "[]")
	f(`{"\u006asonrpc":"2.0","\u0069d":7,"\u006dethod":"eth_chainId"}`, "7", "eth_chainId", "[]")
	// Whitespace around and inside: params are compacted, strings kept byte for byte.
	f(" \n{ \"jsonrpc\" : \"2.0\" , \"id\" : 2 , \"method\" : \"eth_getBalance\" , \"params\" : [ \"0xAb\" ,\n \"latest\" ] } \t",
		"2", "eth_getBalance", `["0xAb","latest"]`)
	f(`{"jsonrpc":"2.0","id":1,"method":"eth_call","params":[{"data":"a b\t"} , "latest"]}`, "1", "eth_call", `[{"data":"a b\t"},"latest"]`)
	f(`{"jsonrpc":"2.0","id":1,"method":"rpc_modules","params":{"a":1}}`, "1", "rpc_modules", `{"a":1}`) // eth_subscribe refuses object params (subscribe.go)
	// Other members are ignored: they are never forwarded.
	f(`{"jsonrpc":"2.0","id":1,"method":"eth_chainId","foo":{"id":9},"result":1}`, "1", "eth_chainId", "[]")
}

func TestAppendEnvelope(t *testing.T) {
	var r Request
	if err := r.Parse([]byte(`{"jsonrpc":"2.0","ID":5,"id":1,"method":"x"}`)); err == nil {
		t.Fatal("accepted a case variant")
	}
	if err := r.Parse([]byte(` {"params" : [ 1, {"a" : "b c"} ], "method":"eth_\u0063all","id":"z","extra":1, "jsonrpc" : "2.0"} `)); err != nil {
		t.Fatal(err)
	}
	got := AppendEnvelope(nil, []byte("42"), &r)
	want := `{"jsonrpc":"2.0","id":42,"method":"eth_call","params":[1,{"a":"b c"}]}`
	if string(got) != want {
		t.Fatalf("envelope %s, want %s", got, want)
	}
}

func TestKeyIsBoundedWithEscapes(t *testing.T) {
	key := []byte(`"` + strings.Repeat(`\u0061`, 1<<20) + `"`)
	if KeyIs(key, "id") {
		t.Fatal("matched")
	}
	if !KeyIs([]byte(`"\u0069\u0064"`), "id") || KeyIs([]byte(`"\u0049d"`), "id") {
		t.Fatal("escaped key decoding")
	}
	// 5 MB of escaped keys scan in about the time of plain ones: the scanner's cost is
	// linear. Counted in operations rather than timed: KeyIs decodes at most len(name)+1
	// bytes of any key.
	n := testingAllocs(func() { KeyIs(key, "params") })
	if n != 0 {
		t.Fatalf("KeyIs allocates %v", n)
	}
}

func TestParseRequestAllocatesNothing(t *testing.T) {
	bodies := [][]byte{
		[]byte(`{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}`),
		[]byte(`{"jsonrpc":"2.0","id":1,"method":"eth_get\u0042alance","params":[ "0x1", "latest" ]}`),
		[]byte(`{"jsonrpc":"2.0","ID":1,"id":2,"method":"eth_blockNumber"}`),
	}
	var r Request
	for _, b := range bodies {
		r.Parse(b) // grows the params buffer once
		if n := testingAllocs(func() { r.Parse(b) }); n != 0 {
			t.Errorf("Parse(%s) allocates %v times", b, n)
		}
	}
}

// FuzzParseRequest checks the validator against encoding/json's view of the same bytes:
// whenever the gateway accepts a request, encoding/json (case-insensitive keys, last
// duplicate wins) reads the same id, method and params from it. An input where the two
// disagree would let a client steer a Go-based upstream; it must be refused.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}`,
		`{"jsonrpc":"2.0","id":1,"ID":2,"method":"m"}`, `{"jsonrpc":"2.0","id":1,"method":"m","Method":"admin_x"}`,
		`{"jsonrpc":"2.0","id":"x","method":"eth_call","params":[{"to":"0x1"}, "latest"]}`,
		`{"jsonrpc":"2.0","\u0069d":null,"method":"a\u005fb"}`, `{"jsonrpc":"2\u002e0","method":"m","params":null}`,
		`{"jsonrpc":"2.0","method":"m","paramſ":[1]}`, `{"jsonrpc":"2.0","method":"m","params":{"a":[1, 2]}}`,
		`[{"jsonrpc":"2.0","id":1,"method":"m"}]`, `{"id":1,"method":"m"}`, `{"JSONRPC":"2.0","id":1,"method":"m"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Request
		if r.Parse(b) != nil {
			return
		}
		var j struct {
			JSONRPC *string         `json:"jsonrpc"`
			ID      json.RawMessage `json:"id"`
			Method  string          `json:"method"`
			Params  json.RawMessage `json:"params"`
		}
		if err := json.Unmarshal(b, &j); err != nil {
			t.Fatalf("gateway accepted %q, encoding/json: %v", b, err)
		}
		if !bytes.Equal(compact(j.ID), r.ID) {
			t.Fatalf("%q: id %q, encoding/json %q", b, r.ID, j.ID)
		}
		if j.Method != string(r.Name) {
			t.Fatalf("%q: method %q, encoding/json %q", b, r.Name, j.Method)
		}
		jp := compact(j.Params)
		if len(jp) == 0 || string(jp) == "null" {
			jp = []byte("[]")
		}
		if !bytes.Equal(jp, r.Params) {
			t.Fatalf("%q: params %q, encoding/json %q", b, r.Params, jp)
		}
		if j.JSONRPC == nil || *j.JSONRPC != "2.0" {
			t.Fatalf("%q: accepted a request whose version encoding/json reads as %v", b, j.JSONRPC)
		}
		env := AppendEnvelope(nil, []byte("7"), &r)
		if !json.Valid(env) {
			t.Fatalf("%q: envelope %q is not JSON", b, env)
		}
	})
}

func compact(v []byte) []byte {
	if len(v) == 0 {
		return nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, v); err != nil {
		return v
	}
	return buf.Bytes()
}

func testingAllocs(f func()) float64 { return testing.AllocsPerRun(100, f) }

// BenchmarkParseEscapedKeys compares 5 MB of keys written with escapes to the same
// amount written plainly: the scanner's cost is linear in the input either way
// (go test -bench ParseKeys -benchmem ./proto).
func BenchmarkParseKeys(b *testing.B) {
	build := func(key string) []byte {
		var sb strings.Builder
		sb.WriteString(`{"jsonrpc":"2.0","id":1,"method":"eth_chainId"`)
		for sb.Len() < 5<<20 {
			sb.WriteString(`,"` + key + `":1`)
		}
		sb.WriteString("}")
		return []byte(sb.String())
	}
	for _, c := range []struct{ name, key string }{
		{"plain", "aaaaaaaaaaaa"}, {"escaped", `\u0061\u0061`},
	} {
		body := build(c.key)
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			var r Request
			for b.Loop() {
				if err := r.Parse(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestParseBlockRefIsStrict(t *testing.T) {
	hash := `"0x` + strings.Repeat("ab", 32) + `"`
	f := func(v string, kind BlockKind, n uint64) {
		t.Helper()
		if k, got := ParseBlockRef([]byte(v)); k != kind || got != n {
			t.Errorf("ParseBlockRef(%s) = %v %d, want %v %d", v, k, got, kind, n)
		}
	}
	f(`"latest"`, BlockLatest, 0)
	f(`"0x10"`, BlockNumber, 16)
	f(`"earliest"`, BlockNumber, 0)
	f(hash, BlockHash, 0)
	f(`{"blockHash":`+hash+`}`, BlockHash, 0)
	f(`{"blockHash":`+hash+`,"requireCanonical":true}`, BlockHash, 0)
	f(`{"blockNumber":"0x5"}`, BlockNumber, 5)
	// What an upstream might read differently is not relied on.
	f(`"\u006catest"`, BlockInvalid, 0)
	f(`"0x`+strings.Repeat("zz", 32)+`"`, BlockInvalid, 0)
	f(`{"blockHash":`+hash+`,"blockNumber":"0x5"}`, BlockInvalid, 0)
	f(`{"blockNumber":"0x5","BlockNumber":"0x6"}`, BlockInvalid, 0)
	f(`{"blockNumber":"0x5","blockNumber":"0x6"}`, BlockInvalid, 0)
	f(`{"blockhash":`+hash+`}`, BlockInvalid, 0)
	f(`{"blockNumber":`+hash+`}`, BlockInvalid, 0)
}
