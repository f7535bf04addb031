package config

import (
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/upstream"
)

const consensusUpstreams = "upstreams:\n  - {name: a, http: http://a}\n  - {name: b, http: http://b}\n  - {name: c, http: http://c}\n"

func TestConsensusConfig(t *testing.T) {
	dir := t.TempDir()
	net := func(name, extra string) string {
		return "  - name: " + name + "\n    chain_id: 1\n    upstreams:\n      - {name: a, http: http://a}\n      - {name: b, http: http://b}\n" + extra
	}
	cases := []struct {
		name, file string
		want       map[string]*upstream.ConsensusConfig
	}{
		{"off by default", consensusUpstreams, map[string]*upstream.ConsensusConfig{"default": nil}},
		{"top level", consensusUpstreams + "consensus: {methods: [eth_getBalance, eth_call], upstreams: 3, agree: 2, timeout: 2s}\n",
			map[string]*upstream.ConsensusConfig{"default": {Methods: []string{"eth_getBalance", "eth_call"}, Upstreams: 3, Agree: 2, Timeout: 2 * time.Second}}},
		{"networks: top level is the default, a network's own wins",
			"consensus: {methods: [eth_call], upstreams: 2, agree: 2}\nnetworks:\n" + net("one", "") +
				net("two", "    consensus: {methods: [eth_getCode], upstreams: 2, agree: 1}\n"),
			map[string]*upstream.ConsensusConfig{
				"one": {Methods: []string{"eth_call"}, Upstreams: 2, Agree: 2},
				"two": {Methods: []string{"eth_getCode"}, Upstreams: 2, Agree: 1}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Load([]string{"-config", writeFile(t, dir, "c.yaml", c.file)}, func(string) string { return "" }, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]*upstream.ConsensusConfig{}
			for _, n := range cfg.NetworkList() {
				got[n.Name] = n.Consensus
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestConsensusConfigRefusals(t *testing.T) {
	dir := t.TempDir()
	cases := []struct{ name, file, want string }{
		{"a send", consensusUpstreams + "consensus: {methods: [eth_sendRawTransaction], upstreams: 2, agree: 2}\n", "a send is never asked"},
		{"a filter", consensusUpstreams + "consensus: {methods: [eth_getFilterChanges], upstreams: 2, agree: 2}\n", "no consensus"},
		{"unknown method", consensusUpstreams + "consensus: {methods: [eth_nope], upstreams: 2, agree: 2}\n", "knows by name"},
		{"no methods", consensusUpstreams + "consensus: {upstreams: 2, agree: 2}\n", "methods: list at least one"},
		{"agree above upstreams", consensusUpstreams + "consensus: {methods: [eth_call], upstreams: 2, agree: 3}\n", "agree 3"},
		{"more upstreams than the network has", consensusUpstreams + "consensus: {methods: [eth_call], upstreams: 4, agree: 2}\n", "the network has 3"},
		{"negative timeout", consensusUpstreams + "consensus: {methods: [eth_call], upstreams: 2, agree: 2, timeout: -1s}\n", "timeout"},
		{"network", "networks:\n  - name: one\n    chain_id: 1\n    upstreams:\n      - {name: a, http: http://a}\n    consensus: {methods: [eth_call], upstreams: 2, agree: 2}\n",
			`network 1 ("one"): consensus: upstreams 2, but the network has 1`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load([]string{"-config", writeFile(t, dir, "r.yaml", c.file)}, func(string) string { return "" }, io.Discard)
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("got %v, want one line mentioning %q", err, c.want)
			}
		})
	}
}
