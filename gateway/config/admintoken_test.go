package config

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// The admin token is a secret: from the flag or ADMIN_TOKEN, checked at start with a
// message that never holds it, never in usage text nor in the logged configuration.
func TestAdminToken(t *testing.T) {
	const tok = "s3cr3t-admin-token-value"
	for _, c := range []struct {
		name string
		env  map[string]string
		args []string
		want string // "" : accepted
	}{
		{"from the environment", map[string]string{"ADMIN_TOKEN": tok}, nil, ""},
		{"from the flag", nil, []string{"-admin-token", tok}, ""},
		{"none", nil, nil, ""},
		{"too short", map[string]string{"ADMIN_TOKEN": "short-s3cr3t"}, nil, "at least 16 characters"},
		{"without the admin listener", map[string]string{"ADMIN_TOKEN": tok}, []string{"-admin-listen", ""}, "needs the admin listener"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			cfg, err := Load(c.args, func(k string) string { return c.env[k] }, &out)
			switch {
			case c.want == "" && err != nil:
				t.Fatal(err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("error %v, want %q", err, c.want)
			case err != nil && strings.Contains(err.Error(), "s3cr3t"):
				t.Fatalf("the error shows the token: %v", err)
			case err == nil && c.want == "" && len(c.env)+len(c.args) > 0 && cfg.AdminToken != tok:
				t.Fatalf("token %q", cfg.AdminToken)
			}
			if logged := fmt.Sprint(cfg.LogValue()); strings.Contains(logged, "s3cr3t") {
				t.Fatalf("the logged configuration shows the token: %s", logged)
			}
		})
	}
	// Usage text shows where the value came from, never the value.
	var out bytes.Buffer
	_, _ = Load([]string{"-h"}, func(k string) string { return map[string]string{"ADMIN_TOKEN": tok}[k] }, &out)
	if !strings.Contains(out.String(), "-admin-token") || strings.Contains(out.String(), tok) {
		t.Fatalf("usage: token shown, or flag missing:\n%s", out.String())
	}
}
