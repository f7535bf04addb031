package config

import (
	"errors"
	"fmt"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"

	"github.com/infura-gateway/infura-gateway/upstream"
)

// Per-method policy in the file (upstream/policy.go): a methods: map of method names
// (or class:cheap|call|logs|send) to {timeout, retries, hedge}, at the top level (the
// base of every network), per network, and per upstream, where the same methods: map
// also holds the allow and deny lists.

// PolicyEntry is one method's policy as written; a key left out is decided below.
type PolicyEntry struct {
	Timeout *Duration `yaml:"timeout"`
	Retries *int      `yaml:"retries"`
	Hedge   *bool     `yaml:"hedge"`
}

// MethodPolicyEntry is a policy with its method and the line it was written on.
type MethodPolicyEntry struct {
	Method string
	Line   int
	PolicyEntry
}

// MethodPolicies is a methods: map of policies, in the file's order.
type MethodPolicies []MethodPolicyEntry

// UnmarshalYAML reads the map by hand: its keys are method names, and a policy is
// decoded strictly, so an unknown field in one is an error naming its line.
func (m *MethodPolicies) UnmarshalYAML(n ast.Node) error {
	return eachKey(n, func(key string, line int, v ast.Node) error {
		return m.add(key, line, v)
	})
}

func (m *MethodPolicies) add(key string, line int, v ast.Node) error {
	if _, ok := unwrap(v).(ast.MapNode); !ok {
		return fmt.Errorf("line %d: methods: %s: want a policy {timeout, retries, hedge}", line, upstream.PolicyKeyName(key))
	}
	var p PolicyEntry
	if err := yaml.NodeToValue(v, &p, yaml.Strict()); err != nil {
		var ye yaml.Error
		if !errors.As(err, &ye) { // a field's own error (a bad duration) has no line
			return fmt.Errorf("line %d: methods: %s: %w", line, upstream.PolicyKeyName(key), err)
		}
		return err
	}
	*m = append(*m, MethodPolicyEntry{Method: key, Line: line, PolicyEntry: p})
	return nil
}

// MethodsTable is an upstream's methods: its allow and deny lists (names, or prefixes
// ending in _) and, under any other key, a method's policy.
type MethodsTable struct {
	Allow    []string
	Deny     []string
	Policies MethodPolicies
}

// UnmarshalYAML reads allow and deny as lists and every other key as a policy.
func (m *MethodsTable) UnmarshalYAML(n ast.Node) error {
	return eachKey(n, func(key string, line int, v ast.Node) error {
		switch key {
		case "allow", "deny":
			var list []string
			if err := yaml.NodeToValue(v, &list, yaml.Strict()); err != nil {
				return err
			}
			if key == "allow" {
				m.Allow = list
			} else {
				m.Deny = list
			}
			return nil
		}
		return m.Policies.add(key, line, v)
	})
}

// unwrap is the value under an anchor or a tag.
func unwrap(n ast.Node) ast.Node {
	for {
		switch x := n.(type) {
		case *ast.AnchorNode:
			n = x.Value
		case *ast.TagNode:
			n = x.Value
		default:
			return n
		}
	}
}

// eachKey calls f for each key of the map n in order (nothing for null).
func eachKey(n ast.Node, f func(key string, line int, v ast.Node) error) error {
	n = unwrap(n)
	if n == nil || n.Type() == ast.NullType {
		return nil
	}
	mn, ok := n.(ast.MapNode)
	if !ok {
		return fmt.Errorf("line %d: methods: want a map of method names to policies", lineOf(n))
	}
	for it := mn.MapRange(); it.Next(); {
		k := it.Key()
		if k.IsMergeKey() {
			return fmt.Errorf("line %d: methods: merge keys (<<) are not supported here", lineOf(k))
		}
		if err := f(k.GetToken().Value, lineOf(k), it.Value()); err != nil {
			return err
		}
	}
	return nil
}

func lineOf(n ast.Node) int {
	if tk := n.GetToken(); tk != nil && tk.Position != nil {
		return tk.Position.Line
	}
	return 0
}

// specs converts the entries for the router.
func (m MethodPolicies) specs() []upstream.MethodPolicy {
	if len(m) == 0 {
		return nil
	}
	out := make([]upstream.MethodPolicy, 0, len(m))
	for _, e := range m {
		p := upstream.MethodPolicy{Method: e.Method, Retries: e.Retries, Hedge: e.Hedge}
		if e.Timeout != nil {
			p.Timeout = time.Duration(*e.Timeout)
		}
		out = append(out, p)
	}
	return out
}

// check validates the entries of one methods: map (where names it in errors): each
// against the router's rules, by its line.
func (m MethodPolicies) check(where string) error {
	seen := map[string]bool{}
	for _, e := range m {
		if e.Timeout != nil && *e.Timeout <= 0 {
			return fmt.Errorf("%sline %d: methods: %s: timeout must be > 0", where, e.Line, upstream.PolicyKeyName(e.Method))
		}
		if seen[e.Method] {
			return fmt.Errorf("%sline %d: methods: %s is listed twice", where, e.Line, upstream.PolicyKeyName(e.Method))
		}
		seen[e.Method] = true
		if err := (MethodPolicies{e}).specs()[0].Check(); err != nil {
			return fmt.Errorf("%sline %d: methods: %w", where, e.Line, err)
		}
	}
	return nil
}

// mergePolicies is base with over's entries on top, field by field for a method both
// name: a network's methods: over the top level's.
func mergePolicies(base, over []upstream.MethodPolicy) []upstream.MethodPolicy {
	if len(over) == 0 {
		return base
	}
	out := append([]upstream.MethodPolicy(nil), base...)
	for _, o := range over {
		i := 0
		for i < len(out) && out[i].Method != o.Method {
			i++
		}
		if i == len(out) {
			out = append(out, o)
			continue
		}
		if o.Timeout > 0 {
			out[i].Timeout = o.Timeout
		}
		if o.Retries != nil {
			out[i].Retries = o.Retries
		}
		if o.Hedge != nil {
			out[i].Hedge = o.Hedge
		}
	}
	return out
}

// checkPolicyTimeouts refuses a timeout no call could reach: every call's deadline is
// -upstream-timeout from its start, so a longer per-method timeout would never apply.
func checkPolicyTimeouts(where string, ps []upstream.MethodPolicy, limit time.Duration) error {
	for _, p := range ps {
		if p.Timeout > limit {
			return fmt.Errorf("%smethods: %s: timeout %v is longer than -upstream-timeout (%v), every call's own deadline, so it would never apply: raise -upstream-timeout or lower the timeout",
				where, p.Method, p.Timeout, limit)
		}
	}
	return nil
}

// validatePolicies checks the per-method timeouts of every network and upstream of c
// against -upstream-timeout (the entries themselves were checked with the file).
func (c *Config) validatePolicies() error {
	for _, n := range c.NetworkList() {
		nc := c.ForNetwork(n)
		where := ""
		if len(c.Networks) > 0 {
			where = fmt.Sprintf("network %q: ", n.Name)
		}
		if err := checkPolicyTimeouts(where, nc.Methods, c.UpstreamTimeout); err != nil {
			return err
		}
		for _, u := range nc.Upstreams {
			if err := checkPolicyTimeouts(fmt.Sprintf("%supstream %q: ", where, u.Name), u.Methods, c.UpstreamTimeout); err != nil {
				return err
			}
		}
	}
	return nil
}
