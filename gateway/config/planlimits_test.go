package config

import (
	"io"
	"strings"
	"testing"
)

// Rates the limiter cannot hold are refused when the file loads, with one line naming
// the plan or upstream: NaN (every comparison false: a plan of requests_per_second .nan
// was no limit at all), a burst that takes longer than 100 years to refill (its
// arithmetic overflowed: burst 2^40 at 1/s admitted one call, then refused all), a rate
// below 1e-9/s (admitted every call).
func TestConfigRatesTheLimiterCanHold(t *testing.T) {
	dir := t.TempDir()
	up := "upstreams:\n  - name: a\n    http: http://x\n"
	for _, tc := range []struct {
		name, file, want string
	}{
		{"plan ok", up + "plans:\n  p: {requests_per_second: 1, burst: 1000000, units_per_second: 0.01}\n", ""},
		{"plan rps NaN", up + "plans:\n  p: {requests_per_second: .nan}\n", `plan "p": limits must be >= 0`},
		{"plan ups NaN", up + "plans:\n  p: {units_per_second: .nan}\n", `plan "p": limits must be >= 0`},
		{"plan burst 2^40 at 1/s", up + "plans:\n  p: {requests_per_second: 1, burst: 1099511627776}\n", `plan "p": burst 1099511627776 at 1 per second`},
		{"plan units burst", up + "plans:\n  p: {units_per_second: 0.5, units_burst: 549755813888}\n", `plan "p": units_burst 549755813888 at 0.5 per second`},
		{"plan tiny rate", up + "plans:\n  p: {requests_per_second: 1e-10}\n", `plan "p": burst 1 at 1e-10 per second`},
		{"per_48 burst", up + "plans:\n  p: {requests_per_second: 1}\nanonymous: {plan: p, per_48: {requests_per_second: 1, burst: 1099511627776}}\n", "anonymous: per_48: burst 1099511627776 at 1 per second"},
		{"budget NaN", up + "    budget: {requests_per_second: .nan}\n", `upstream 1 ("a"): budget: limits must be >= 0`},
		{"budget tiny rate", up + "    budget: {units_per_second: 1e-10}\n", `upstream 1 ("a"): budget: units_per_second 1e-10`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, dir, strings.NewReplacer(" ", "_", "/", "_").Replace(tc.name)+".yaml", tc.file)
			_, err := Load([]string{"-config", path}, func(string) string { return "" }, io.Discard)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("got %v, want one line with %q", err, tc.want)
			}
		})
	}
}
