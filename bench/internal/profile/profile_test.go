package profile

import (
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

func TestParseErrors(t *testing.T) {
	f := func(doc, why string) {
		t.Helper()
		if _, err := Parse([]byte(doc)); err == nil {
			t.Fatalf("%s: Parse(%s) succeeded", why, doc)
		}
	}
	f(`{`, "bad json")
	f(`{"stages":[]}`, "no stages")
	f(`{"stages":[{"duration":"10x","target":1}]}`, "bad duration")
	f(`{"stages":[{"duration":"10s"}]}`, "missing target")
	f(`{"stages":[{"duration":"10s","target":-1}]}`, "negative target")
	f(`{"stages":[{"duration":"-1s","target":1}]}`, "negative duration")
}

func TestVUs(t *testing.T) {
	p, err := Parse([]byte(`{"description":"d","stages":[
		{"duration":"10s","target":10},
		{"duration":"10s","target":110},
		{"duration":"0s","target":50},
		{"duration":"5s","target":0}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if p.Duration() != 25*time.Second || p.MaxVUs(1) != 110 || p.Description != "d" {
		t.Fatalf("duration %v max %d", p.Duration(), p.MaxVUs(1))
	}
	cases := []struct {
		start int
		t     time.Duration
		want  int
	}{
		{1, 0, 1},
		{1, 999 * time.Millisecond, 1},             // 1 + 9*0.0999 = 1.899: not yet 2
		{1, 1112 * time.Millisecond, 2},            // 1 + 9*0.1112 = 2.0008
		{1, 5 * time.Second, 5},                    // 1 + 4.5 = 5.5 truncated
		{0, 5 * time.Second, 5},                    // startVUs 0
		{1, 10 * time.Second, 10},                  // second stage starts at 10
		{1, 15 * time.Second, 60},                  // 10 + 100*0.5
		{1, 19999 * time.Millisecond, 109},         // 10 + 99.99
		{1, 20 * time.Second, 50},                  // zero-length stage jumps to 50
		{1, 20*time.Second + time.Millisecond, 50}, // ramp down: 50 - 0.01 truncates toward 50
		{1, 22500 * time.Millisecond, 25},          // 50 - 25
		{1, 24999 * time.Millisecond, 1},           // 50 - 49.99 = 0.01 -> toward 50: 1
		{1, 25 * time.Second, 0},                   // over
		{1, time.Hour, 0},
	}
	for _, c := range cases {
		if got := p.VUs(c.start, c.t); got != c.want {
			t.Errorf("VUs(start=%d, %v) = %d, want %d", c.start, c.t, got, c.want)
		}
	}
}

// The shared profiles in k6/profiles must parse and match their documented
// shapes.
func TestRepoProfiles(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "..", "..", "k6", "profiles")
	for name, want := range map[string]struct {
		d   time.Duration
		max int
	}{
		"local.json":  {60 * time.Second, 500},
		"remote.json": {240 * time.Second, 500},
		"smoke.json":  {4 * time.Second, 50},
	} {
		p, err := Load(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if p.Duration() != want.d || p.MaxVUs(1) != want.max {
			t.Errorf("%s: duration %v max %d", name, p.Duration(), p.MaxVUs(1))
		}
	}
}
