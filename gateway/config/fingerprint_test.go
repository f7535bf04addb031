package config

import (
	"io"
	"testing"
)

// The fingerprint follows the file and the flags, and leaves secrets out.
func TestFingerprint(t *testing.T) {
	load := func(env map[string]string, args ...string) Config {
		t.Helper()
		c, err := Load(args, func(k string) string { return env[k] }, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	file1, file2 := [32]byte{1}, [32]byte{2}
	redis := []string{"-redis-addr", "127.0.0.1:6379"}
	tests := []struct {
		name string
		a, b string
		same bool
	}{
		{"again", load(nil).Fingerprint(file1), load(nil).Fingerprint(file1), true},
		{"another file", load(nil).Fingerprint(file1), load(nil).Fingerprint(file2), false},
		{"another flag", load(nil).Fingerprint(file1), load(nil, "-max-batch", "7").Fingerprint(file1), false},
		{"a flag from the environment", load(nil).Fingerprint(file1),
			load(map[string]string{"MAX_BATCH_SIZE": "7"}).Fingerprint(file1), false},
		{"another upstream secret", load(map[string]string{"INFURA_PROJECT_SECRET": "s1"}).Fingerprint(file1),
			load(map[string]string{"INFURA_PROJECT_SECRET": "s2"}).Fingerprint(file1), true},
		{"another redis password", load(map[string]string{"REDIS_PASSWORD": "p1"}, redis...).Fingerprint(file1),
			load(map[string]string{"REDIS_PASSWORD": "p2"}, redis...).Fingerprint(file1), true},
		{"another admin token", load(map[string]string{"ADMIN_TOKEN": "token-one-0123456789"}).Fingerprint(file1),
			load(map[string]string{"ADMIN_TOKEN": "token-two-0123456789"}).Fingerprint(file1), true},
	}
	for _, tc := range tests {
		for _, fp := range []string{tc.a, tc.b} {
			if len(fp) != 12 {
				t.Errorf("%s: %q is not 12 hex digits", tc.name, fp)
			}
		}
		if (tc.a == tc.b) != tc.same {
			t.Errorf("%s: fingerprints %s and %s; want same=%v", tc.name, tc.a, tc.b, tc.same)
		}
	}
}
