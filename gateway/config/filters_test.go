package config

import (
	"io"
	"strings"
	"testing"
	"time"
)

// TestFilterSettings: the filter bounds come from flags or their environment
// variables, default as geth's timeout, and are checked at start with a clear message.
func TestFilterSettings(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want func(Config) bool
		err  string
	}{
		{name: "defaults", want: func(c Config) bool {
			return c.FilterTimeout == 5*time.Minute && c.FilterMaxPerTenant == 100 && c.FilterMaxTotal == 10000 && c.FilterMaxBytes == 64<<20
		}},
		{name: "flags", args: []string{"-filter-timeout", "30s", "-filter-max-per-tenant", "3", "-filter-max-total", "9", "-filter-max-bytes", "2097152"},
			want: func(c Config) bool {
				return c.FilterTimeout == 30*time.Second && c.FilterMaxPerTenant == 3 && c.FilterMaxTotal == 9 && c.FilterMaxBytes == 2<<20
			}},
		{name: "environment", env: map[string]string{"FILTER_TIMEOUT": "1m", "FILTER_MAX_PER_TENANT": "7"},
			want: func(c Config) bool { return c.FilterTimeout == time.Minute && c.FilterMaxPerTenant == 7 }},
		{name: "timeout too short", args: []string{"-filter-timeout", "10ms"}, err: "-filter-timeout must be at least 1s"},
		{name: "per tenant over total", args: []string{"-filter-max-per-tenant", "20", "-filter-max-total", "10"}, err: "at most -filter-max-total"},
		{name: "no filters per tenant", args: []string{"-filter-max-per-tenant", "0"}, err: "-filter-max-per-tenant must be > 0"},
		{name: "bytes too small", args: []string{"-filter-max-bytes", "1000"}, err: "-filter-max-bytes must be at least 1 MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
			if err == nil {
				err = c.Validate()
			}
			switch {
			case tc.err != "":
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
			case err != nil:
				t.Fatal(err)
			case !tc.want(c):
				t.Fatalf("settings: %v %d %d %d", c.FilterTimeout, c.FilterMaxPerTenant, c.FilterMaxTotal, c.FilterMaxBytes)
			}
		})
	}
}
