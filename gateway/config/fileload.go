package config

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/goccy/go-yaml"
)

// maxConfigFile bounds the file read.
const maxConfigFile = 4 << 20

var (
	upstreamName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	sha256Hex    = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
	methodEntry  = regexp.MustCompile(`^[A-Za-z0-9_]+\*?$`)
)

// readConfigFile reads and decodes path. Errors name the file and the line, never a
// value: the file may hold keys.
func readConfigFile(path string, getenv func(string) string) (*FileConfig, [32]byte, error) {
	var sum [32]byte
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, sum, fmt.Errorf("config file %s: %w", path, unwrapPathError(err))
	}
	if len(data) > maxConfigFile {
		return nil, sum, fmt.Errorf("config file %s: larger than %d bytes", path, maxConfigFile)
	}
	sum = sha256.Sum256(data)
	var f FileConfig
	if err := decodeYAML(data, &f); err != nil {
		return nil, sum, fmt.Errorf("config file %s: %s", path, yamlError(err))
	}
	if err := f.expand(getenv); err != nil {
		return nil, sum, fmt.Errorf("config file %s: %w", path, err)
	}
	if err := f.validate(); err != nil {
		return nil, sum, fmt.Errorf("config file %s: %w", path, err)
	}
	return &f, sum, nil
}

// decodeYAML decodes strictly. The decoder panics on some malformed input (found by
// FuzzConfigFile); a reload must refuse such a file, not take the gateway down.
func decodeYAML(data []byte, f *FileConfig) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = errors.New("not a valid configuration file (the YAML decoder failed on it)")
		}
	}()
	return yaml.UnmarshalWithOptions(data, f, yaml.Strict())
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// yamlError says where the decoder stopped, by line, and why; the decoder's own
// message quotes the source around the line, which may hold a key, so it is not used.
func yamlError(err error) string {
	var ye yaml.Error
	if errors.As(err, &ye) {
		msg := redactField(oneLine(ye.GetMessage()))
		if tk := ye.GetToken(); tk != nil && tk.Position != nil {
			return fmt.Sprintf("line %d: %s", tk.Position.Line, msg)
		}
		return msg
	}
	return redactField(oneLine(err.Error()))
}

// unknownField finds the name in the decoder's "unknown field" message. A name that
// does not read as a setting (a value pasted where a key goes) is not repeated.
var unknownField = regexp.MustCompile(`unknown field "([^"]*)"`)

var settingName = regexp.MustCompile(`^[a-z][a-z_]{0,39}$`)

func redactField(msg string) string {
	return unknownField.ReplaceAllStringFunc(msg, func(m string) string {
		if name := unknownField.FindStringSubmatch(m)[1]; settingName.MatchString(name) {
			return m
		}
		return "unknown field (not a setting name)"
	})
}

// envPrefix: variables named for the gateway's configuration file expand without
// being listed.
const envPrefix = "GATEWAY_"

// builtinEnv are the gateway's own upstream credentials (documented with the flags):
// the gateway sends them to an upstream anyway, so a file may name them unlisted.
// REDIS_PASSWORD and the like are not among them: they must never reach an upstream.
var builtinEnv = []string{"INFURA_PROJECT_ID", "INFURA_PROJECT_SECRET"}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// expand replaces ${VAR} (and $VAR) in the upstreams' strings with the environment.
// Only variables meant for the file expand: GATEWAY_*, builtinEnv and env_allow. Any
// other is an error naming it, so a typo or a pasted example cannot carry a process
// secret (a cloud credential, the Redis password) into an upstream URL and from there
// into errors and metric labels. A variable that is not set is an error naming it too
// (a key missing from the Secret should stop the gateway, not send requests to a URL
// without it). Errors never hold a value.
func (f *FileConfig) expand(getenv func(string) string) error {
	for i, name := range f.EnvAllow {
		if !envName.MatchString(name) {
			return fmt.Errorf("env_allow entry %d: not a variable name (letters, digits and _)", i+1)
		}
	}
	allowed := func(name string) bool {
		return strings.HasPrefix(name, envPrefix) || slices.Contains(builtinEnv, name) || slices.Contains(f.EnvAllow, name)
	}
	for i := range f.Upstreams {
		u := &f.Upstreams[i]
		// Errors name the upstream by its name as written: expanded, it may be a value.
		where := fmt.Sprintf("upstream %d (%q)", i+1, u.Name)
		if strings.Contains(u.Name, "$") {
			where = fmt.Sprintf("upstream %d", i+1)
		}
		for _, field := range []*string{&u.Name, &u.HTTP, &u.WS, &u.User, &u.Password} {
			var refused, missing string
			*field = os.Expand(*field, func(name string) string {
				if !allowed(name) {
					if refused == "" {
						refused = name
					}
					return ""
				}
				v := getenv(name)
				if v == "" && missing == "" {
					missing = name
				}
				return v
			})
			switch {
			case refused != "" && envName.MatchString(refused):
				return fmt.Errorf("%s: ${%s} is not allowed: only %s* variables, %s and those listed in env_allow expand",
					where, refused, envPrefix, strings.Join(builtinEnv, ", "))
			case refused != "":
				return fmt.Errorf("%s: a $ that is not a ${VAR} reference (write the value in a GATEWAY_* variable)", where)
			case missing != "":
				return fmt.Errorf("%s: environment variable %s is not set", where, missing)
			}
		}
	}
	return nil
}

// LoadFile applies the configuration file of base (base.ConfigFile) on top of base and
// validates the result; it returns base unchanged when no file is configured. Reloads
// call it with the configuration the flags gave at start.
func LoadFile(base Config, getenv func(string) string) (Config, [32]byte, error) {
	if base.flags != nil {
		base = *base.flags
		flags := base
		base.flags = &flags
	}
	if base.ConfigFile == "" {
		return base, [32]byte{}, nil
	}
	f, sum, err := readConfigFile(base.ConfigFile, getenv)
	if err != nil {
		return base, sum, err
	}
	c := base
	c.Upstreams = nil
	f.apply(&c)
	if len(f.Upstreams) == 0 {
		c.Upstreams = nil // the flags' upstream
	}
	if err := c.Validate(); err != nil {
		return base, sum, fmt.Errorf("config file %s: %w", base.ConfigFile, err)
	}
	return c, sum, nil
}
