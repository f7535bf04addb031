// Per-method policy: how long an attempt may take, how many other upstreams a failed
// read is tried on, and whether a slow read may be hedged, per method. Configured at
// the network level (RouterConfig.Methods) and per upstream (Spec.Methods); resolved
// at load into a table indexed by proto.Method, so a call reads its policy with one
// atomic load and an index, without a map or an allocation.

package upstream

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
)

// MethodPolicy is one configured entry. A field left unset (Timeout 0, Retries or Hedge
// nil) is decided by the level below: an upstream's entry over its network's, a
// method's own entry over its class's, then the class default (policyDefault).
type MethodPolicy struct {
	// Method is a method name, or "class:" and a class name (cheap, call, logs, send).
	Method string
	// Timeout bounds each attempt of the call on one upstream (never past the call's
	// own deadline, -upstream-timeout).
	Timeout time.Duration
	// Retries is how many other upstreams a failed read is tried on.
	Retries *int
	// Hedge says whether a slow read may also go to a second upstream (with
	// -hedge-quantile).
	Hedge *bool
}

// String writes the entry without pointers, so a spec's key is the same for equal values.
func (p MethodPolicy) String() string {
	var b strings.Builder
	b.WriteString(p.Method)
	b.WriteString("{")
	if p.Timeout > 0 {
		b.WriteString("timeout=" + p.Timeout.String() + ",")
	}
	if p.Retries != nil {
		b.WriteString("retries=" + strconv.Itoa(*p.Retries) + ",")
	}
	if p.Hedge != nil {
		b.WriteString("hedge=" + strconv.FormatBool(*p.Hedge))
	}
	b.WriteString("}")
	return b.String()
}

// maxPolicyRetries keeps Retries within the attempts a call may make.
const maxPolicyRetries = maxAttempts - 1

var (
	policyMethodName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,79}$`)
	policyKey        = regexp.MustCompile(`^(class:)?[A-Za-z][A-Za-z0-9_]{0,79}$`)
)

// PolicyKeyName is key quoted for an error when it reads as a method or class name;
// anything else (a value pasted where a key goes: it may be a secret) is not repeated.
func PolicyKeyName(key string) string {
	if policyKey.MatchString(key) {
		return strconv.Quote(key)
	}
	return "(a key that is not a method name)"
}

// classNamed returns the class a "class:<name>" entry names.
func classNamed(s string) (proto.Class, bool) {
	name, ok := strings.CutPrefix(s, "class:")
	if !ok {
		return 0, false
	}
	for c := range proto.NumClasses {
		if c.String() == name {
			return c, true
		}
	}
	return 0, false
}

// Check validates one entry. A send (and any method that is not a read: filters,
// signing, methods the gateway does not know) is never retried or hedged (a second
// copy of a transaction may be mined twice, or replace the first): an entry asking
// for it is refused rather than silently ignored.
func (p MethodPolicy) Check() error {
	isClass := strings.HasPrefix(p.Method, "class:")
	cls, okClass := classNamed(p.Method)
	switch {
	case isClass && !okClass:
		return fmt.Errorf("%s: want class:cheap, class:call, class:logs or class:send", PolicyKeyName(p.Method))
	case !isClass && !policyMethodName.MatchString(p.Method):
		return fmt.Errorf("%s: want a method name (eth_getLogs) or class:<cheap|call|logs|send>", PolicyKeyName(p.Method))
	case p.Timeout < 0:
		return fmt.Errorf("%s: timeout must be > 0", p.Method)
	case p.Retries != nil && (*p.Retries < 0 || *p.Retries > maxPolicyRetries):
		return fmt.Errorf("%s: retries must be between 0 and %d", p.Method, maxPolicyRetries)
	}
	asks := p.Retries != nil && *p.Retries > 0 || p.Hedge != nil && *p.Hedge
	if !asks {
		return nil
	}
	if isClass && cls == proto.ClassSend || !isClass && classOfName(p.Method) == proto.ClassSend {
		return fmt.Errorf("%s: a send is never retried or hedged (it could be mined twice): retries must be 0 and hedge false", p.Method)
	}
	if !isClass && !isRead(p.Method) {
		return fmt.Errorf("%s: not a read (a filter, signing, or a method the gateway does not know as a read): it is sent once, never retried or hedged; retries must be 0 and hedge false", p.Method)
	}
	return nil
}

func isRead(name string) bool {
	var r proto.Request
	r.Set([]byte(name), nil)
	return r.IsRead()
}

func classOfName(name string) proto.Class {
	var r proto.Request
	r.Set([]byte(name), nil)
	return r.Class()
}

// CheckMethodPolicies validates a level's entries: each on its own, and no method or
// class twice.
func CheckMethodPolicies(ps []MethodPolicy) error {
	seen := map[string]bool{}
	for _, p := range ps {
		if err := p.Check(); err != nil {
			return err
		}
		if seen[p.Method] {
			return fmt.Errorf("%s: listed twice", p.Method)
		}
		seen[p.Method] = true
	}
	return nil
}

// policy is a resolved policy.
type policy struct {
	// timeout bounds one attempt (0: the call's deadline).
	timeout time.Duration
	// retries is how many other upstreams a failed read is tried on; -1: the router's
	// Retries (-retries), read at call time.
	retries int8
	// hedge: the read may be hedged (with HedgeQuantile > 0).
	hedge bool
}

// retriesOr returns the policy's retries, or def when the policy leaves them to it.
func (p policy) retriesOr(def int) int {
	if p.retries < 0 {
		return def
	}
	return int(p.retries)
}

// bound is d, or earlier when the policy's timeout from now ends first.
func (p policy) bound(d time.Time) time.Time {
	if p.timeout <= 0 {
		return d
	}
	if t := time.Now().Add(p.timeout); t.Before(d) {
		return t
	}
	return d
}

// policyDefault is the policy of a class nothing is configured for: cheap reads and
// calls as the flags say; logs not hedged (a second eth_getLogs of a wide range costs
// the provider as much as the first); sends never retried or hedged.
func policyDefault(c proto.Class) policy {
	switch c {
	case proto.ClassLogs:
		return policy{retries: -1}
	case proto.ClassSend:
		return policy{retries: 0}
	}
	return policy{retries: -1, hedge: true}
}

// policyTable is the resolved policy of every method of one level.
type policyTable struct {
	byMethod [proto.NumMethods]policy
	// named holds methods outside proto's table (debug_traceCall, trace_block): read
	// only for a call whose method is MethodOther, in order, by name.
	named []namedPolicy
}

type namedPolicy struct {
	name string
	p    policy
}

// of returns req's policy: one index, or for a method outside the table a scan of the
// few named ones.
func (t *policyTable) of(req *proto.Request) policy {
	if req.Method == proto.MethodOther {
		for i := range t.named {
			if string(req.Name) == t.named[i].name {
				return t.named[i].p
			}
		}
	}
	return t.byMethod[req.Method]
}

// resolvePolicies builds the table of levels, the lowest first (the network's, then an
// upstream's): for each field a method's entry at the highest level that sets it, its
// own entry before its class's at the same level, else the class default.
func resolvePolicies(levels ...[]MethodPolicy) (*policyTable, error) {
	for _, ps := range levels {
		if err := CheckMethodPolicies(ps); err != nil {
			return nil, err
		}
	}
	t := &policyTable{}
	for m := range proto.Method(proto.NumMethods) {
		var r proto.Request
		r.Method = m
		name := m.String()
		if m == proto.MethodOther || m == proto.MethodBatch {
			name = ""
		}
		t.byMethod[m] = resolveOne(name, r.Class(), levels)
	}
	seen := map[string]bool{}
	for _, ps := range levels {
		for _, p := range ps {
			if strings.HasPrefix(p.Method, "class:") || seen[p.Method] || proto.MethodNamed(p.Method) != proto.MethodOther {
				continue
			}
			seen[p.Method] = true
			t.named = append(t.named, namedPolicy{p.Method, resolveOne(p.Method, proto.ClassCall, levels)})
		}
	}
	return t, nil
}

// resolveOne resolves the policy of method name (empty: a method no entry names) of
// class cls.
func resolveOne(name string, cls proto.Class, levels [][]MethodPolicy) policy {
	out := policyDefault(cls)
	apply := func(p MethodPolicy) {
		if p.Timeout > 0 {
			out.timeout = p.Timeout
		}
		if p.Retries != nil {
			out.retries = int8(*p.Retries)
		}
		if p.Hedge != nil {
			out.hedge = *p.Hedge
		}
	}
	className := "class:" + cls.String()
	for _, ps := range levels {
		for _, p := range ps {
			if p.Method == className {
				apply(p)
			}
		}
		for _, p := range ps {
			if name != "" && p.Method == name {
				apply(p)
			}
		}
	}
	if cls == proto.ClassSend { // whatever a class entry said (Check refuses it anyway)
		out.retries, out.hedge = 0, false
	}
	return out
}

// batchPolicy is the policy of a batch's attempt on u: the shortest timeout of its
// requests, and for a batch of reads the fewest retries any of them allows (a batch is
// retried whole). A batch with a write goes elsewhere only if it never left (-retries).
func (r *Router) batchPolicy(b *Batch, u *Upstream, reads bool) policy {
	t := u.pol.Load()
	out := policy{retries: int8(min(r.cfg.Retries, maxPolicyRetries))}
	for _, req := range b.Reqs {
		p := t.of(req)
		if p.timeout > 0 && (out.timeout == 0 || p.timeout < out.timeout) {
			out.timeout = p.timeout
		}
		if reads {
			out.retries = min(out.retries, int8(min(p.retriesOr(r.cfg.Retries), maxPolicyRetries)))
		}
	}
	return out
}

// setMethodPolicies resolves the network level's entries and every upstream's table
// over them; the tables are swapped whole.
func (r *Router) setMethodPolicies(ps []MethodPolicy, ups []*Upstream) error {
	base, err := resolvePolicies(ps)
	if err != nil {
		return fmt.Errorf("methods: %w", err)
	}
	tables := make([]*policyTable, len(ups))
	for i, u := range ups {
		if tables[i], err = r.upstreamPolicies(base, ps, u.spec); err != nil {
			return fmt.Errorf("upstream %q: %w", u.spec.Name, err)
		}
	}
	r.methods = ps
	r.pol.Store(base)
	for i, u := range ups {
		u.pol.Store(tables[i])
	}
	return nil
}

// upstreamPolicies is the table of an upstream: the network's when it configures none.
func (r *Router) upstreamPolicies(base *policyTable, network []MethodPolicy, sp Spec) (*policyTable, error) {
	if len(sp.Methods) == 0 {
		return base, nil
	}
	t, err := resolvePolicies(network, sp.Methods)
	if err != nil {
		return nil, fmt.Errorf("methods: %w", err)
	}
	return t, nil
}

// SetMethodPolicies replaces the network level's per-method policy (a reload); the
// upstreams' own entries stay over it. Invalid entries change nothing.
func (r *Router) SetMethodPolicies(ps []MethodPolicy) error {
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	return r.setMethodPolicies(ps, r.set.Load().all)
}

// policyOf is req's policy on u.
func (u *Upstream) policyOf(req *proto.Request) policy { return u.pol.Load().of(req) }

// methodsKey writes a spec's entries for its key.
func methodsKey(ps []MethodPolicy) string {
	var b strings.Builder
	for _, p := range ps {
		b.WriteString(p.String())
	}
	return b.String()
}
