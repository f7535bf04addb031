package proto

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math/bits"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestValidMatchesEncodingJSON(t *testing.T) {
	cases := []string{
		`{}`, `[]`, `""`, `0`, `-0`, `1.5e+10`, `true`, `false`, `null`, ` {"a" : [1, 2, {"b": null}]} `,
		`{"a":"\u00e9\n\"\\"}`, `[1,]`, `{"a":1,}`, `{,}`, `[,1]`, `01`, `1.`, `.5`, `-`, `1e`, `tru`, `nul`,
		`"\x"`, `"\u12"`, "\"a\tb\"", `{"a" 1}`, `{"a":1 "b":2}`, `[1 2]`, `{1:2}`, `"abc`, `{"a":1}}`, `[[[]]]`,
		``, ` `, `{"a":}`, `[-]`, `1 2`, `{"a":[}`, `"\ud800"`, `1E5`, `-12.5E-3`, `[1,2,3]x`,
	}
	for _, c := range cases {
		if got, want := Valid([]byte(c)), json.Valid([]byte(c)); got != want {
			t.Errorf("Valid(%q) = %v, encoding/json says %v", c, got, want)
		}
	}
}

func TestDepthLimit(t *testing.T) {
	deep := strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1)
	if Valid([]byte(deep)) {
		t.Fatal("accepted nesting deeper than MaxDepth")
	}
	ok := strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth)
	if !Valid([]byte(ok)) {
		t.Fatal("rejected nesting at MaxDepth")
	}
}

func TestScanMessage(t *testing.T) {
	f := func(msg, id, method, sub string, isErr bool) {
		t.Helper()
		var m Message
		b := []byte(msg)
		if _, err := ScanMessage(b, &m); err != nil {
			t.Fatalf("ScanMessage(%s): %v", msg, err)
		}
		if got := string(m.ID.Bytes(b)); got != id {
			t.Errorf("%s: id = %q, want %q", msg, got, id)
		}
		if got := string(m.Method.Bytes(b)); got != method {
			t.Errorf("%s: method = %q, want %q", msg, got, method)
		}
		if got := string(m.Subscription.Bytes(b)); got != sub {
			t.Errorf("%s: subscription = %q, want %q", msg, got, sub)
		}
		if got := IsErrorResponse(b); got != isErr {
			t.Errorf("%s: IsErrorResponse = %v, want %v", msg, got, isErr)
		}
	}
	f(`{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"}`, "1", `"eth_blockNumber"`, "", false)
	f(`{"id":18446744073709551617,"result":"0x1"}`, "18446744073709551617", "", "", false)
	f(`{"id":1.0,"error":{"code":-32000,"message":"x"}}`, "1.0", "", "", true)
	f(`{"id":"a\"b","method":"m"}`, `"a\"b"`, `"m"`, "", false)
	f(`{"id":null}`, "null", "", "", false)
	f(`{"jsonrpc":"2.0","method":"eth_subscription","params":{"result":{"subscription":"inner"},"subscription":"0xab"}}`,
		"", `"eth_subscription"`, `"0xab"`, false)
	f(`{"id":1,"id":2}`, "2", "", "", false)               // last wins, like encoding/json
	f(`{"\u0069d":7,"method":"m"}`, "7", `"m"`, "", false) // escaped key
	f(` { "result" : [ ] , "id" : "x" } `, `"x"`, "", "", false)
}

func TestSplicePreservesOtherBytes(t *testing.T) {
	msg := []byte(`{"jsonrpc":"2.0", "id" : 123 ,"result":{"id":5}}`)
	var m Message
	if _, err := ScanMessage(msg, &m); err != nil {
		t.Fatal(err)
	}
	got := Splice(nil, msg, m.ID, []byte(`"client-id"`))
	want := `{"jsonrpc":"2.0", "id" : "client-id" ,"result":{"id":5}}`
	if string(got) != want {
		t.Fatalf("Splice = %s, want %s", got, want)
	}
	if s := FirstMember(msg, "id"); string(s.Bytes(msg)) != "123" {
		t.Fatalf("FirstMember id = %s", s.Bytes(msg))
	}
}

func TestArrayIter(t *testing.T) {
	b := []byte(` [ {"id":1} , 2 ,"x"] `)
	it, err := NewArrayIter(b)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		el, ok, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		got = append(got, string(el.Bytes(b)))
	}
	if strings.Join(got, "|") != `{"id":1}|2|"x"` {
		t.Fatalf("elements = %q", got)
	}
	for _, bad := range []string{`[1,]`, `[1 2]`, `[`, `[1`, `{}`} {
		it, err := NewArrayIter([]byte(bad))
		for err == nil {
			var ok bool
			if _, ok, err = it.Next(); !ok && err == nil {
				break
			}
		}
		if err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", `q"b\s`, "tab\tnl\ncr\r", "\x00\x1f", "<script>&", "é✓"} {
		want, _ := json.Marshal(s)
		if got := AppendString(nil, s); !bytes.Equal(got, want) {
			t.Errorf("AppendString(%q) = %s, want %s", s, got, want)
		}
	}
}

// FuzzScanMessage checks the scanner against encoding/json: the same validity verdict
// (the scanner also requires UTF-8, which encoding/json does not check), and for
// objects the same values for id, method and params.subscription.
func FuzzScanMessage(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}`,
		`{"id":"x","result":{"a":[1,2,3]}}`, `{"id":1.0,"error":{"code":1}}`,
		`{"method":"eth_subscription","params":{"subscription":"0x1","result":{}}}`,
		`{"\u0069d":null}`, `{"id":1,"id":2}`, `[{"id":1},{"id":2}]`, `{"a":"\ud83d\ude00"}`, `{`, `{"a":1,}`,
		"{\"id\":\"\xff\"}", "{\"a\":\"\xed\xa0\x80\"}", "{\"a\":\"é😀\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if Valid(b) != (json.Valid(b) && utf8.Valid(b)) {
			t.Fatalf("Valid(%q) = %v, encoding/json and utf8.Valid disagree", b, Valid(b))
		}
		var m Message
		end, err := ScanMessage(b, &m)
		var obj map[string]json.RawMessage
		jerr := json.Unmarshal(b, &obj)
		if err == nil && SkipWS(b, end) == len(b) {
			if jerr != nil {
				t.Fatalf("scanner accepted %q, encoding/json: %v", b, jerr)
			}
			checkMember(t, b, m.ID, obj, "id")
			checkMember(t, b, m.Method, obj, "method")
			var params map[string]json.RawMessage
			if raw, ok := obj["params"]; ok && json.Unmarshal(raw, &params) == nil {
				checkMember(t, b, m.Subscription, params, "subscription")
			}
		} else if jerr == nil && FirstByte(b) == '{' && utf8.Valid(b) {
			t.Fatalf("scanner rejected %q (%v), encoding/json accepted it", b, err)
		}
	})
}

func checkMember(t *testing.T, b []byte, s Span, obj map[string]json.RawMessage, name string) {
	t.Helper()
	raw, ok := obj[name]
	if ok != s.Present() {
		t.Fatalf("%q: member %s present=%v, encoding/json says %v", b, name, s.Present(), ok)
	}
	if ok && !bytes.Equal(bytes.TrimSpace(raw), s.Bytes(b)) {
		t.Fatalf("%q: member %s = %q, encoding/json says %q", b, name, s.Bytes(b), raw)
	}
}

// FuzzSplice checks that replacing the id keeps every other byte: splicing the original
// id back gives the original message, and the result decodes to the same object apart
// from the id.
func FuzzSplice(f *testing.F) {
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"result":"0x1"}`), []byte(`"abc"`))
	f.Add([]byte(`{"result":{"id":9},"id":18446744073709551617}`), []byte(`1.0`))
	f.Add([]byte(` {"id" : null , "error":{}} `), []byte(`-12`))
	f.Fuzz(func(t *testing.T, msg, id []byte) {
		var m Message
		end, err := ScanMessage(msg, &m)
		if err != nil || SkipWS(msg, end) != len(msg) || !m.ID.Present() || !Valid(id) {
			return
		}
		id = TrimWS(id)
		out := Splice(nil, msg, m.ID, id)
		var m2 Message
		if _, err := ScanMessage(out, &m2); err != nil {
			t.Fatalf("spliced message does not scan: %q: %v", out, err)
		}
		if !bytes.Equal(m2.ID.Bytes(out), id) {
			t.Fatalf("id = %q, want %q", m2.ID.Bytes(out), id)
		}
		if back := Splice(nil, out, m2.ID, m.ID.Bytes(msg)); !bytes.Equal(back, msg) {
			t.Fatalf("round trip changed bytes:\n%q\n%q", msg, back)
		}
		var a, b map[string]json.RawMessage
		if json.Unmarshal(msg, &a) != nil || json.Unmarshal(out, &b) != nil {
			t.Fatalf("encoding/json rejects %q or %q", msg, out)
		}
		delete(a, "id")
		delete(b, "id")
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		if !bytes.Equal(ja, jb) {
			t.Fatalf("members other than id changed: %s vs %s", ja, jb)
		}
	})
}

// FuzzAnswerFastPaths checks the fast paths of FirstMember, IsErrorResponse and Valid for the usual
// answer layout against their general scans.
func FuzzAnswerFastPaths(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"result":"0x10"}`, `{"jsonrpc":"2.0","id":"a","error":{"code":-32000,"message":"x"}}`,
		`{"jsonrpc":"2.0","id":null,"result":{"a":[1,{"b":2}]},"error":1}`, `{"jsonrpc":"2.0","id":1}`,
		`{"jsonrpc":"2.0","id":1 ,"result":1}`, `{"jsonrpc":"2.0","id":1,"resul\u0074":2}`, `{"jsonrpc":"2.0","id":[1,"result"],"x":1}`,
		`{"jsonrpc":"2.0","id":1,"result":}`, `{"jsonrpc":"2.0","id":1,"result":1,"result":2}`, `{"jsonrpc":"2.0","id":{"id":2},"id":3}`,
		`{"jsonrpc":"2.0","id":1,"result":"0x1"} `, `{"jsonrpc":"2.0","id":1,"result":"0x1"}x`, `{"jsonrpc":"2.0","id":1,"result":1}{}`,
		"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\"\xff\"}", `{"jsonrpc":"2.0","id":1,"error":{"code":1},"x":[}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, name := range []string{"id", "result", "error", "jsonrpc", "x", "resul"} {
			if got, want := FirstMember(b, name), firstMemberScan(b, name); got != want {
				t.Fatalf("FirstMember(%q, %q) = %v, the general scan says %v", b, name, got, want)
			}
		}
		if got, want := IsErrorResponse(b), isErrorScan(b); got != want {
			t.Fatalf("IsErrorResponse(%q) = %v, the general scan says %v", b, got, want)
		}
		if got, want := Valid(b), validScan(b); got != want {
			t.Fatalf("Valid(%q) = %v, the general scan says %v", b, got, want)
		}
	})
}

// scanStringRef is scanString one byte at a time, the reference for its eight-byte path.
func scanStringRef(b []byte, i int) (int, bool, error) {
	escaped := false
	for i++; i < len(b); {
		switch c := b[i]; {
		case c == '"':
			return i + 1, escaped, nil
		case c == '\\':
			escaped = true
			if i+1 >= len(b) {
				return i, escaped, ErrSyntax
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return i, escaped, ErrSyntax
				}
				i += 6
			default:
				return i, escaped, ErrSyntax
			}
		case c < 0x20:
			return i, escaped, ErrSyntax
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				return i, escaped, ErrSyntax
			}
			i += size
		default:
			i++
		}
	}
	return i, escaped, ErrSyntax
}

func FuzzScanString(f *testing.F) {
	for _, s := range []string{
		`"0xabcdef0123456789abcdef0123456789"`, `"abcdefg\"hijklmnop"`, `"abcdefgh\\ijklmnop"`, "\"abcdefgh\x1fijk\"",
		"\"abcdefgh\xc3\xa9ijklmnop\"", "\"abcdefgh\xffijk\"", `"abcdefghijklmnop`, `"abcdefghijklmn\u00e9op"`, `""`, `"a"`,
		"\"abcdefg\x7f\x20!#~[]{}abcdefgh\"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 {
			return
		}
		end, esc, err := scanString(b, 0)
		rend, resc, rerr := scanStringRef(b, 0)
		if end != rend || esc != resc || err != rerr {
			t.Fatalf("scanString(%q) = %d %v %v, byte by byte %d %v %v", b, end, esc, err, rend, resc, rerr)
		}
	})
}

// TestLookMask: the lowest marked byte is the first that needs a look, whatever
// follows it (a borrow may mark later bytes; the scan uses only the lowest).
func TestLookMask(t *testing.T) {
	needs := func(c byte) bool { return c == '"' || c == '\\' || c < 0x20 || c >= 0x80 }
	for c := 0; c < 256; c++ {
		for pos := range 8 {
			for _, after := range []byte{'a', 0x00, 0x1f, 0x20, '"', '\\', 0x7f, 0x80, 0xff} {
				var w [8]byte
				for i := range w {
					switch {
					case i < pos:
						w[i] = 'a'
					case i == pos:
						w[i] = byte(c)
					default:
						w[i] = after
					}
				}
				want := 8 // none
				for i, b := range w {
					if needs(b) {
						want = i
						break
					}
				}
				m := lookMask(binary.LittleEndian.Uint64(w[:]))
				got := 8
				if m != 0 {
					got = bits.TrailingZeros64(m) >> 3
				}
				if got != want {
					t.Fatalf("% x: first byte to look at %d, want %d (mask %#x)", w, got, want, m)
				}
			}
		}
	}
}

// blockAnswer is an eth_getBlockByNumber answer with full transactions of about the
// size of a mainnet block's (~130 KB): mostly hex strings.
var blockAnswer = func() []byte {
	var b strings.Builder
	b.WriteString(`{"jsonrpc":"2.0","id":1,"result":{"number":"0x1406f40","hash":"0x` + strings.Repeat("ab", 32) + `","transactions":[`)
	for i := range 150 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"blockNumber":"0x1406f40","from":"0x` + strings.Repeat("12", 20) + `","gas":"0x5208","hash":"0x` +
			strings.Repeat("cd", 32) + `","input":"0x` + strings.Repeat("ef", 300) + `","nonce":"0x1","r":"0x` +
			strings.Repeat("34", 32) + `","s":"0x` + strings.Repeat("56", 32) + `","to":"0x` + strings.Repeat("78", 20) +
			`","transactionIndex":"0x1","type":"0x2","v":"0x1","value":"0x0"}`)
	}
	b.WriteString(`]}}`)
	return []byte(b.String())
}()

// BenchmarkScanMessageBlock is the Mux reader's scan of a full block answer.
func BenchmarkScanMessageBlock(b *testing.B) {
	var m Message
	b.SetBytes(int64(len(blockAnswer)))
	for b.Loop() {
		if _, err := ScanMessage(blockAnswer, &m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkScanLongString scans a 4 MiB hex string (a large raw transaction or call data).
func BenchmarkScanLongString(b *testing.B) {
	s := []byte(`"0x` + strings.Repeat("ab", 2<<20) + `"`)
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		if _, err := SkipValue(s, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAnswerChecks is the looks at every answer: is it valid JSON (the pool's
// check), is it an error, and (for eth_blockNumber) its result.
func BenchmarkAnswerChecks(b *testing.B) {
	ans := []byte(`{"jsonrpc":"2.0","id":1,"result":"0x1406f41"}`)
	b.Run("IsErrorResponse", func(b *testing.B) {
		for b.Loop() {
			if IsErrorResponse(ans) {
				b.Fatal("not an error")
			}
		}
	})
	b.Run("Valid", func(b *testing.B) {
		for b.Loop() {
			if !Valid(ans) {
				b.Fatal("valid")
			}
		}
	})
	b.Run("FirstMember", func(b *testing.B) {
		for b.Loop() {
			if !FirstMember(ans, "result").Present() {
				b.Fatal("no result")
			}
		}
	})
}

// ValidAnswer is encoding/json's validity (UTF-8 checked), an object, and exactly one of
// "result" and "error" as a key of that object; the table pins the cases the audit
// found relayed.
func TestValidAnswer(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{`{"jsonrpc":"2.0","id":1,"result":"0x1"}`, true},
		{`{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"x"}}`, true},
		{` { "id" : 1 , "result" : null } `, true},
		{`{"jsonrpc":"2.0","id":1,"result":"0x1"} garbage`, false},
		{`{"jsonrpc":"2.0","id":1,"result":"0x1"}{"id":2,"result":1}`, false},
		{`{"jsonrpc":"2.0","id":1}`, false},
		{`{"jsonrpc":"2.0","id":1,"result":1,"error":{"code":1,"message":"x"}}`, false},
		{`{"id":1,"data":{"result":1}}`, false},
		{`[{"jsonrpc":"2.0","id":1,"result":"0x1"}]`, false},
		{`"0x1"`, false},
		{`{"jsonrpc":"2.0","id":1,"result":"0x1"`, false},
	} {
		if got := ValidAnswer([]byte(tc.in)); got != tc.want {
			t.Errorf("ValidAnswer(%s) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func FuzzValidAnswer(f *testing.F) {
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"result":"0x1"}`))
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"x"}} `))
	f.Add([]byte(`{"id":1,"result":1,"result":2}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got := ValidAnswer(b)
		var top map[string]json.RawMessage
		// Stricter than encoding/json on one point: invalid UTF-8 is refused, not replaced.
		want := utf8.Valid(b) && json.Valid(b) && json.Unmarshal(b, &top) == nil && top != nil
		if want {
			_, r := top["result"]
			_, e := top["error"]
			want = r != e
		}
		if got != want {
			t.Fatalf("ValidAnswer(%q) = %v, encoding/json says %v", b, got, want)
		}
	})
}
