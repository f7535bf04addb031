package config

import (
	"io"
	"strings"
	"testing"
)

// The eth_getLogs settings a file gives each network: the top level's logs:, a network's
// own over it, the smallest cap of the network's upstreams (their logs.max_range, or
// their kind's preset); and the values refused, each with a line naming the key.
func TestLogsConfig(t *testing.T) {
	dir := t.TempDir()
	def := DefaultLogs()
	cases := []struct {
		name string
		file string
		want []LogsSettings // per network, in order
		err  string
	}{
		{name: "defaults", file: "upstreams:\n  - {name: a, http: http://x}\n", want: []LogsSettings{def}},
		{name: "kind presets, the smallest wins",
			file: "upstreams:\n  - {name: a, http: http://x, kind: quicknode}\n  - {name: b, http: http://y, kind: alchemy}\n  - {name: c, http: http://z, kind: infura}\n",
			want: []LogsSettings{{UpstreamCap: 2000, SplitRange: def.SplitRange, Parallel: def.Parallel, MaxCalls: def.MaxCalls, ProcessParallel: def.ProcessParallel}}},
		{name: "an upstream's own cap over its kind's",
			file: "upstreams:\n  - {name: a, http: http://x, kind: alchemy, logs: {max_range: 500}}\nlogs: {split_range: 4000, parallel: 8, max_calls: 100, process_parallel: 64, max_range: 1000}\n",
			want: []LogsSettings{{MaxRange: 1000, UpstreamCap: 500, SplitRange: 4000, Parallel: 8, MaxCalls: 100, ProcessParallel: 64}}},
		{name: "per network",
			file: "logs: {split_range: 3000}\nnetworks:\n" +
				"  - {name: one, chain_id: 1, upstreams: [{name: a, http: http://x, kind: quicknode}], logs: {parallel: 2}}\n" +
				"  - {name: two, chain_id: 2, upstreams: [{name: b, http: http://y}], logs: {max_range: 100}}\n",
			want: []LogsSettings{
				{UpstreamCap: 10000, SplitRange: 3000, Parallel: 2, MaxCalls: def.MaxCalls, ProcessParallel: def.ProcessParallel},
				{MaxRange: 100, SplitRange: 3000, Parallel: def.Parallel, MaxCalls: def.MaxCalls, ProcessParallel: def.ProcessParallel}}},
		{name: "unknown kind", file: "upstreams:\n  - {name: a, http: http://x, kind: ankr}\n", err: `kind "ankr": want infura, alchemy, quicknode or generic`},
		{name: "zero split", file: "upstreams:\n  - {name: a, http: http://x}\nlogs: {split_range: 0}\n", err: "split_range in [1, 2^40]"},
		{name: "parallel", file: "upstreams:\n  - {name: a, http: http://x}\nlogs: {parallel: 0}\n", err: "parallel must be in [1, 64]"},
		{name: "max_calls", file: "upstreams:\n  - {name: a, http: http://x}\nlogs: {max_calls: -1}\n", err: "max_calls must be in"},
		{name: "process_parallel in a network",
			file: "networks:\n  - {name: one, chain_id: 1, upstreams: [{name: a, http: http://x}], logs: {process_parallel: 2}}\n",
			err:  "process_parallel is set once"},
		{name: "plan", file: "upstreams:\n  - {name: a, http: http://x}\nplans:\n  p: {logs_max_range: 1099511627777}\n", err: "logs_max_range must be in"},
		{name: "unknown logs key", file: "upstreams:\n  - {name: a, http: http://x}\nlogs: {max_blocks: 5}\n", err: "line 3"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, dir, strings.ReplaceAll(tc.name, " ", "_")+".yaml", tc.file)
			c, err := Load([]string{"-config", path}, func(string) string { return "" }, io.Discard)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, want an error mentioning %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			nets := c.NetworkList()
			if len(nets) != len(tc.want) {
				t.Fatalf("%d networks", len(nets))
			}
			for i, n := range nets {
				if got := c.ForNetwork(n).Logs; got != tc.want[i] {
					t.Errorf("network %s: %+v, want %+v", n.Name, got, tc.want[i])
				}
			}
		})
	}
}
