// Package profile reads the stage profiles shared with the k6 scripts
// (k6/profiles/*.json) and computes the VU count over time the way k6's
// ramping-vus executor does.
package profile

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"time"
)

// Stage ramps linearly from the previous stage's target (or the start VUs)
// to Target over Duration.
type Stage struct {
	Duration time.Duration
	Target   int
}

// Profile is a parsed stage profile.
type Profile struct {
	Description string
	Stages      []Stage
}

type fileStage struct {
	Duration string `json:"duration"`
	Target   *int   `json:"target"`
}

type fileProfile struct {
	Description string      `json:"description"`
	Stages      []fileStage `json:"stages"`
}

// Parse decodes a profile document: {"description":..., "stages":
// [{"duration":"10s","target":10}, ...]}. Durations use k6's syntax, which
// for the units k6 accepts (h, m, s, ms) is Go's.
func Parse(data []byte) (*Profile, error) {
	var fp fileProfile
	if err := json.Unmarshal(data, &fp); err != nil {
		return nil, fmt.Errorf("cannot parse profile: %w", err)
	}
	if len(fp.Stages) == 0 {
		return nil, fmt.Errorf("profile has no stages")
	}
	p := &Profile{Description: fp.Description}
	for i, s := range fp.Stages {
		d, err := time.ParseDuration(s.Duration)
		if err != nil {
			return nil, fmt.Errorf("stage %d: cannot parse duration %q: %w", i+1, s.Duration, err)
		}
		if d < 0 {
			return nil, fmt.Errorf("stage %d: negative duration %q", i+1, s.Duration)
		}
		if s.Target == nil {
			return nil, fmt.Errorf("stage %d: missing target", i+1)
		}
		if *s.Target < 0 {
			return nil, fmt.Errorf("stage %d: negative target %d", i+1, *s.Target)
		}
		p.Stages = append(p.Stages, Stage{Duration: d, Target: *s.Target})
	}
	return p, nil
}

// Load reads and parses a profile file.
func Load(path string) (*Profile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read profile: %w", err)
	}
	p, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// Duration is the total length of the profile.
func (p *Profile) Duration() time.Duration {
	var d time.Duration
	for _, s := range p.Stages {
		d += s.Duration
	}
	return d
}

// MaxVUs is the largest VU count the profile reaches from startVUs.
func (p *Profile) MaxVUs(startVUs int) int {
	m := startVUs
	for _, s := range p.Stages {
		m = max(m, s.Target)
	}
	return m
}

// VUs returns the number of active VUs at time t from the start, ramping
// linearly between stage targets from startVUs (k6's startVUs, default 1).
// As in k6, a VU is added or removed only once the line has fully crossed
// the next integer: the interpolated value is truncated toward the stage's
// starting count. A zero-length stage jumps to its target; after the last
// stage the result is 0 (the run is over).
func (p *Profile) VUs(startVUs int, t time.Duration) int {
	from := startVUs
	var at time.Duration
	for _, s := range p.Stages {
		if t < at+s.Duration {
			frac := float64(t-at) / float64(s.Duration)
			delta := float64(s.Target-from) * frac
			// Truncation toward zero of the delta is truncation toward
			// the starting count, in both ramp directions. The epsilon
			// absorbs float error at exact integer crossings.
			return from + int(math.Trunc(delta+math.Copysign(1e-9, delta)))
		}
		at += s.Duration
		from = s.Target
	}
	return 0
}
