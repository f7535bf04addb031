package proto

import "strings"

// MethodSet matches decoded method names exactly or by prefix: an entry ending in _
// matches every method that begins with it (admin_ matches admin_nodeInfo), and a
// trailing * marks a prefix too and is dropped. The deny-list, the plans and keys, and
// each upstream's allow and deny lists all decide with it. The zero value is empty.
type MethodSet struct {
	exact    map[string]struct{}
	prefixes []string
}

// NewMethodSet returns the set of entries.
func NewMethodSet(entries []string) MethodSet {
	var s MethodSet
	for _, e := range entries {
		switch {
		case strings.HasSuffix(e, "*"):
			s.prefixes = append(s.prefixes, strings.TrimSuffix(e, "*"))
		case strings.HasSuffix(e, "_"):
			s.prefixes = append(s.prefixes, e)
		default:
			if s.exact == nil {
				s.exact = map[string]struct{}{}
			}
			s.exact[e] = struct{}{}
		}
	}
	return s
}

// Empty reports whether the set has no entry (an allow-list that allows everything).
func (s MethodSet) Empty() bool { return len(s.exact) == 0 && len(s.prefixes) == 0 }

// Has reports whether the decoded method name is in the set.
func (s MethodSet) Has(name []byte) bool {
	for _, p := range s.prefixes {
		if len(name) >= len(p) && string(name[:len(p)]) == p {
			return true
		}
	}
	_, ok := s.exact[string(name)]
	return ok
}
