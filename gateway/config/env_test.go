package config

import (
	"strings"
	"testing"
)

// ${VAR} in the configuration file reads only variables meant for it: GATEWAY_*, the
// gateway's own upstream credentials (INFURA_PROJECT_ID, INFURA_PROJECT_SECRET) and
// those the file lists in env_allow. Any other reference is a load error naming the
// variable, never its value: a typo or a pasted example must not carry a cloud
// credential into an upstream URL, and from there into errors and metric labels.
func TestConfigEnvAllowList(t *testing.T) {
	const secret = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
	env := map[string]string{
		"AWS_SECRET_ACCESS_KEY": secret, "REDIS_PASSWORD": secret, "HOME": secret,
		"GATEWAY_NODE_KEY": "gwkey", "ALCHEMY_KEY": "alk",
		"INFURA_PROJECT_ID": "proj", "INFURA_PROJECT_SECRET": "sec",
	}
	cases := []struct {
		name, file string
		wantErr    string // "" for a file that loads
		wantHTTP   string
	}{
		{"aws in http", "upstreams:\n  - name: a\n    http: https://x/${AWS_SECRET_ACCESS_KEY}\n", "AWS_SECRET_ACCESS_KEY", ""},
		{"aws without braces", "upstreams:\n  - name: a\n    http: https://x/$AWS_SECRET_ACCESS_KEY\n", "AWS_SECRET_ACCESS_KEY", ""},
		{"aws in ws", "upstreams:\n  - name: a\n    http: https://x\n    ws: wss://x/${AWS_SECRET_ACCESS_KEY}\n", "AWS_SECRET_ACCESS_KEY", ""},
		{"aws in password", "upstreams:\n  - name: a\n    http: https://x\n    password: ${AWS_SECRET_ACCESS_KEY}\n", "AWS_SECRET_ACCESS_KEY", ""},
		{"aws in user", "upstreams:\n  - name: a\n    http: https://x\n    user: ${AWS_SECRET_ACCESS_KEY}\n", "AWS_SECRET_ACCESS_KEY", ""},
		{"aws in name", "upstreams:\n  - name: ${AWS_SECRET_ACCESS_KEY}\n    http: https://x\n", "AWS_SECRET_ACCESS_KEY", ""},
		{"the gateway's own redis password", "upstreams:\n  - name: a\n    http: https://x/${REDIS_PASSWORD}\n", "REDIS_PASSWORD", ""},
		{"an unset variable outside the list", "upstreams:\n  - name: a\n    http: https://x/${NOT_ALLOWED_NOR_SET}\n", "NOT_ALLOWED_NOR_SET", ""},
		{"listed in another file's env_allow only", "env_allow: [OTHER]\nupstreams:\n  - name: a\n    http: https://x/${HOME}\n", "HOME", ""},
		{"a bad env_allow entry", "env_allow: [\"not a name\"]\nupstreams:\n  - name: a\n    http: https://x\n", "env_allow", ""},
		{"GATEWAY_ prefix", "upstreams:\n  - name: a\n    http: https://x/${GATEWAY_NODE_KEY}\n", "", "https://x/gwkey"},
		{"env_allow", "env_allow: [ALCHEMY_KEY]\nupstreams:\n  - name: a\n    http: https://x/${ALCHEMY_KEY}\n", "", "https://x/alk"},
		{"the Infura credentials", "upstreams:\n  - name: a\n    http: https://x/${INFURA_PROJECT_ID}\n    password: ${INFURA_PROJECT_SECRET}\n", "", "https://x/proj"},
		{"allowed but unset", "env_allow: [UNSET_KEY]\nupstreams:\n  - name: a\n    http: https://x/${UNSET_KEY}\n", "UNSET_KEY is not set", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeFile(t, t.TempDir(), "gateway.yaml", c.file)
			f, _, err := readConfigFile(path, func(k string) string { return env[k] })
			if c.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got := f.Upstreams[0].HTTP; got != c.wantHTTP {
					t.Fatalf("http %q, want %q", got, c.wantHTTP)
				}
				return
			}
			if err == nil {
				t.Fatalf("loaded; want an error naming %s", c.wantErr)
			}
			if msg := err.Error(); !strings.Contains(msg, c.wantErr) || strings.Contains(msg, secret) || strings.Contains(msg, "\n") {
				t.Fatalf("error %q: want one line naming %s, without its value", msg, c.wantErr)
			}
		})
	}
}
