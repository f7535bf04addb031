package rpcscan

import (
	"encoding/json"
	"testing"
)

func TestParseObject(t *testing.T) {
	f := func(in, id, method, sub string, ok bool) {
		t.Helper()
		var m Message
		end := ParseObject([]byte(in), 0, &m)
		if (end >= 0) != ok {
			t.Fatalf("%s: end %d, want ok=%v", in, end, ok)
		}
		if ok && (string(m.ID) != id || string(m.Method) != method || string(m.Subscription) != sub) {
			t.Fatalf("%s: id %q method %q sub %q", in, m.ID, m.Method, m.Subscription)
		}
	}
	f(`{"id":1,"method":"eth_x"}`, "1", "eth_x", "", true)
	f(`{"params":["}\"]"],"id":"a\\\"b","method":"m"}`, `"a\\\"b"`, "m", "", true)
	f(`{"method":"eth_subscription","params":{"result":{"x":[1,{}]},"subscription":"0xab"}}`, "", "eth_subscription", `"0xab"`, true)
	f(` { "id" : null } `, "null", "", "", true)
	f(`{"id":1,}`, "", "", "", false)
	f(`{"id":1`, "", "", "", false)
	f(`{"id":"x}`, "", "", "", false)
	f(`[1]`, "", "", "", false)
}

// FuzzSkipValue checks that whatever encoding/json accepts as a value, the
// scanner skips to its end.
func FuzzSkipValue(f *testing.F) {
	for _, s := range []string{`1`, `"a\"b"`, `{"a":[1,2,{"b":"]"}]}`, `[]`, `null`, `-1.5e3`, `{"x":"\\"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !json.Valid([]byte(s)) {
			return
		}
		if end := SkipValue([]byte(s), 0); SkipSpace([]byte(s), max(end, 0)) != len(s) || end < 0 {
			t.Fatalf("SkipValue(%q) = %d", s, end)
		}
	})
}

func TestArrayElemAndMember(t *testing.T) {
	arr := []byte(` ["a", {"b":[1,2]} , true ] `)
	if string(ArrayElem(arr, 1)) != `{"b":[1,2]}` || string(ArrayElem(arr, 2)) != "true" || ArrayElem(arr, 3) != nil {
		t.Fatal("ArrayElem")
	}
	if string(Member([]byte(`{"a":1,"code":-32601}`), "code")) != "-32601" || Member([]byte(`{}`), "x") != nil {
		t.Fatal("Member")
	}
	var n int
	if !EachElem([]byte(`[1, [2,3], "4"]`), 0, func([]byte) { n++ }) || n != 3 {
		t.Fatalf("EachElem %d", n)
	}
}
