package main

import (
	"bytes"
	"log/slog"
	"math"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
)

func TestGoMemLimit(t *testing.T) {
	cases := map[string]struct {
		container int64
		fraction  float64
		want      int64
	}{
		"90% of 1 GiB":              {1 << 30, 0.9, 966367641},
		"all of it":                 {512 << 20, 1, 512 << 20},
		"rounded down":              {1000, 0.3333, 333},
		"a limit near MaxInt64":     {math.MaxInt64, 0.9, math.MaxInt64 / 10 * 9},
		"a limit of MaxInt64, 100%": {math.MaxInt64, 1, math.MaxInt64},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got := goMemLimit(c.container, c.fraction)
			// Float rounding may move huge limits by a few bytes, never more than 1 in 10^12.
			if d := got - c.want; d > c.want/1e12 || -d > c.want/1e12 {
				t.Errorf("goMemLimit(%d, %v) = %d, want %d", c.container, c.fraction, got, c.want)
			}
			if got > c.container {
				t.Errorf("goMemLimit(%d, %v) = %d, above the container limit", c.container, c.fraction, got)
			}
		})
	}
}

func TestMemLimitSettings(t *testing.T) {
	cases := map[string]struct {
		args    []string
		env     map[string]string
		rest    []string
		want    memLimit
		wantErr string
	}{
		"defaults":                   {args: []string{"-listen", ":1"}, rest: []string{"-listen", ":1"}, want: memLimit{fraction: 0.9}},
		"from the environment":       {env: map[string]string{"CONTAINER_MEMORY_LIMIT": "1073741824", "MEMORY_LIMIT_FRACTION": "0.5"}, want: memLimit{container: 1 << 30, fraction: 0.5}},
		"flags over environment":     {args: []string{"-cache", "-container-memory-limit=268435456", "--memory-limit-fraction", "1", "-log-level", "debug"}, env: map[string]string{"CONTAINER_MEMORY_LIMIT": "1", "MEMORY_LIMIT_FRACTION": "0.5"}, rest: []string{"-cache", "-log-level", "debug"}, want: memLimit{container: 256 << 20, fraction: 1}},
		"flag with a separate value": {args: []string{"-container-memory-limit", "67108864"}, want: memLimit{container: 64 << 20, fraction: 0.9}},
		"after --, left alone":       {args: []string{"--", "-memory-limit-fraction=2"}, rest: []string{"--", "-memory-limit-fraction=2"}, want: memLimit{fraction: 0.9}},
		"GOMEMLIMIT set":             {env: map[string]string{"GOMEMLIMIT": "100MiB", "CONTAINER_MEMORY_LIMIT": "1073741824"}, want: memLimit{container: 1 << 30, fraction: 0.9, explicit: "100MiB"}},
		"fraction 0":                 {args: []string{"-memory-limit-fraction=0"}, wantErr: "-memory-limit-fraction (env MEMORY_LIMIT_FRACTION): 0 is not in (0, 1]"},
		"fraction above 1":           {env: map[string]string{"MEMORY_LIMIT_FRACTION": "1.5"}, wantErr: "1.5 is not in (0, 1]"},
		"fraction NaN":               {args: []string{"-memory-limit-fraction=NaN"}, wantErr: "is not in (0, 1]"},
		"fraction as a percentage":   {args: []string{"-memory-limit-fraction=90%"}, wantErr: `"90%" is not a number`},
		"fraction without a value":   {args: []string{"-memory-limit-fraction"}, wantErr: "-memory-limit-fraction needs a value"},
		"limit in Mi":                {env: map[string]string{"CONTAINER_MEMORY_LIMIT": "512Mi"}, wantErr: `CONTAINER_MEMORY_LIMIT): "512Mi" is not a number of bytes`},
		"negative limit":             {args: []string{"-container-memory-limit=-1"}, wantErr: "is not a number of bytes"},
		"limit too small":            {env: map[string]string{"CONTAINER_MEMORY_LIMIT": "1048576"}, wantErr: "below 16 MiB"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			rest, got, err := memLimitSettings(c.args, func(k string) string { return c.env[k] })
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("settings %+v, want %+v", got, c.want)
			}
			if !slices.Equal(rest, c.rest) {
				t.Errorf("args left for the gateway %q, want %q", rest, c.rest)
			}
		})
	}
}

// apply sets the runtime's limit from the container's, leaves an explicit GOMEMLIMIT
// alone, and says which it did in one log line.
func TestMemLimitApply(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	cases := map[string]struct {
		m        memLimit
		want     int64
		wantLogs []string
	}{
		"from the container limit": {memLimit{container: 1 << 30, fraction: 0.5}, 1 << 29, []string{`msg="memory limit"`, "source=container", "gomemlimit_bytes=536870912", "container_limit_bytes=1073741824", "fraction=0.5"}},
		"GOMEMLIMIT wins":          {memLimit{container: 1 << 30, fraction: 0.5, explicit: "123456789"}, prev, []string{"source=GOMEMLIMIT"}},
		"no container limit":       {memLimit{fraction: 0.9}, prev, []string{"source=none"}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			debug.SetMemoryLimit(prev)
			var logs bytes.Buffer
			c.m.apply(slog.New(slog.NewTextHandler(&logs, nil)))
			if got := debug.SetMemoryLimit(-1); got != c.want {
				t.Errorf("runtime memory limit %d, want %d", got, c.want)
			}
			for _, w := range c.wantLogs {
				if !strings.Contains(logs.String(), w) {
					t.Errorf("log %q lacks %q", logs.String(), w)
				}
			}
		})
	}
}

// The argument scan never panics, and what it leaves for the gateway's flag parser
// never holds one of its flags before a "--".
func FuzzMemLimitSettings(f *testing.F) {
	for _, s := range []string{"-memory-limit-fraction=0.5", "--container-memory-limit 1", "-memory-limit-fraction", "-- -x", "-cache -container-memory-limit=99999999999 -x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		args := strings.Fields(s)
		rest, m, err := memLimitSettings(args, func(string) string { return "" })
		if err != nil {
			return
		}
		if !(m.fraction > 0 && m.fraction <= 1) || m.container < 0 {
			t.Fatalf("accepted %+v from %q", m, args)
		}
		for _, a := range rest {
			if a == "--" {
				break
			}
			if n, ok := memLimitFlagName(a); ok {
				t.Fatalf("left %q (flag %s) in %q", a, n, rest)
			}
		}
	})
}
