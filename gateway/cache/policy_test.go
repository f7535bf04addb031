package cache

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/infura-gateway/infura-gateway/gateway/config"
	"github.com/infura-gateway/infura-gateway/gateway/head"
	"github.com/infura-gateway/infura-gateway/proto"
)

// TestSharedAdmission: which answers may go to the shared tier (Redis). Blocks,
// receipts and transactions at deep blocks or by hash are shared by default; eth_call
// and the state reads only when named in shared_cache.methods; what changes with the
// head, pending state and writes never.
func TestSharedAdmission(t *testing.T) {
	const deep, shallow = `"0x10"`, `"0x1388"` // head 5000, depth 64
	for _, tc := range []struct {
		method, params string
		extra          []string
		want           bool
	}{
		{"eth_getBlockByNumber", `[` + deep + `,false]`, nil, true},
		{"eth_getBlockByNumber", `[` + shallow + `,false]`, nil, false},
		{"eth_getBlockByNumber", `["latest",false]`, nil, false},
		{"eth_getBlockByHash", `["0x` + strings.Repeat("ab", 32) + `",true]`, nil, true},
		{"eth_getBlockReceipts", `[` + deep + `]`, nil, true},
		{"eth_getTransactionByHash", `["0x` + strings.Repeat("cd", 32) + `"]`, nil, true},
		{"eth_getTransactionReceipt", `["0x` + strings.Repeat("cd", 32) + `"]`, nil, true},
		{"eth_getTransactionByBlockNumberAndIndex", `[` + deep + `,"0x0"]`, nil, true},
		{"eth_getBlockTransactionCountByNumber", `[` + deep + `]`, nil, true},
		{"eth_call", `[{"to":"0x00000000000000000000000000000000000000aa"},` + deep + `]`, nil, false},
		{"eth_call", `[{"to":"0x00000000000000000000000000000000000000aa"},{"blockHash":"0x` + strings.Repeat("ab", 32) + `"}]`, nil, false},
		{"eth_call", `[{"to":"0x00000000000000000000000000000000000000aa"},` + deep + `]`, []string{"eth_call"}, true},
		{"eth_call", `[{"to":"0x00000000000000000000000000000000000000aa"},` + shallow + `]`, []string{"eth_call"}, false},
		{"eth_getBalance", `["0x00000000000000000000000000000000000000aa",` + deep + `]`, nil, false},
		{"eth_getBalance", `["0x00000000000000000000000000000000000000aa",` + deep + `]`, []string{"eth_getBalance"}, true},
		{"eth_getCode", `["0x00000000000000000000000000000000000000aa",` + deep + `]`, []string{"eth_call"}, false},
		{"eth_getStorageAt", `["0x00000000000000000000000000000000000000aa","0x0",` + deep + `]`, nil, false},
		{"eth_getProof", `["0x00000000000000000000000000000000000000aa",[],` + deep + `]`, nil, false},
		{"eth_getLogs", `[{"fromBlock":"0x1","toBlock":"0x2"}]`, nil, false},
		{"eth_blockNumber", `[]`, nil, false},
		{"eth_sendRawTransaction", `["0x00"]`, nil, false},
	} {
		adm, err := newSharedAdmission(tc.extra)
		if err != nil {
			t.Fatal(err)
		}
		h := &head.Tracker{}
		h.Observe([]byte(`{"number":"0x1388"}`))
		c := &Cache{depth: 64, heads: h, admit: adm}
		var req proto.Request
		if perr := req.Parse([]byte(`{"jsonrpc":"2.0","id":1,"method":"` + tc.method + `","params":` + tc.params + `}`)); perr != nil {
			t.Fatalf("%s %s: %v", tc.method, tc.params, perr)
		}
		pol, block := Classify(&req)
		got := pol != NoCache && c.Sharable(req.Method, pol, block)
		if got != tc.want {
			t.Errorf("%s %s (extra %v): shared %v, want %v", tc.method, tc.params, tc.extra, got, tc.want)
		}
	}
}

// TestSharedAdmissionConfig: shared_cache.methods takes only methods whose answers the
// cache keeps as immutable; anything else stops the gateway at start with a message.
func TestSharedAdmissionConfig(t *testing.T) {
	for _, m := range append(append([]string(nil), config.SharedByDefault...), config.SharedOnRequest...) {
		if methodRules[proto.MethodNamed(m)] < ByNumber {
			t.Errorf("%s is admitted to the shared tier but not cached as immutable", m)
		}
		if _, err := newSharedAdmission([]string{m}); err != nil {
			t.Errorf("%s: %v", m, err)
		}
	}
	for _, tc := range []struct {
		args []string
		file string
		want string
	}{
		{[]string{"-shared-cache-methods", "eth_getLogs"}, "", `-shared-cache-methods (shared_cache.methods): "eth_getLogs" cannot be shared`},
		{nil, "shared_cache: {methods: [eth_sendRawTransaction]}", `"eth_sendRawTransaction" cannot be shared`},
		{nil, "shared_cache: {max_value_bytes: 100}", "shared_cache.max_value_bytes"},
		{nil, "shared_cache: {tenant_bytes_per_minute: -1}", "shared_cache.tenant_bytes_per_minute"},
		{nil, "shared_cache: {ttl: 0s}", "shared_cache.ttl"},
		{nil, "shared_cache: {ttl: soon}", "not a duration"},
		{[]string{"-shared-cache-tenant-bytes", "-5"}, "", "-shared-cache-tenant-bytes"},
		{[]string{"-shared-cache-redis-addr", "127.0.0.1:6380"}, "", "-shared-cache-redis-addr needs -redis-addr"},
		{[]string{"-redis-addr", "127.0.0.1:6379", "-shared-cache-redis-addr", "cache"}, "", "want host:port"},
	} {
		args := tc.args
		if tc.file != "" {
			args = append(args, "-config", writeFile(t, "gateway.yaml", tc.file))
		}
		_, err := config.Load(args, func(string) string { return "" }, &strings.Builder{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %q: error %v, want one with %q", tc.args, tc.file, err, tc.want)
		}
	}
	c, err := config.Load([]string{"-config", writeFile(t, "gateway.yaml",
		"shared_cache: {ttl: 2h, max_value_bytes: 65536, tenant_bytes_per_minute: 0, methods: [eth_call]}")},
		func(string) string { return "" }, &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	if c.SharedCacheTTL.Hours() != 2 || c.SharedCacheMaxValue != 65536 || c.SharedCacheTenantBytes != 0 ||
		len(c.SharedCacheMethods) != 1 || c.SharedCacheMethods[0] != "eth_call" {
		t.Fatalf("shared_cache not applied: %+v", c)
	}
	d, _ := config.Load(nil, func(string) string { return "" }, &strings.Builder{})
	if d.SharedCacheMaxValue != 256<<10 || d.SharedCacheTenantBytes != 4<<20 || d.SharedCacheTTL.Hours() != 24 || len(d.SharedCacheMethods) != 0 {
		t.Fatalf("defaults: max value %d, tenant bytes %d, ttl %v, methods %v", d.SharedCacheMaxValue, d.SharedCacheTenantBytes, d.SharedCacheTTL, d.SharedCacheMethods)
	}
}

func writeFile(t testing.TB, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
