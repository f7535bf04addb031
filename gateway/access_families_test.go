package gateway

import (
	"fmt"
	"strings"
	"testing"
)

// familyKeys are keys on plans (or with key lists) that deny one member of a method
// family; familyConfig configures them.
var familyKeys = []struct{ name, key, plan, keyDeny string }{
	{"nologs", "k-nologs-0123456789", "nologs", ""},
	{"nologsub", "k-nologsub-0123456789", "nologsub", ""},
	{"nopending", "k-nopending-0123456789", "nopending", ""},
	{"nopendingsub", "k-nopendingsub-012345", "nopendingsub", ""},
	{"noblockfilter", "k-noblockfilter-01234", "noblockfilter", ""},
	{"noheads", "k-noheads-0123456789", "noheads", ""},
	{"keynologs", "k-keynologs-01234567", "open", "eth_getLogs"},
	{"allowlist", "k-allowlist-01234567", "allowlist", ""},
}

func familyConfig() string {
	var b strings.Builder
	b.WriteString("keys:\n  entries:\n")
	for _, k := range familyKeys {
		fmt.Fprintf(&b, "    - {name: %s, sha256: %s, plan: %s", k.name, sha(k.key), k.plan)
		if k.keyDeny != "" {
			fmt.Fprintf(&b, ", methods: {deny: [%s]}", k.keyDeny)
		}
		b.WriteString("}\n")
	}
	b.WriteString(`plans:
  open: {}
  nologs: {methods: {deny: [eth_getLogs]}}
  nologsub: {methods: {deny: [logs]}}
  nopending: {methods: {deny: [eth_newPendingTransactionFilter]}}
  nopendingsub: {methods: {deny: [newPendingTransactions]}}
  noblockfilter: {methods: {deny: [eth_newBlockFilter]}}
  noheads: {methods: {deny: [newHeads]}}
  allowlist: {methods: {allow: [eth_blockNumber, eth_subscribe, newHeads]}}
`)
	return b.String()
}

// A plan that denies one way to read some data denies every other way to read it: the
// method families (proto.NewDenySet), on POST / and on the websocket alike.
func TestPlanDeniesMethodFamilies(t *testing.T) {
	_, gw, _ := startKeyed(t, familyConfig())
	call := func(id int, method, params string) string {
		return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":%q,"params":%s}`, id, method, params)
	}
	const (
		getLogs         = `[{"fromBlock":"0x1","toBlock":"0x2"}]`
		newFilter       = `[{"address":"0x0000000000000000000000000000000000000001"}]`
		filterID        = `["0x1"]`
		subLogs         = `["logs",{"address":"0x0000000000000000000000000000000000000001"}]`
		subLogsEscaped  = `["l\u006fgs",{}]`
		subPending      = `["newPendingTransactions"]`
		subHeads        = `["newHeads"]`
		subHeadsEscaped = `["new\u0048eads"]`
		noParams        = `[]`
	)
	cases := []struct {
		key            string
		method, params string
		refused        bool
	}{
		{"nologs", "eth_getLogs", getLogs, true},
		{"nologs", "eth_newFilter", newFilter, true},
		{"nologs", "eth_getFilterLogs", filterID, true},
		{"nologs", "eth_subscribe", subLogs, true},
		{"nologs", "eth_subscribe", subLogsEscaped, true},
		{"nologs", "eth_getFilterChanges", filterID, false}, // block and pending filters still exist
		{"nologs", "eth_subscribe", subHeads, false},
		{"nologsub", "eth_getLogs", getLogs, true},
		{"nologsub", "eth_newFilter", newFilter, true},
		{"nopending", "eth_subscribe", subPending, true},
		{"nopending", "eth_newBlockFilter", noParams, false},
		{"nopendingsub", "eth_newPendingTransactionFilter", noParams, true},
		{"nopendingsub", "eth_subscribe", subHeads, false},
		{"noblockfilter", "eth_subscribe", subHeads, true},
		{"noblockfilter", "eth_subscribe", subHeadsEscaped, true},
		{"noheads", "eth_newBlockFilter", noParams, true},
		{"noheads", "eth_newPendingTransactionFilter", noParams, false},
		{"keynologs", "eth_newFilter", newFilter, true},
		{"keynologs", "eth_subscribe", subLogs, true},
		{"allowlist", "eth_subscribe", subHeads, false},
		{"allowlist", "eth_subscribe", subLogs, true}, // eth_subscribe listed, logs not
		{"allowlist", "eth_subscribe", subPending, true},
	}
	keyOf := map[string]string{}
	for _, k := range familyKeys {
		keyOf[k.name] = k.key
	}
	ws := map[string]*wsTestClient{}
	wsBase := strings.Replace(gw.URL, "http://", "ws://", 1) + "/ws/v3/"
	for i, tc := range cases {
		name := fmt.Sprintf("%s/%s%s", tc.key, tc.method, tc.params)
		body := call(i+1, tc.method, tc.params)
		_, _, b := post(t, gw.URL+"/v3/"+keyOf[tc.key], body, nil)
		checkFamilyAnswer(t, "POST /v3/ "+name, b, tc.refused)
		c := ws[tc.key]
		if c == nil {
			c = dialWS(t, wsBase+keyOf[tc.key], nil)
			ws[tc.key] = c
		}
		checkFamilyAnswer(t, "/ws/v3/ "+name, string(c.call(body)), tc.refused)
	}
}

func checkFamilyAnswer(t *testing.T, what, b string, refused bool) {
	t.Helper()
	denied := strings.Contains(b, `"code":-32601`) && strings.Contains(b, "not available on this API key's plan")
	if denied != refused {
		t.Errorf("%s: answer %s: refused by the plan = %v, want %v", what, b, denied, refused)
	}
}
