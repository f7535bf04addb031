package config

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/infura-gateway/infura-gateway/proto"
)

// BroadcastEntry is a network's transaction broadcast (gateway/broadcast): sends of the
// listed methods go to every target once, in parallel, instead of to one upstream.
// Absent: off, a send goes to one upstream as any call.
type BroadcastEntry struct {
	Methods      []string         `yaml:"methods"`       // default [eth_sendRawTransaction]
	Targets      BroadcastTargets `yaml:"targets"`       // upstream names, or all (the default)
	DedupeWindow *Duration        `yaml:"dedupe_window"` // default 10m
	MaxEntries   *int             `yaml:"max_entries"`   // dedupe records kept in the process, default 100000
}

// BroadcastTargets is `all` or a list of upstream names.
type BroadcastTargets struct {
	All   bool
	Names []string
}

// UnmarshalYAML reads `all` or a list of names.
func (t *BroadcastTargets) UnmarshalYAML(b []byte) error {
	if s := strings.Trim(strings.TrimSpace(string(b)), `"'`); s == "all" {
		t.All = true
		return nil
	}
	if err := yaml.Unmarshal(b, &t.Names); err != nil {
		return errors.New("targets: want all or a list of upstream names")
	}
	return nil
}

// Broadcast is a network's broadcast as validated, defaults applied.
type Broadcast struct {
	Methods      []string
	Targets      []string // nil: every upstream of the network
	DedupeWindow time.Duration
	MaxEntries   int
}

// Defaults of a broadcast entry.
const (
	DefaultDedupeWindow = 10 * time.Minute
	DefaultDedupeMax    = 100000
	maxDedupeWindow     = 24 * time.Hour
)

// resolve turns e (nil: off) into its settings.
func (e *BroadcastEntry) resolve() *Broadcast {
	if e == nil {
		return nil
	}
	b := &Broadcast{Methods: e.Methods, DedupeWindow: DefaultDedupeWindow, MaxEntries: DefaultDedupeMax}
	if len(b.Methods) == 0 {
		b.Methods = []string{"eth_sendRawTransaction"}
	}
	if !e.Targets.All {
		b.Targets = e.Targets.Names
	}
	setDuration(&b.DedupeWindow, e.DedupeWindow)
	set(&b.MaxEntries, e.MaxEntries)
	return b
}

// check validates e against the upstreams it would send to (where names it in errors).
func (e *BroadcastEntry) check(where string, ups []UpstreamEntry) error {
	if e == nil {
		return nil
	}
	where += "broadcast: "
	for _, m := range e.Methods {
		switch {
		case !methodEntry.MatchString(m) || strings.HasSuffix(m, "_"):
			return fmt.Errorf("%smethod %q: want a method name", where, m)
		case m == "eth_sendTransaction" || !proto.IsWrite([]byte(m)):
			// The gateway names what it sends by the hash of a signed transaction, the
			// first parameter of a raw send; eth_sendTransaction has the node sign.
			return fmt.Errorf("%smethod %q: only sends that carry a signed raw transaction as their first parameter (eth_sendRawTransaction, eth_send...) can be broadcast", where, m)
		}
	}
	if e.DedupeWindow != nil && (*e.DedupeWindow <= 0 || time.Duration(*e.DedupeWindow) > maxDedupeWindow) {
		return fmt.Errorf("%sdedupe_window must be above 0 and at most %v", where, maxDedupeWindow)
	}
	if e.MaxEntries != nil && *e.MaxEntries < 1 {
		return fmt.Errorf("%smax_entries must be at least 1", where)
	}
	if !e.Targets.All && e.Targets.Names != nil && len(e.Targets.Names) == 0 {
		return fmt.Errorf("%stargets: an empty list; list upstream names, or write all", where)
	}
	for _, name := range e.Targets.Names {
		if !slices.ContainsFunc(ups, func(u UpstreamEntry) bool { return u.Name == name }) {
			return fmt.Errorf("%starget %q is not an upstream of this network", where, name)
		}
	}
	return nil
}

// validateBroadcast checks the top-level broadcast: against the top-level upstreams,
// or, as the default of networks without their own, against each such network's; and
// each network's own against its upstreams.
func (f *FileConfig) validateBroadcast() error {
	if len(f.Networks) == 0 {
		if len(f.Upstreams) == 0 && f.Broadcast != nil {
			return errors.New("broadcast: needs the upstreams it sends to listed under upstreams:")
		}
		return f.Broadcast.check("", f.Upstreams)
	}
	for i, n := range f.Networks {
		e := n.Broadcast
		if e == nil {
			e = f.Broadcast
		}
		if err := e.check(fmt.Sprintf("network %d (%q): ", i+1, n.Name), n.Upstreams); err != nil {
			return err
		}
	}
	return nil
}
