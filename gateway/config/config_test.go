package config

import (
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestLoadConfig(t *testing.T) {
	f := func(args []string, env map[string]string, check func(c Config) string) {
		t.Helper()
		c, err := Load(args, func(k string) string { return env[k] }, io.Discard)
		if err != nil {
			t.Fatalf("Load(%v, %v): %v", args, env, err)
		}
		if msg := check(c); msg != "" {
			t.Errorf("Load(%v, %v): %s", args, env, msg)
		}
	}
	f(nil, nil, func(c Config) string {
		if c.ListenAddr != ":8000" || c.UpstreamHTTPURL != DefaultHTTPURL || c.UpstreamWSURL != DefaultWSURL {
			return "defaults: " + c.ListenAddr + " " + c.UpstreamHTTPURL + " " + c.UpstreamWSURL
		}
		if c.MaxBatch != 1000 || len(c.DenyMethods) != 5 || !c.CacheEnabled || c.MaxConns != DefaultMaxConns || c.MaxConnsPerIP != 0 {
			return "default limits"
		}
		return ""
	})
	f(nil, map[string]string{"INFURA_PROJECT_ID": "abc123", "INFURA_NETWORK": "sepolia", "INFURA_PROJECT_SECRET": "s"}, func(c Config) string {
		if c.UpstreamHTTPURL != "https://sepolia.infura.io/v3/abc123" || c.UpstreamWSURL != "wss://sepolia.infura.io/ws/v3/abc123" || c.UpstreamSecret != "s" {
			return "infura: " + c.UpstreamHTTPURL + " " + c.UpstreamWSURL
		}
		return ""
	})
	f([]string{"-cors-origins", "https://a.example, http://localhost:3000,chrome-extension://abcdef"}, nil, func(c Config) string {
		if l := c.CORSList(); len(l) != 3 || l[1] != "http://localhost:3000" {
			return "cors origins list"
		}
		return ""
	})
	// The original web server's .envrc names keep working.
	f(nil, map[string]string{"PROJECT_ID": "p1", "PROJECT_SECRET": "sec", "MAINNET_HTTP_ENDPOINT": "https://mainnet.infura.io/v3/p1",
		"MAINNET_WEBSOCKET_ENDPOINT": "wss://mainnet.infura.io/ws/v3/p1"}, func(c Config) string {
		if c.UpstreamHTTPURL != "https://mainnet.infura.io/v3/p1" || c.UpstreamWSURL != "wss://mainnet.infura.io/ws/v3/p1" || c.UpstreamSecret != "sec" || c.InfuraProject != "p1" {
			return ".envrc aliases"
		}
		return ""
	})
	// Flags win over the environment, the environment over defaults.
	f([]string{"-listen", "127.0.0.1:9000", "-max-batch", "5"}, map[string]string{"LISTEN_ADDR": ":7000", "MAX_BATCH_SIZE": "9", "UPSTREAM_TIMEOUT": "3s"}, func(c Config) string {
		if c.ListenAddr != "127.0.0.1:9000" || c.MaxBatch != 5 || c.UpstreamTimeout != 3*time.Second {
			return "precedence"
		}
		return ""
	})
	// The connection bounds from the environment; 0 set explicitly turns one off.
	f(nil, map[string]string{"MAX_CONNS": "0", "MAX_CONNS_PER_IP": "32"}, func(c Config) string {
		if c.MaxConns != 0 || c.MaxConnsPerIP != 32 {
			return "MAX_CONNS, MAX_CONNS_PER_IP"
		}
		return ""
	})
	f([]string{"-upstream-ws", "off", "-deny-methods", "none"}, nil, func(c Config) string {
		if c.UpstreamWSURL != "" || len(c.DenyMethods) != 0 {
			return "off/none"
		}
		return ""
	})
}

func TestLoadConfigRejects(t *testing.T) {
	cases := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"-listen", "nonsense"}, nil, "-listen"},
		{[]string{"-upstream-http", "ftp://x"}, nil, "scheme must be http or https"},
		{[]string{"-upstream-ws", "http://x"}, nil, "scheme must be ws or wss"},
		{[]string{"-upstream-http", "http://"}, nil, "no host"},
		{[]string{"-upstream-http", "http://user:UrlPW-Secret1@127.0.0.1:99999/v3/key"}, nil, "port from 1 to 65535"},
		{[]string{"-upstream-http", "http://127.0.0.1:0"}, nil, "port from 1 to 65535"},
		{[]string{"-upstream-ws", "ws://127.0.0.1:65536"}, nil, "port from 1 to 65535"},
		{[]string{"-upstream-http", "http://:8545"}, nil, "no host"},
		{[]string{"-max-batch", "0"}, nil, "-max-batch"},
		{[]string{"-upstream-timeout", "0s"}, nil, "-upstream-timeout"},
		{nil, map[string]string{"UPSTREAM_TIMEOUT": "soon"}, "UPSTREAM_TIMEOUT"},
		{nil, map[string]string{"MAX_BATCH_SIZE": "many"}, "MAX_BATCH_SIZE"},
		{nil, map[string]string{"CACHE_ENABLED": "perhaps"}, "CACHE_ENABLED"},
		{[]string{"-log-level", "loud"}, nil, "-log-level"},
		{[]string{"-log-format", "xml"}, nil, "-log-format"},
		{[]string{"extra"}, nil, "unexpected argument"},
		{nil, map[string]string{"INFURA_PROJECT_ID": "a/b"}, "INFURA_PROJECT_ID"},
		{[]string{"-ws-upstream-conns", "1000"}, nil, "-ws-upstream-conns"},
		{[]string{"-max-conns", "-1"}, nil, "-max-conns must be >= 0"},
		{nil, map[string]string{"MAX_CONNS_PER_IP": "-5"}, "-max-conns-per-ip must be >= 0"},
		{[]string{"-max-conns", "10", "-max-conns-per-ip", "11"}, nil, "must not exceed -max-conns"},
		{nil, map[string]string{"MAX_CONNS": "lots"}, "MAX_CONNS"},
		{[]string{"-cors-origins", "*,https://a.example"}, nil, "* alone"},
		{[]string{"-redis-addr", "127.0.0.1:abc"}, nil, "port from 1 to 65535"},
		{[]string{"-redis-addr", "localhost:-1"}, nil, "port from 1 to 65535"},
		{[]string{"-redis-addr", "127.0.0.1:0"}, nil, "port from 1 to 65535"},
		{[]string{"-redis-addr", "127.0.0.1:97800"}, nil, "port from 1 to 65535"},
		{[]string{"-redis-addr", "a b:9780"}, nil, "want host:port"},
		{[]string{"-redis-addr", ":6379"}, nil, "want host:port"},
		{nil, map[string]string{"REDIS_ADDR": "redis://:UrlPW-Secret1@127.0.0.1:9780"}, "not a URL"},
		{[]string{"-redis-addr", "user:UrlPW-Secret1@127.0.0.1:9780"}, nil, "not a URL"},
		{[]string{"-redis-addr", "127.0.0.1:6379", "-shared-cache-redis-addr", "x:99999"}, nil, "-shared-cache-redis-addr"},
		{[]string{"-cors-origins", "https://a.example/app"}, nil, `"https://a.example/app" is not an origin`},
		{nil, map[string]string{"CORS_ORIGINS": "a.example"}, `"a.example" is not an origin`},
		{[]string{"-cors-origins", "https://a.example?x"}, nil, "is not an origin"},
		{[]string{"-cors-origins", "https://u@a.example"}, nil, "is not an origin"},
	}
	for _, c := range cases {
		_, err := Load(c.args, func(k string) string { return c.env[k] }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") ||
			strings.Contains(err.Error(), "UrlPW-Secret1") {
			t.Errorf("Load(%v, %v) = %v, want a one-line error mentioning %q", c.args, c.env, err, c.want)
		}
	}
}

// Usage text never shows a value taken from the environment: URLs with passwords or
// keys, the project id. It says where the value came from instead.
func TestUsageNeverShowsSecrets(t *testing.T) {
	env := map[string]string{
		"MAINNET_HTTP_ENDPOINT": "https://user:hunter2@eth-mainnet.g.alchemy.com/v2/alchemyKEY123",
		"UPSTREAM_WS_URL":       "wss://mainnet.infura.io/ws/v3/0123456789abcdef0123456789abcdef?key=querySECRET",
		"INFURA_PROJECT_ID":     "0123456789abcdef0123456789abcdef",
		"INFURA_PROJECT_SECRET": "projectSECRET",
	}
	for _, args := range [][]string{{"-h"}, {"-no-such-flag"}, {"-max-batch", "many"}} {
		var out strings.Builder
		_, err := Load(args, func(k string) string { return env[k] }, &out)
		text := out.String()
		if err != nil {
			text += err.Error()
		}
		for _, secret := range []string{"hunter2", "alchemyKEY123", "querySECRET", "0123456789abcdef", "projectSECRET"} {
			if strings.Contains(text, secret) {
				t.Errorf("%v: output shows %q:\n%s", args, secret, text)
			}
		}
		if args[0] == "-h" && !strings.Contains(text, "(set from MAINNET_HTTP_ENDPOINT)") {
			t.Errorf("-h does not say where -upstream-http came from:\n%s", text)
		}
	}
}

func TestRedactURL(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
	f("http://127.0.0.1:8545", "http://127.0.0.1:8545")
	f("https://mainnet.infura.io/v3/0123456789abcdef0123456789abcdef", "https://mainnet.infura.io/v3/redacted")
	f("wss://mainnet.infura.io/ws/v3/0123456789abcdef0123456789abcdef", "wss://mainnet.infura.io/ws/v3/redacted")
	f("https://eth-mainnet.g.alchemy.com/v2/abc", "https://eth-mainnet.g.alchemy.com/v2/redacted") // short keys too
	f("https://user:pass@node.example:8545/rpc", "https://redacted@node.example:8545/rpc")
	f("https://name.quiknode.pro/0123456789abcdefTOKEN/", "https://name.quiknode.pro/redacted/")
	f("https://rpc.ankr.com/eth/ankrKEY0123456789", "https://rpc.ankr.com/eth/redacted")
	f("https://node.example/rpc?key=SECRET&apikey=OTHER", "https://node.example/rpc?apikey=redacted&key=redacted")
	f("http://[::1", "(unparsable URL)")
	f("", "")
}

// The startup log line shows every upstream URL redacted, whichever variable set it.
func TestStartupLogRedactsURLs(t *testing.T) {
	env := map[string]string{
		"MAINNET_HTTP_ENDPOINT":      "http://127.0.0.1:1/v2/alchemyKEY123?key=querySECRET",
		"MAINNET_WEBSOCKET_ENDPOINT": "ws://user:hunter2@127.0.0.1:1/ws/v3/0123456789abcdef0123456789abcdef",
	}
	cfg, err := Load(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("serving", "config", cfg)
	for _, secret := range []string{"alchemyKEY123", "querySECRET", "hunter2", "0123456789abcdef"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("log shows %q: %s", secret, logs.String())
		}
	}
	if !strings.Contains(logs.String(), "/v2/redacted?key=redacted") {
		t.Errorf("log: %s", logs.String())
	}
}

// The Infura project secret goes to the flags' upstream only when every URL of it is
// Infura over TLS; anywhere else it would reach a third party.
func TestSecretOnlyToInfura(t *testing.T) {
	cases := []struct {
		http, ws string
		sent     bool
	}{
		{"https://mainnet.infura.io/v3/p", "wss://mainnet.infura.io/ws/v3/p", true},
		{"https://mainnet.INFURA.io:443/v3/p", "off", true},
		{"https://mainnet.infura.io/v3/p", "", false}, // the websocket defaults to a local node
		{"https://infura.io/v3/p", "off", true},
		{"http://mainnet.infura.io/v3/p", "wss://mainnet.infura.io/ws/v3/p", false},
		{"https://mainnet.infura.io/v3/p", "ws://mainnet.infura.io/ws/v3/p", false},
		{"https://mainnet.infura.io/v3/p", "ws://127.0.0.1:8546", false},
		{"http://127.0.0.1:8545", "ws://127.0.0.1:8546", false},
		{"https://infura.io.evil.example/v3/p", "off", false},
		{"https://evil.example/mainnet.infura.io", "off", false},
		{"https://notinfura.io/v3/p", "off", false},
		{"https://user@evil.example#@mainnet.infura.io/", "off", false},
	}
	for _, c := range cases {
		env := map[string]string{"INFURA_PROJECT_SECRET": "sec", "UPSTREAM_HTTP_URL": c.http, "UPSTREAM_WS_URL": c.ws}
		cfg, err := Load(nil, func(k string) string { return env[k] }, io.Discard)
		if err != nil {
			t.Fatalf("%s %s: %v", c.http, c.ws, err)
		}
		sp := cfg.UpstreamSpecs()[0]
		if got := sp.Password == "sec"; got != c.sent || cfg.SecretWithheld() == c.sent {
			t.Errorf("%s %s: secret sent %v (withheld %v), want sent %v", c.http, c.ws, got, cfg.SecretWithheld(), c.sent)
		}
	}
	// No secret: nothing withheld, nothing sent.
	cfg, err := Load(nil, func(string) string { return "" }, io.Discard)
	if err != nil || cfg.SecretWithheld() || cfg.UpstreamSpecs()[0].Password != "" {
		t.Fatalf("no secret: %v %v", err, cfg.SecretWithheld())
	}
}
