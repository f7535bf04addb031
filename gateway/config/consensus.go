package config

import (
	"fmt"
	"time"

	"github.com/infura-gateway/infura-gateway/upstream"
)

// ConsensusEntry is a network's consensus (upstream/consensus.go): reads of the listed
// methods are asked of `upstreams` distinct upstreams and answered only when `agree`
// of them agree. Absent: off. Sends, filters and subscriptions cannot be listed.
type ConsensusEntry struct {
	Methods   []string  `yaml:"methods"`
	Upstreams int       `yaml:"upstreams"`
	Agree     int       `yaml:"agree"`
	Timeout   *Duration `yaml:"timeout"` // bounds the whole call; default: the call's deadline
}

// resolve turns e (nil: off) into the router's settings.
func (e *ConsensusEntry) resolve() *upstream.ConsensusConfig {
	if e == nil {
		return nil
	}
	c := &upstream.ConsensusConfig{Methods: e.Methods, Upstreams: e.Upstreams, Agree: e.Agree}
	if e.Timeout != nil {
		c.Timeout = time.Duration(*e.Timeout)
	}
	return c
}

// check validates e for a network of ups (where names it in errors).
func (e *ConsensusEntry) check(where string, ups []UpstreamEntry) error {
	if e == nil {
		return nil
	}
	if err := e.resolve().Validate(); err != nil {
		return fmt.Errorf("%sconsensus: %w", where, err)
	}
	if e.Upstreams > len(ups) {
		return fmt.Errorf("%sconsensus: upstreams %d, but the network has %d", where, e.Upstreams, len(ups))
	}
	return nil
}

// validateConsensus checks the top level's consensus and every network's.
func (f *FileConfig) validateConsensus() error {
	if len(f.Networks) == 0 {
		if len(f.Upstreams) == 0 && f.Consensus != nil {
			return fmt.Errorf("consensus: needs the upstreams it asks listed under upstreams:")
		}
		return f.Consensus.check("", f.Upstreams)
	}
	for i, n := range f.Networks {
		e := n.Consensus
		if e == nil {
			e = f.Consensus
		}
		if err := e.check(fmt.Sprintf("network %d (%q): ", i+1, n.Name), n.Upstreams); err != nil {
			return err
		}
	}
	return nil
}
