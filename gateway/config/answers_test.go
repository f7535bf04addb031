package config

import (
	"io"
	"strings"
	"testing"
)

// TestMaxAnswerBytes: the answer budget comes from its flag or environment variable,
// defaults to 256 MiB, and one answer of -max-response-body must fit in it.
func TestMaxAnswerBytes(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want int
		err  string
	}{
		{name: "default", want: 256 << 20},
		{name: "flag", args: []string{"-max-answer-bytes", "67108864"}, want: 64 << 20},
		{name: "environment", env: map[string]string{"MAX_ANSWER_BYTES": "50000000"}, want: 50000000},
		{name: "below one answer", args: []string{"-max-response-body", "2000000", "-max-answer-bytes", "1999999"},
			err: "-max-answer-bytes must be at least -max-response-body"},
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
			case c.MaxAnswerBytes != tc.want:
				t.Fatalf("-max-answer-bytes %d, want %d", c.MaxAnswerBytes, tc.want)
			}
		})
	}
}
