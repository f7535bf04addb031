package proto

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestBlockByNumberParams(t *testing.T) {
	cases := []struct {
		body, want string
		code       int // 0: success
		msg        string
	}{
		{`{"block":"latest","txdetails":"false"}`, `["latest",false]`, 0, ""},
		{`{"block":"latest","txdetails":true}`, `["latest",true]`, 0, ""},
		{`{"block":"LATEST"}`, `["latest",false]`, 0, ""},
		{`{"block":"earliest","txdetails":false}`, `["earliest",false]`, 0, ""},
		{`{"block":"pending","txdetails":"true"}`, `["pending",true]`, 0, ""},
		{`{"block":"safe"}`, `["safe",false]`, 0, ""},
		{`{"block":"finalized"}`, `["finalized",false]`, 0, ""},
		{`{"block":"0xc6af55","txdetails":"true"}`, `["0xc6af55",true]`, 0, ""},
		{`{"block":"0x00c6AF55"}`, `["0xc6af55",false]`, 0, ""},
		{`{"block":"0x0"}`, `["0x0",false]`, 0, ""},
		{`{"block":"13020000"}`, `["0xc6ab60",false]`, 0, ""},
		{`{"block":13020000}`, `["0xc6ab60",false]`, 0, ""},
		{` { "txdetails" : "true" , "block" : 0 } `, `["0x0",true]`, 0, ""},
		{`{"block":"latest","txdetails":null}`, `["latest",false]`, 0, ""},
		{`{"block":"latest","extra":[1,{"x":2}]}`, `["latest",false]`, 0, ""},
		// Escapes decode as the node decodes them: the value is what the JSON says.
		{`{"block":"\u006catest"}`, `["latest",false]`, 0, ""},
		{`{"block":"\u0030x1b4"}`, `["0x1b4",false]`, 0, ""},
		{`{"block":"4\u00336"}`, `["0x1b4",false]`, 0, ""},
		{`{"block":"l\u0061test\u0000"}`, ``, CodeInvalidParams, `"block"`},
		{`{"block":"\u006c` + strings.Repeat("a", 40) + `"}`, ``, CodeInvalidParams, `"block"`},
		{``, ``, CodeParseError, "empty body"},
		{`{"block":"latest"`, ``, CodeParseError, "parse error"},
		{`{"block":"latest"} x`, ``, CodeParseError, "parse error"},
		{`not json`, ``, CodeParseError, "parse error"},
		{`["latest"]`, ``, CodeInvalidParams, "JSON object"},
		{`{}`, ``, CodeInvalidParams, `missing "block"`},
		{`{"block":null}`, ``, CodeInvalidParams, `missing "block"`},
		{`{"txdetails":true}`, ``, CodeInvalidParams, `missing "block"`},
		{`{"block":"banana"}`, ``, CodeInvalidParams, `got "banana"`},
		{`{"block":"0x"}`, ``, CodeInvalidParams, `"block"`},
		{`{"block":"0xg1"}`, ``, CodeInvalidParams, `"block"`},
		{`{"block":-1}`, ``, CodeInvalidParams, `"block"`},
		{`{"block":1.5}`, ``, CodeInvalidParams, `"block"`},
		{`{"block":"0x8000000000000000"}`, ``, CodeInvalidParams, `"block"`},
		{`{"block":"99999999999999999999999"}`, ``, CodeInvalidParams, `"block"`},
		{`{"block":true}`, ``, CodeInvalidParams, `"block"`},
		{`{"block":"latest","txdetails":"maybe"}`, ``, CodeInvalidParams, `"txdetails"`},
		{`{"block":"latest","txdetails":1}`, ``, CodeInvalidParams, `"txdetails"`},
		{`{"block":"` + strings.Repeat("a", 500) + `"}`, ``, CodeInvalidParams, `...`},
	}
	for _, c := range cases {
		got, err := AppendBlockByNumberParams(nil, []byte(c.body))
		checkREST(t, c.body, string(got), err, c.want, c.code, c.msg)
	}
}

func TestTxByBlockAndIndexParams(t *testing.T) {
	cases := []struct {
		body, want string
		code       int
		msg        string
	}{
		{`{"block":"0xc68e80","index":"0x11"}`, `["0xc68e80","0x11"]`, 0, ""},
		{`{"block":"latest","index":"17"}`, `["latest","0x11"]`, 0, ""},
		{`{"block":13020000,"index":0}`, `["0xc6ab60","0x0"]`, 0, ""},
		{`{"block":"latest"}`, ``, CodeInvalidParams, `missing "index"`},
		{`{"index":"0x0"}`, ``, CodeInvalidParams, `missing "block"`},
		{`{"block":"latest","index":"x"}`, ``, CodeInvalidParams, `"index"`},
		{`{"block":"latest","index":-1}`, ``, CodeInvalidParams, `"index"`},
		{`{"block":"latest","index":"0x10000000000000000"}`, ``, CodeInvalidParams, `"index"`},
		{`{"block":"\u006catest","index":"\u0030x11"}`, `["latest","0x11"]`, 0, ""},
	}
	for _, c := range cases {
		got, err := AppendTxByBlockAndIndexParams(nil, []byte(c.body))
		checkREST(t, c.body, string(got), err, c.want, c.code, c.msg)
	}
}

func checkREST(t *testing.T, body, got string, err *Error, want string, code int, msg string) {
	t.Helper()
	if code == 0 {
		if err != nil {
			t.Errorf("%s: unexpected error %v", body, err)
		} else if got != want {
			t.Errorf("%s: params = %s, want %s", body, got, want)
		}
		return
	}
	if err == nil {
		t.Errorf("%s: no error, params %s", body, got)
		return
	}
	if err.Code != code || !strings.Contains(err.Message, msg) || err.Status != 400 {
		t.Errorf("%s: error %d %d %q, want code %d containing %q, status 400", body, err.Status, err.Code, err.Message, code, msg)
	}
	if len(err.Message) > 400 {
		t.Errorf("%s: error message not bounded (%d bytes)", body, len(err.Message))
	}
}

func TestRESTParsingAllocatesNothing(t *testing.T) {
	body := []byte(`{"block":"0xc6af55","txdetails":"true"}`)
	escaped := []byte(`{"block":"\u006catest","txdetails":"true"}`)
	dst := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() {
		_, _ = AppendBlockByNumberParams(dst[:0], body)
		_, _ = AppendBlockByNumberParams(dst[:0], escaped)
	}); n != 0 {
		t.Fatalf("AppendBlockByNumberParams allocates %v per call", n)
	}
}

// FuzzRESTBody: whatever the body, the parsers never panic, and what they accept is
// a valid JSON params array that encoding/json agrees the body was an object for.
func FuzzRESTBody(f *testing.F) {
	for _, s := range []string{
		`{"block":"latest","txdetails":"true"}`, `{"block":13020000,"index":"0x1"}`, `{"block":"0xc6af55"}`,
		`{"block":"banana"}`, `{`, `[]`, `{"block":"0x","index":-1}`, `{"block":"\u006c"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, parse := range []func(dst, body []byte) ([]byte, *Error){AppendBlockByNumberParams, AppendTxByBlockAndIndexParams} {
			out, err := parse(nil, body)
			if err != nil {
				if err.Status != 400 {
					t.Fatalf("%q: status %d", body, err.Status)
				}
				continue
			}
			var params []json.RawMessage
			if e := json.Unmarshal(out, &params); e != nil || len(params) != 2 {
				t.Fatalf("%q: produced invalid params %q: %v", body, out, e)
			}
			var obj map[string]json.RawMessage
			if e := json.Unmarshal(body, &obj); e != nil {
				t.Fatalf("%q accepted but encoding/json rejects it: %v", body, e)
			}
		}
	})
}
