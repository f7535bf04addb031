package config

import (
	"fmt"

	"github.com/infura-gateway/infura-gateway/upstream"
)

// eth_getLogs over any range (gateway/logs): the file's logs: entry (top level and per
// network), an upstream's logs: entry and its kind's preset, and a plan's logs_max_range.

// LogsEntry is the file's logs: entry, at the top level or in a network.
type LogsEntry struct {
	// MaxRange is the largest block range one upstream call may cover (the upstreams'
	// cap); 0 or absent: none beyond the upstreams' own.
	MaxRange *uint64 `yaml:"max_range"`
	// SplitRange is the chunk size and alignment of split queries.
	SplitRange *uint64 `yaml:"split_range"`
	// Parallel is how many chunks of one query are in flight at once.
	Parallel *int `yaml:"parallel"`
	// MaxCalls bounds the upstream calls one query may take.
	MaxCalls *int `yaml:"max_calls"`
	// ProcessParallel bounds the chunks in flight of each network, every query
	// together (top level only: each network has this bound of its own).
	ProcessParallel *int `yaml:"process_parallel"`
}

// UpstreamLogsEntry is an upstream's logs: entry.
type UpstreamLogsEntry struct {
	MaxRange uint64 `yaml:"max_range"` // the provider's block cap for one eth_getLogs call
}

// LogsSettings are one network's eth_getLogs settings, as gateway/logs reads them.
type LogsSettings struct {
	MaxRange        uint64 // configured cap (logs.max_range); 0: none
	UpstreamCap     uint64 // the smallest cap of the network's upstreams (their logs.max_range or kind preset); 0: none
	SplitRange      uint64
	Parallel        int
	MaxCalls        int
	ProcessParallel int
}

// Defaults of eth_getLogs splitting.
const (
	DefaultLogsSplitRange      = 10000
	DefaultLogsParallel        = 4
	DefaultLogsMaxCalls        = 5000
	DefaultLogsProcessParallel = 32
)

// DefaultLogs are the settings without a logs: entry.
func DefaultLogs() LogsSettings {
	return LogsSettings{SplitRange: DefaultLogsSplitRange, Parallel: DefaultLogsParallel,
		MaxCalls: DefaultLogsMaxCalls, ProcessParallel: DefaultLogsProcessParallel}
}

// Cap is the largest range one upstream call covers: the configured and the upstreams'
// caps, the smaller one (0: none).
func (s LogsSettings) Cap() uint64 {
	switch {
	case s.MaxRange == 0:
		return s.UpstreamCap
	case s.UpstreamCap == 0:
		return s.MaxRange
	}
	return min(s.MaxRange, s.UpstreamCap)
}

// ProviderKinds are the upstream kinds (upstreams[].kind) and their eth_getLogs block
// caps: Alchemy 2,000 blocks, QuickNode 10,000 blocks; Infura caps results (10,000),
// not blocks, which the gateway learns from its error; generic: none.
var ProviderKinds = map[string]uint64{"": 0, "generic": 0, "infura": 0, "alchemy": 2000, "quicknode": 10000}

// upstreamLogsCap is the smallest block cap among ups (0: none): a chunk may go to any
// of them.
func upstreamLogsCap(ups []UpstreamEntry) uint64 {
	var c uint64
	for _, u := range ups {
		kind := u.Kind
		if kind == "" {
			kind = upstream.DetectKind(u.HTTP) // as the classifier detects it
		}
		n := ProviderKinds[kind]
		if u.Logs != nil && u.Logs.MaxRange > 0 {
			n = u.Logs.MaxRange
		}
		if n > 0 && (c == 0 || n < c) {
			c = n
		}
	}
	return c
}

// apply sets the settings e has on s (nil: none).
func (e *LogsEntry) apply(s *LogsSettings) {
	if e == nil {
		return
	}
	set(&s.MaxRange, e.MaxRange)
	set(&s.SplitRange, e.SplitRange)
	set(&s.Parallel, e.Parallel)
	set(&s.MaxCalls, e.MaxCalls)
	set(&s.ProcessParallel, e.ProcessParallel)
}

// validate checks a logs: entry (where names it; top: the top-level one).
func (e *LogsEntry) validate(where string, top bool) error {
	if e == nil {
		return nil
	}
	bad := func(p *int, lo, hi int) bool { return p != nil && (*p < lo || *p > hi) }
	switch {
	case e.MaxRange != nil && *e.MaxRange > 1<<40, e.SplitRange != nil && (*e.SplitRange < 1 || *e.SplitRange > 1<<40):
		return fmt.Errorf("%slogs: max_range must be in [0, 2^40] (0: none) and split_range in [1, 2^40]", where)
	case bad(e.Parallel, 1, 64):
		return fmt.Errorf("%slogs: parallel must be in [1, 64]", where)
	case bad(e.MaxCalls, 1, 1000000):
		return fmt.Errorf("%slogs: max_calls must be in [1, 1000000]", where)
	case bad(e.ProcessParallel, 1, 4096):
		return fmt.Errorf("%slogs: process_parallel must be in [1, 4096]", where)
	case !top && e.ProcessParallel != nil:
		return fmt.Errorf("%slogs: process_parallel is set once, in the top-level logs: (each network has that bound of its own)", where)
	}
	return nil
}

// validateUpstreamLogs checks an upstream's logs: entry (its kind: checkClassify).
func validateUpstreamLogs(where string, u UpstreamEntry) error {
	if u.Logs != nil && u.Logs.MaxRange > 1<<40 {
		return fmt.Errorf("%s: logs: max_range must be in [0, 2^40] (0: the kind's preset)", where)
	}
	return nil
}

// validatePlanLogs checks a plan's logs_max_range.
func validatePlanLogs(where string, p PlanEntry) error {
	if p.LogsMaxRange > 1<<40 {
		return fmt.Errorf("%s: logs_max_range must be in [0, 2^40] (0: no limit)", where)
	}
	return nil
}
