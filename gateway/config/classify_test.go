package config

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/upstream"
)

// kind, errors: and quota_reset reach the upstream specs, at the top level and in a
// network; bad values are refused at start with one line naming the upstream.
func TestConfigFileClassify(t *testing.T) {
	const file = `
upstreams:
  - name: infura
    http: https://mainnet.infura.io/v3/k
    quota_reset: "09:30"
  - name: own
    http: http://10.0.0.7:8545
    kind: alchemy
    errors:
      - {code: -32000, message_contains: busy, class: throttled, backoff: 2s}
      - {http_status: 503, class: throttled}
    quota_reset: monthly:1
`
	path := writeFile(t, t.TempDir(), "gateway.yaml", file)
	c, err := Load([]string{"-config", path}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	specs := c.UpstreamSpecs()
	if s := specs[0]; s.Kind != "" || s.QuotaReset != (upstream.QuotaReset{Minute: 9*60 + 30}) || len(s.Errors) != 0 {
		t.Errorf("infura: %+v", s)
	}
	want := []upstream.ErrorRule{
		{Code: -32000, HasCode: true, MessageContains: "busy", Class: upstream.AnswerThrottled, Backoff: 2 * time.Second},
		{HTTPStatus: 503, Class: upstream.AnswerThrottled},
	}
	s := specs[1]
	if s.Kind != upstream.KindAlchemy || s.QuotaReset != (upstream.QuotaReset{Day: 1}) || len(s.Errors) != 2 ||
		s.Errors[0] != want[0] || s.Errors[1] != want[1] {
		t.Errorf("own: %+v", s)
	}

	dir := t.TempDir()
	for _, c := range []struct{ name, entry, want string }{
		{"unknown kind", "kind: infra", `upstream 1 ("a"): kind "infra"`},
		{"unknown class", "errors: [{code: 1, class: slow}]", `errors rule 1: unknown class "slow"`},
		{"empty rule", "errors: [{class: throttled}]", "errors rule 1: empty rule"},
		{"no class", "errors: [{code: 1}]", `errors rule 1: unknown class ""`},
		{"bad status", "errors: [{http_status: 42, class: throttled}]", "http_status 42"},
		{"bad backoff", "errors: [{code: 1, class: throttled, backoff: soon}]", "not a duration"},
		{"bad quota_reset", "quota_reset: midnight", `quota_reset "midnight"`},
		{"bad monthly", "quota_reset: monthly:40", "monthly:D"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := writeFile(t, dir, strings.ReplaceAll(c.name, " ", "_")+".yaml",
				"upstreams:\n  - name: a\n    http: http://x\n    "+c.entry+"\n")
			_, err := Load([]string{"-config", path}, func(string) string { return "" }, io.Discard)
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("got %v, want one line mentioning %q", err, c.want)
			}
		})
	}
}
