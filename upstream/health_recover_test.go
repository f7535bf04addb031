package upstream

import (
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
)

// An upstream banned for failures that answers a call (the last resort: nothing else
// could take it) is probed at once, not when its ban ends: through an outage each
// failed probe doubled the ban up to BanMax, and a node back after a few minutes stayed
// banned (and a fallback kept its traffic) for up to BanMax more. A ban for slowness
// runs its course: a slow upstream answers too.
func TestBannedUpstreamThatAnswersIsProbedAtOnce(t *testing.T) {
	cases := []struct {
		name      string
		ban       func(h *Health, now time.Time)
		wantProbe bool
	}{
		{"banned for consecutive failures", func(h *Health, now time.Time) {
			h.observe(proto.ClassCheap, verdictFailed, time.Millisecond, "connection refused", now)
		}, true},
		{"banned again by failed probes", func(h *Health, now time.Time) {
			h.observe(proto.ClassCheap, verdictFailed, time.Millisecond, "connection refused", now)
			for range 5 {
				h.probed(false, 0, "connection refused", now)
			}
		}, true},
		{"banned as slow", func(h *Health, now time.Time) { h.Ban("slow", now) }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHealth(&HealthConfig{Window: 10 * time.Second, MinRequests: 10, MaxErrorRate: 0.5, MaxFailures: 1,
				SlowFactor: 5, SlowMin: time.Second, BanMin: time.Hour, BanMax: 4 * time.Hour, Readmit: 2})
			now := time.Now()
			tc.ban(h, now)
			if h.State() != StateBanned || h.probeDue(now.Add(time.Second)) {
				t.Fatalf("state %v, probe due %v: want banned, not due", h.State(), h.probeDue(now.Add(time.Second)))
			}
			later := now.Add(2 * time.Second)
			h.observe(proto.ClassCheap, verdictAnswered, time.Millisecond, "", later)
			if got := h.probeDue(later); got != tc.wantProbe {
				t.Fatalf("probe due after an answered call: %v, want %v", got, tc.wantProbe)
			}
			if !tc.wantProbe {
				return
			}
			h.probed(true, time.Millisecond, "", later)
			h.probed(true, time.Millisecond, "", later)
			if h.State() != StateHealthy {
				t.Fatalf("state %v after two good probes, want healthy", h.State())
			}
		})
	}
}
