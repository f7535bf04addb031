package proto

import "strings"

// MethodSet matches decoded method names exactly or by prefix: an entry ending in _
// matches every method that begins with it (admin_ matches admin_nodeInfo), and a
// trailing * marks a prefix too and is dropped. The deny-list, the plans and keys, and
// each upstream's allow and deny lists all decide with it. The zero value is empty.
type MethodSet struct {
	exact    map[string]struct{}
	prefixes []string
	// known has bit m set when the set has the known method m (methodNames): a
	// request's resolved method is decided with one bit test, not a prefix scan and a
	// map lookup (Names, Allows). Kept in step by NewMethodSet and add.
	known [(NumMethods + 63) / 64]uint64
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
	s.index()
	return s
}

// index sets known from the entries.
func (s *MethodSet) index() {
	s.known = [len(s.known)]uint64{}
	for m := MethodBatch + 1; m < Method(NumMethods); m++ {
		if s.Has([]byte(methodNames[m])) {
			s.known[m/64] |= 1 << (m % 64)
		}
	}
}

// HasRequest is Has(r.Name), decided by r's resolved method when it is a known one.
func (s MethodSet) HasRequest(r *Request) bool { return s.hasMethod(r.Method, r.Name) }

// hasMethod is Has for a request's name and its resolved method (MethodOf(name)): a
// known method is one bit test; any other name is looked up by Has.
func (s MethodSet) hasMethod(m Method, name []byte) bool {
	if m > MethodBatch && int(m) < NumMethods {
		return s.known[m/64]&(1<<(m%64)) != 0
	}
	return s.Has(name)
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

// Method families: the ways to read the same data. A plan that denies one member but
// not the others would deny nothing, so the access lists (NewDenySet, NewAllowSet) treat
// a family as one entry: naming any member names them all. Subscription kinds are
// members under their eth_subscribe names (Request.SubKind).
//
// eth_newBlockFilter and newHeads are a family (new blocks, pushed or polled); block
// reads (eth_getBlockByNumber, ...) are not in it: a list that names them is about
// reading blocks, not about being told of new ones.
var families = [...][]string{
	{"eth_getLogs", "eth_newFilter", "eth_getFilterLogs", "logs"},
	{"eth_newPendingTransactionFilter", "newPendingTransactions"},
	{"eth_newBlockFilter", "newHeads"},
	{"eth_syncing", "syncing"},
}

// filterCreators make the filters eth_getFilterChanges and eth_uninstallFilter read by
// id. The id does not say which kind of filter it is (the upstream chose it at random),
// so the gateway decides at creation: a list that refuses every creator refuses the
// readers too, and otherwise they pass (a filter exists only if its creation passed).
var filterCreators = [...]string{"eth_newFilter", "eth_newBlockFilter", "eth_newPendingTransactionFilter"}

var filterReaders = [...]string{"eth_getFilterChanges", "eth_uninstallFilter"}

// NewDenySet is NewMethodSet for a deny-list, with families: denying a member denies the
// family; denying every filter creator denies the filter readers.
func NewDenySet(entries []string) MethodSet {
	s := NewMethodSet(entries).withFamilies()
	all := true
	for _, m := range filterCreators {
		all = all && s.Has([]byte(m))
	}
	if all {
		s.add(filterReaders[:]...)
	}
	return s
}

// NewAllowSet is NewMethodSet for an allow-list, with families: allowing a member allows
// the family; allowing a filter creator allows the filter readers. An empty list stays
// empty (everything allowed).
func NewAllowSet(entries []string) MethodSet {
	s := NewMethodSet(entries).withFamilies()
	for _, m := range filterCreators {
		if s.Has([]byte(m)) {
			s.add(filterReaders[:]...)
			break
		}
	}
	return s
}

// withFamilies adds every member of a family one of whose members the set has.
func (s MethodSet) withFamilies() MethodSet {
	for _, f := range families {
		for _, m := range f {
			if s.Has([]byte(m)) {
				s.add(f...)
				break
			}
		}
	}
	return s
}

func (s *MethodSet) add(names ...string) {
	if s.exact == nil {
		s.exact = map[string]struct{}{}
	}
	for _, n := range names {
		s.exact[n] = struct{}{}
	}
	s.index()
}

// Names reports whether the set names the call r: its method or, for eth_subscribe, its
// subscription kind. It is how a deny-list decides.
func (s MethodSet) Names(r *Request) bool {
	return s.hasMethod(r.Method, r.Name) || r.SubKind != nil && s.Has(r.SubKind)
}

// Allows reports whether the allow-list s lets the call r through: an empty list allows
// everything; otherwise its method and, for eth_subscribe, its kind must both be listed.
func (s MethodSet) Allows(r *Request) bool {
	return s.Empty() || s.hasMethod(r.Method, r.Name) && (r.SubKind == nil || s.Has(r.SubKind))
}
