package config

import (
	"io"
	"strings"
	"testing"
)

// Upstream budgets in the file: taken into the upstream's spec, checked with one line
// naming the upstream.
func TestConfigFileBudgets(t *testing.T) {
	dir := t.TempDir()
	up := "upstreams:\n  - name: a\n    http: http://x\n"
	for _, tc := range []struct {
		name, file, want string
	}{
		{"ok", up + "    budget: {requests_per_second: 50, units_per_second: 330, daily_units: 1000000, costs: alchemy, method_costs: {eth_call: 30}}\nshared_budget_replicas: 3\n", ""},
		{"negative", up + "    budget: {requests_per_second: -1}\n", `upstream 1 ("a"): budget: limits must be >= 0`},
		{"too large", up + "    budget: {units_per_second: 2e9}\n", "at most 1e9"},
		{"unknown preset", up + "    budget: {costs: quicknode}\n", `costs "quicknode": want one of alchemy, generic, infura`},
		{"bad method", up + "    budget: {method_costs: {\"eth_*\": 3}}\n", `method_costs: "eth_*" is not a method name`},
		{"negative cost", up + "    budget: {method_costs: {eth_call: -3}}\n", "eth_call must be between 0 and 2^30"},
		{"unknown budget key", up + "    budget: {rps: 3}\n", "line 4"},
		{"replicas", up + "shared_budget_replicas: 0\n", "-budget-replicas (shared_budget_replicas) must be between 1 and 1000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, dir, strings.ReplaceAll(tc.name, " ", "_")+".yaml", tc.file)
			c, err := Load([]string{"-config", path}, func(string) string { return "" }, io.Discard)
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("got %v, want %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b := c.UpstreamSpecs()[0].Budget
			if b.RequestsPerSecond != 50 || b.UnitsPerSecond != 330 || b.DailyUnits != 1000000 || b.Costs != "alchemy" ||
				b.MethodCosts["eth_call"] != 30 || c.BudgetReplicas != 3 {
				t.Fatalf("budget %+v, replicas %d", b, c.BudgetReplicas)
			}
		})
	}
	// The flags: defaults, and checked.
	c, err := Load(nil, func(string) string { return "" }, io.Discard)
	if err != nil || c.BudgetReplicas != 1 || c.BudgetWait.String() != "250ms" || c.BudgetQueueBytes != 1<<20 {
		t.Fatalf("defaults: %v %d %v %d", err, c.BudgetReplicas, c.BudgetWait, c.BudgetQueueBytes)
	}
	if _, err := Load([]string{"-budget-wait", "1m"}, func(string) string { return "" }, io.Discard); err == nil ||
		!strings.Contains(err.Error(), "-budget-wait must be between 0 and 10s") {
		t.Fatalf("-budget-wait 1m: %v", err)
	}
}
