package config

import (
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
)

const twoAndRelay = `upstreams:
  - name: a
    http: http://a
  - name: b
    http: http://b
  - name: relay
    http: http://relay
    send_only: true
`

func TestBroadcastConfig(t *testing.T) {
	dir := t.TempDir()
	net := func(name, extra string) string {
		return "  - name: " + name + "\n    chain_id: 1\n    upstreams:\n      - name: a\n        http: http://a\n      - name: relay\n        http: http://r\n        send_only: true\n" + extra
	}
	cases := []struct {
		name, file string
		want       map[string]*Broadcast // by network; nil entry: off
	}{
		{"off by default", twoAndRelay, map[string]*Broadcast{"default": nil}},
		{"all, defaults", twoAndRelay + "broadcast: {targets: all}\n", map[string]*Broadcast{"default": {
			Methods: []string{"eth_sendRawTransaction"}, DedupeWindow: 10 * time.Minute, MaxEntries: 100000}}},
		{"empty entry is on", twoAndRelay + "broadcast: {}\n", map[string]*Broadcast{"default": {
			Methods: []string{"eth_sendRawTransaction"}, DedupeWindow: 10 * time.Minute, MaxEntries: 100000}}},
		{"named targets", twoAndRelay + "broadcast:\n  methods: [eth_sendRawTransaction, eth_sendPrivateTransaction]\n  targets: [a, relay]\n  dedupe_window: 2m\n  max_entries: 5\n",
			map[string]*Broadcast{"default": {Methods: []string{"eth_sendRawTransaction", "eth_sendPrivateTransaction"},
				Targets: []string{"a", "relay"}, DedupeWindow: 2 * time.Minute, MaxEntries: 5}}},
		{"networks: top level is the default, a network's own wins",
			"broadcast: {targets: all}\nnetworks:\n" + net("one", "") + net("two", "    broadcast: {targets: [relay], dedupe_window: 1m}\n"),
			map[string]*Broadcast{
				"one": {Methods: []string{"eth_sendRawTransaction"}, DedupeWindow: 10 * time.Minute, MaxEntries: 100000},
				"two": {Methods: []string{"eth_sendRawTransaction"}, Targets: []string{"relay"}, DedupeWindow: time.Minute, MaxEntries: 100000}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeFile(t, dir, "b.yaml", c.file)
			cfg, err := Load([]string{"-config", path}, func(string) string { return "" }, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]*Broadcast{}
			for _, n := range cfg.NetworkList() {
				got[n.Name] = n.Broadcast
				for _, u := range n.Upstreams {
					if (u.Name == "relay") != u.SendOnly {
						t.Errorf("%s: send_only %v", u.Name, u.SendOnly)
					}
				}
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestBroadcastConfigRefusals(t *testing.T) {
	dir := t.TempDir()
	cases := []struct{ name, file, want string }{
		{"unknown target", twoAndRelay + "broadcast: {targets: [a, nope]}\n", `target "nope" is not an upstream`},
		{"empty targets", twoAndRelay + "broadcast: {targets: []}\n", "an empty list"},
		{"eth_sendTransaction", twoAndRelay + "broadcast: {methods: [eth_sendTransaction]}\n", "signed raw transaction"},
		{"a read", twoAndRelay + "broadcast: {methods: [eth_call]}\n", "signed raw transaction"},
		{"a prefix", twoAndRelay + "broadcast: {methods: [eth_]}\n", "want a method name"},
		{"zero window", twoAndRelay + "broadcast: {dedupe_window: 0s}\n", "dedupe_window must be above 0"},
		{"long window", twoAndRelay + "broadcast: {dedupe_window: 48h}\n", "at most 24h"},
		{"max entries", twoAndRelay + "broadcast: {max_entries: 0}\n", "max_entries must be at least 1"},
		{"bad targets", twoAndRelay + "broadcast: {targets: {a: 1}}\n", "targets: want all"},
		{"only relays", "upstreams:\n  - name: relay\n    http: http://r\n    send_only: true\n", "at least one primary that serves reads"},
		{"network target", "networks:\n  - name: one\n    chain_id: 1\n    upstreams:\n      - name: a\n        http: http://a\n    broadcast: {targets: [b]}\n",
			`network 1 ("one"): broadcast: target "b"`},
		{"top level default, per network target", "broadcast: {targets: [b]}\nnetworks:\n  - name: one\n    chain_id: 1\n    upstreams:\n      - name: a\n        http: http://a\n",
			`network 1 ("one"): broadcast: target "b"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeFile(t, dir, "r.yaml", c.file)
			_, err := Load([]string{"-config", path}, func(string) string { return "" }, io.Discard)
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("got %v, want one line mentioning %q", err, c.want)
			}
		})
	}
}
