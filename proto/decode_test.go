package proto

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// Params reach every decision and the upstream with escapes resolved: one spelling per
// value (issue 19, F6), the escapes JSON needs kept, the value unchanged.
func TestCompactResolvesEscapes(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`["l\u0061test",false]`, `["latest",false]`},
		{`[ "\u0030x1" , "s\u0061fe" ]`, `["0x1","safe"]`},
		{`[{"d\u0061ta":"a\"b\\c\n\u0001"}]`, `[{"data":"a\"b\\c\n\u0001"}]`},
		{`["\ud83d\ude00\/"]`, `["😀/"]`},
		{`["plain","0xAbC"]`, `["plain","0xAbC"]`},
		{`["` + strings.Repeat(`\u0061`, 100) + `"]`, `["` + strings.Repeat("a", 100) + `"]`},
	} {
		got := AppendCompact(nil, []byte(c.in))
		if string(got) != c.want {
			t.Errorf("AppendCompact(%s) = %s, want %s", c.in, got, c.want)
		}
		var a, b any
		if json.Unmarshal([]byte(c.in), &a) != nil || json.Unmarshal(got, &b) != nil || !reflect.DeepEqual(a, b) {
			t.Errorf("AppendCompact(%s) = %s: not the same value", c.in, got)
		}
		if isCompact([]byte(c.in)) && c.in != c.want {
			t.Errorf("isCompact(%s) is true: the escapes would reach the upstream", c.in)
		}
	}
}
