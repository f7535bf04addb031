package proto

import "testing"

func TestMethodSet(t *testing.T) {
	s := NewMethodSet([]string{"admin_", "eth_get*", "net_version", "debug"})
	for _, c := range []struct {
		name string
		want bool
	}{
		{"admin_nodeInfo", true}, {"admin_", true}, {"admin", false}, {"adminx_y", false},
		{"eth_getBalance", true}, {"eth_get", true}, {"eth_ge", false}, {"eth_call", false},
		{"net_version", true}, {"net_versions", false}, {"net_", false},
		{"debug", true}, {"debug_traceTransaction", false}, // no _ and no *: exact
		{"", false},
	} {
		if got := s.Has([]byte(c.name)); got != c.want {
			t.Errorf("Has(%q) = %v, want %v", c.name, got, c.want)
		}
	}
	if s.Empty() || !NewMethodSet(nil).Empty() || (MethodSet{}).Has([]byte("eth_call")) {
		t.Fatal("Empty: a set with entries is empty, or the zero set is not")
	}
	if a := testing.AllocsPerRun(100, func() { s.Has([]byte("eth_chainId")) }); a != 0 {
		t.Fatalf("Has allocates %v times", a)
	}
}

// The access lists treat a method family as one entry.
func TestMethodFamilies(t *testing.T) {
	call := func(method, params string) *Request {
		var r Request
		if perr := r.Parse([]byte(`{"jsonrpc":"2.0","id":1,"method":"` + method + `","params":` + params + `}`)); perr != nil {
			t.Fatalf("%s %s: %v", method, params, perr.Message)
		}
		return &r
	}
	getLogs, newFilter := call("eth_getLogs", `[{}]`), call("eth_newFilter", `[{}]`)
	filterLogs, changes := call("eth_getFilterLogs", `["0x1"]`), call("eth_getFilterChanges", `["0x1"]`)
	subLogs, subHeads := call("eth_subscribe", `["l\u006fgs",{}]`), call("eth_subscribe", `["newHeads"]`)
	subPending, pendingFilter := call("eth_subscribe", `["newPendingTransactions"]`), call("eth_newPendingTransactionFilter", `[]`)
	blockFilter, blockNumber := call("eth_newBlockFilter", `[]`), call("eth_blockNumber", `[]`)
	all := []*Request{getLogs, newFilter, filterLogs, changes, subLogs, subHeads, subPending, pendingFilter, blockFilter, blockNumber}
	for _, c := range []struct {
		deny   []string
		denied []*Request
	}{
		{[]string{"eth_getLogs"}, []*Request{getLogs, newFilter, filterLogs, subLogs}},
		{[]string{"logs"}, []*Request{getLogs, newFilter, filterLogs, subLogs}},
		{[]string{"eth_get*"}, []*Request{getLogs, newFilter, filterLogs, changes, subLogs}},
		{[]string{"newPendingTransactions"}, []*Request{subPending, pendingFilter}},
		{[]string{"eth_newBlockFilter"}, []*Request{subHeads, blockFilter}},
		{[]string{"eth_getLogs", "eth_newBlockFilter", "eth_newPendingTransactionFilter"},
			[]*Request{getLogs, newFilter, filterLogs, changes, subLogs, subHeads, subPending, pendingFilter, blockFilter}},
	} {
		s := NewDenySet(c.deny)
		for _, r := range all {
			want := false
			for _, d := range c.denied {
				want = want || d == r
			}
			if got := s.Names(r); got != want {
				t.Errorf("deny %v: %s %s denied = %v, want %v", c.deny, r.Name, r.Params, got, want)
			}
		}
	}
	allow := NewAllowSet([]string{"eth_subscribe", "eth_getLogs", "eth_blockNumber"})
	for r, want := range map[*Request]bool{subLogs: true, newFilter: true, changes: true, subHeads: false, subPending: false,
		blockNumber: true, blockFilter: false} {
		if got := allow.Allows(r); got != want {
			t.Errorf("allow-list: %s %s allowed = %v, want %v", r.Name, r.Params, got, want)
		}
	}
	if !NewAllowSet(nil).Allows(subPending) || NewDenySet(nil).Names(subPending) {
		t.Error("empty lists: an allow-list allows everything, a deny-list denies nothing")
	}
	if a := testing.AllocsPerRun(100, func() { allow.Allows(subLogs) }); a != 0 {
		t.Fatalf("Allows allocates %v times", a)
	}
}

// A request's resolved method is decided by its bit (hasMethod); the answer must be
// Has's for every known method and any set: exact names, prefixes, families and the
// filter readers added after construction. Unknown and batch names go through Has.
func TestMethodSetBitsAgreeWithHas(t *testing.T) {
	sets := map[string]MethodSet{
		"zero":          {},
		"exact":         NewMethodSet([]string{"eth_call", "net_version", "debug"}),
		"prefixes":      NewMethodSet([]string{"eth_get*", "admin_", "web3_"}),
		"everything":    NewMethodSet([]string{"*"}),
		"deny families": NewDenySet([]string{"logs", "eth_newBlockFilter", "eth_newPendingTransactionFilter"}),
		"allow family":  NewAllowSet([]string{"eth_newFilter", "eth_blockNumber"}),
		"allow none":    NewAllowSet(nil),
	}
	names := append([]string{"other", "batch", "eth_unknownMethod", "", "admin_nodeInfo", "eth_getFoo"}, methodNames[:]...)
	for label, s := range sets {
		for _, name := range names {
			m := MethodOf([]byte(name))
			if got, want := s.hasMethod(m, []byte(name)), s.Has([]byte(name)); got != want {
				t.Errorf("%s: hasMethod(%v, %q) = %v, Has = %v", label, m, name, got, want)
			}
			var r Request
			r.Set([]byte(name), nil)
			if got, want := s.Names(&r), s.Has([]byte(name)); got != want {
				t.Errorf("%s: Names(%q) = %v, want %v", label, name, got, want)
			}
		}
	}
	// The sets under test do hold known methods by bit, by prefix and by family.
	if !sets["prefixes"].hasMethod(MethodNamed("eth_getLogs"), []byte("eth_getLogs")) ||
		!sets["deny families"].hasMethod(MethodNamed("eth_getFilterChanges"), []byte("eth_getFilterChanges")) ||
		!sets["allow family"].hasMethod(MethodNamed("eth_getFilterLogs"), []byte("eth_getFilterLogs")) {
		t.Fatal("a set misses a method it holds")
	}
}
