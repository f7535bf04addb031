package redact

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

func TestRedactPath(t *testing.T) {
	cases := []struct{ in, want string }{
		{"/", "/"},
		{"/v3", "/v3"},
		{"/v3/", "/v3/"},
		{"/v3/key", "/v3/redacted"},
		{"/v3/key/", "/v3/redacted"},
		{"/v3/key/extra/more", "/v3/redacted"},
		{"/ws/v3/key", "/ws/v3/redacted"},
		{"/ws/v3/key/", "/ws/v3/redacted"},
		{"/V3/key", "/V3/redacted"},
		{"/api/v3/key", "/api/v3/redacted"},
		{"/%76%33/key", "/%76%33/redacted"},
		{"/v3%2Fkey", "/v3%2Fredacted"},
		{"/v3/key with space", "/v3/redacted"},
		{"/blocknumber", "/blocknumber"},
		{"/v2/key", "/v2/key"},
	}
	for _, c := range cases {
		if got := Path(c.in); got != c.want {
			t.Errorf("Path(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestRedactClientBytes(t *testing.T) {
	cases := []struct{ in, want string }{
		{`error when serving connection "127.0.0.1:8000"<->"[::1]:5555": body size exceeds the given limit`,
			`error when serving connection "127.0.0.1:8000"<->"[::1]:5555": body size exceeds the given limit`},
		{`malformed mime header: missing colon: "X-API-Key secret": buffer size=75, contents: "POST /v3/k HTTP/1.1"`,
			`malformed mime header: missing colon: "(redacted)": buffer size=75, contents: "(redacted)"`},
		{`invalid header value "Bearer \"quoted\" key"`, `invalid header value "(redacted)"`},
		{`unterminated "GET /v3/key`, `unterminated "(redacted)"`},
		// ctx.Logger's prefix: the request line unquoted.
		{`0.001 #0000000100000001 - 127.0.0.1:8000<->127.0.0.1:5555 - POST http://gw/v3/key/x - oops`,
			`0.001 #0000000100000001 - 127.0.0.1:8000<->127.0.0.1:5555 - POST http://gw/v3/redacted - oops`},
	}
	for _, c := range cases {
		if got := ClientBytes(c.in); got != c.want {
			t.Errorf("ClientBytes(%q)\n = %q\nwant %q", c.in, got, c.want)
		}
	}
}

// FuzzRedactPath: whatever precedes /v3/ and whatever follows it, nothing after it
// survives.
func FuzzRedactPath(f *testing.F) {
	for _, s := range [][2]string{{"", "key"}, {"/ws", "key/"}, {"/x/..", "a/b?c=d"}, {"/v%33", "k"}, {"%2F", "%2F"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, prefix, secret string) {
		p := prefix + "/v3/" + secret
		got := Path(p)
		if len(got) > len(prefix)+len("/v3/")+len(redacted) || !strings.HasPrefix(p, strings.TrimSuffix(got, redacted)) {
			t.Fatalf("Path(%q) = %q: more than the prefix kept", p, got)
		}
		if secret != "" && !strings.HasSuffix(got, redacted) {
			t.Fatalf("Path(%q) = %q: not redacted", p, got)
		}
	})
}

// FuzzRedactClientBytes: a quoted part that is not an address never survives.
func FuzzRedactClientBytes(f *testing.F) {
	for _, s := range []string{"GET /v3/key HTTP/1.1\r\n", "X-API-Key: k", "127.0.0.1:80", `"`, "\x00\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, secret string) {
		if _, err := netip.ParseAddrPort(secret); err == nil {
			return
		}
		msg := fmt.Sprintf("error when reading request headers: invalid header %q: buffer size=1, contents: %q", secret, secret)
		want := `error when reading request headers: invalid header "(redacted)": buffer size=1, contents: "(redacted)"`
		if got := ClientBytes(msg); got != want {
			t.Fatalf("ClientBytes(%q) = %q", msg, got)
		}
	})
}

func TestUnknownPath(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"/nope", "/nope"},
		{"/", "/"},
		{"//blocknumber", "//blocknumber"},
		{"/v2/abc123def", "/v2/redacted"},
		{"/v2/rpc", "/v2/redacted"},
		{"/v3abcdef0123456789", "/redacted"},
		{"/NEARKEYmaterial0123456789/x", "/redacted/x"},
		{"/rpc/v1/token-value-xyz/", "/rpc/v1/redacted/"},
		{"/v3/key/extra", "/v3/redacted"},
		{"/blocknumber/", "/blocknumber/"},
		{"/txbyblockandindex/x", "/redacted/x"},
	} {
		if got := UnknownPath(c.in); got != c.want {
			t.Errorf("UnknownPath(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
