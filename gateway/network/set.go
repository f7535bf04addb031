package network

import (
	"bytes"
	"strings"
	"sync/atomic"
)

// Set is the networks a gateway serves, and how a request picks one: a path prefix
// (/<name or alias>/…), else its Host (exact, or *.suffix), else the default network.
// A reload swaps the whole table; a lookup is a few map reads and allocates nothing.
type Set struct {
	t atomic.Pointer[table]
}

type table struct {
	list   []*Network
	byName map[string]*Network // names and aliases
	// nameLens has bit l set when a name or alias is l bytes long (l < 64; longer
	// ones set bit 63, which sends every segment of 63 bytes or more to the map): a
	// first segment of another length ("/blocknumber", "/ws/...") is no network,
	// known without hashing it.
	nameLens uint64
	hosts    map[string]*Network // exact host names
	wild     []wildHost          // *.suffix, longest suffix first
	def      *Network
	names    string // "mainnet, sepolia": for errors
}

type wildHost struct {
	suffix string // ".example.com"
	n      *Network
}

// Entry is one network of a Set with how it is addressed.
type Entry struct {
	Net     *Network
	Aliases []string
	Hosts   []string // exact, or *.suffix; lower case
	Default bool
}

// Store makes entries the set's networks (validated by the configuration: names,
// aliases and hosts unique).
func (s *Set) Store(entries []Entry) {
	t := &table{byName: map[string]*Network{}, hosts: map[string]*Network{}}
	var names []string
	for _, e := range entries {
		t.list = append(t.list, e.Net)
		names = append(names, e.Net.Name)
		t.byName[e.Net.Name] = e.Net
		t.nameLens |= lenBit(len(e.Net.Name))
		for _, a := range e.Aliases {
			t.byName[a] = e.Net
			t.nameLens |= lenBit(len(a))
		}
		for _, h := range e.Hosts {
			if suffix, ok := strings.CutPrefix(h, "*"); ok {
				t.wild = append(t.wild, wildHost{suffix: suffix, n: e.Net})
			} else {
				t.hosts[h] = e.Net
			}
		}
		if e.Default || t.def == nil && len(t.list) == 1 {
			t.def = e.Net
		}
	}
	for i := 1; i < len(t.wild); i++ { // longest suffix first: the most specific wins
		for j := i; j > 0 && len(t.wild[j].suffix) > len(t.wild[j-1].suffix); j-- {
			t.wild[j], t.wild[j-1] = t.wild[j-1], t.wild[j]
		}
	}
	t.names = strings.Join(names, ", ")
	s.t.Store(t)
}

// List returns the networks, in configuration order.
func (s *Set) List() []*Network {
	if t := s.t.Load(); t != nil {
		return t.list
	}
	return nil
}

// Names lists the networks' names, for errors: "mainnet, sepolia".
func (s *Set) Names() string {
	if t := s.t.Load(); t != nil {
		return t.names
	}
	return ""
}

// Multi reports whether the set has more than one network.
func (s *Set) Multi() bool {
	t := s.t.Load()
	return t != nil && len(t.list) > 1
}

// Resolve picks the network of a request by its path and Host header. With a path
// prefix naming a network, rest is the path after it ("/" at least) and prefixed is
// true; otherwise rest is path. Nil only for an empty set.
func (s *Set) Resolve(path, host []byte) (n *Network, rest []byte, prefixed bool) {
	t := s.t.Load()
	if t == nil {
		return nil, path, false
	}
	if len(path) > 1 && path[0] == '/' {
		seg := path[1:]
		end := bytes.IndexByte(seg, '/')
		if end < 0 {
			end = len(seg)
		}
		// A length no name or alias has is no network, known without hashing the
		// segment; the map lookup of a string made of bytes does not allocate.
		if t.nameLens&lenBit(end) != 0 {
			if n := t.byName[string(seg[:end])]; n != nil {
				rest = seg[end:]
				if len(rest) == 0 {
					rest = slash
				}
				return n, rest, true
			}
		}
	}
	if len(host) > 0 && (len(t.hosts) > 0 || len(t.wild) > 0) {
		if n := t.byHost(host); n != nil {
			return n, path, false
		}
	}
	return t.def, path, false
}

var slash = []byte("/")

// lenBit is the bit of table.nameLens for a name of l bytes.
func lenBit(l int) uint64 { return 1 << min(l, 63) }

// byHost matches host (port removed, any case, the root's trailing dot removed: a
// fully qualified name is the same host) against the exact names, then the *.suffix
// ones.
func (t *table) byHost(host []byte) *Network {
	if i := bytes.LastIndexByte(host, ':'); i >= 0 && bytes.IndexByte(host[i:], ']') < 0 {
		host = host[:i]
	}
	if n := len(host); n > 0 && host[n-1] == '.' {
		host = host[:n-1]
	}
	var buf [253]byte
	if len(host) > len(buf) {
		// Longer than a DNS name: no exact host (configured ones are names), but
		// still under a wildcard, as a proxy in front matching suffixes would see it.
		return t.byWild(host)
	}
	h := buf[:len(host)]
	for i, c := range host {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		h[i] = c
	}
	if n := t.hosts[string(h)]; n != nil {
		return n
	}
	return t.byWild(h)
}

// byWild matches host against the *.suffix names, longest first, in any case (a host
// longer than a DNS name is not copied to lower case).
func (t *table) byWild(host []byte) *Network {
	for _, w := range t.wild {
		if len(host) > len(w.suffix) && hasSuffixFold(host, w.suffix) {
			return w.n
		}
	}
	return nil
}

// hasSuffixFold reports whether b ends in the lower-case ASCII suffix, any case.
func hasSuffixFold(b []byte, suffix string) bool {
	b = b[len(b)-len(suffix):]
	for i := range len(suffix) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != suffix[i] {
			return false
		}
	}
	return true
}
