package admin

import (
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/valyala/fasthttp"
)

// Whatever an admin request's body or query holds, parseCordonRequest never panics,
// and what it accepts is bounded: an upstream named, a reason to cordon or drain, every
// field short, UTF-8 and free of control characters (they reach logs, /status and
// Redis), a timeout only for a drain and within MaxDrainTimeout.
func FuzzParseCordonRequest(f *testing.F) {
	for _, seed := range []struct{ body, query string }{
		{`{"upstream":"a","reason":"maintenance","by":"alice"}`, ""},
		{`{"network":"mainnet","upstream":"a","reason":"x","timeout":"30s"}`, ""},
		{"", "upstream=a&reason=x"},
		{`{"upstream":"a","reason":"x\u0000"}`, ""},
		{`{"upstream":`, ""},
		{`{"upstream":"a","reason":"x","extra":1}`, ""},
		{"", "upstream=%ff&reason=%0a"},
	} {
		f.Add(seed.body, seed.query, uint8(0))
		f.Add(seed.body, seed.query, uint8(2))
	}
	f.Fuzz(func(t *testing.T, body, query string, a uint8) {
		act := action(a % 3)
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.SetMethod("POST")
		ctx.Request.SetRequestURI("/admin/cordon?" + query)
		ctx.Request.SetBodyString(body)
		req, e := parseCordonRequest(&ctx, act)
		if e != nil {
			if e.Status != fasthttp.StatusBadRequest {
				t.Fatalf("refused with status %d", e.Status)
			}
			return
		}
		if req.Upstream == "" || act != actUncordon && req.Reason == "" {
			t.Fatalf("accepted without an upstream or reason: %+v", req)
		}
		for _, v := range []string{req.Network, req.Upstream, req.Reason, req.By} {
			if len(v) > maxReason || !utf8.ValidString(v) {
				t.Fatalf("accepted %q", v)
			}
			for _, r := range v {
				if unicode.IsControl(r) {
					t.Fatalf("accepted a control character in %q", v)
				}
			}
		}
		if req.Timeout != "" {
			d, err := time.ParseDuration(req.Timeout)
			if act != actDrain || err != nil || d < 0 || d > MaxDrainTimeout {
				t.Fatalf("accepted timeout %q for action %d", req.Timeout, act)
			}
		}
	})
}
