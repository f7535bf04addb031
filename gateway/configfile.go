package gateway

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/infura-gateway/infura-gateway/upstream"
)

// FileConfig is the configuration file (-config / CONFIG_FILE): the upstreams and the
// settings of routing and health. It is decoded strictly (an unknown key is an error
// naming its line) and every string may hold ${VAR}, read from the environment, so the
// file can live in a ConfigMap and the keys in a Secret. Settings the file leaves out
// keep their flag values.
type FileConfig struct {
	Upstreams []UpstreamEntry `yaml:"upstreams"`
	Routing   *RoutingEntry   `yaml:"routing"`
	Health    *HealthEntry    `yaml:"health"`
}

// UpstreamEntry is one upstream in the file.
type UpstreamEntry struct {
	Name        string       `yaml:"name"`
	HTTP        string       `yaml:"http"`
	WS          string       `yaml:"ws"`
	User        string       `yaml:"user"`
	Password    string       `yaml:"password"`
	Tier        string       `yaml:"tier"`
	Weight      int          `yaml:"weight"`
	MaxInFlight int          `yaml:"max_in_flight"`
	Methods     MethodsEntry `yaml:"methods"`
	Archive     bool         `yaml:"archive"`
}

// MethodsEntry lists methods by name or by prefix (ending in _).
type MethodsEntry struct {
	Allow []string `yaml:"allow"`
	Deny  []string `yaml:"deny"`
}

// RoutingEntry overrides the routing flags.
type RoutingEntry struct {
	Retries       *int     `yaml:"retries"`
	HedgeQuantile *float64 `yaml:"hedge_quantile"`
	HedgeMaxExtra *float64 `yaml:"hedge_max_extra"`
	ArchiveDepth  *uint64  `yaml:"archive_depth"`
}

// HealthEntry overrides the health flags.
type HealthEntry struct {
	Window        *Duration `yaml:"window"`
	MinRequests   *int      `yaml:"min_requests"`
	MaxErrorRate  *float64  `yaml:"max_error_rate"`
	MaxFailures   *int      `yaml:"max_failures"`
	MaxLag        *uint64   `yaml:"max_lag"`
	SlowFactor    *float64  `yaml:"slow_factor"`
	SlowMin       *Duration `yaml:"slow_min"`
	BanMin        *Duration `yaml:"ban_min"`
	BanMax        *Duration `yaml:"ban_max"`
	Readmit       *int      `yaml:"readmit"`
	ProbeInterval *Duration `yaml:"probe_interval"`
}

// Duration is a duration written as Go writes one: 30s, 500ms, 5m.
type Duration time.Duration

// UnmarshalYAML reads a duration; the decoder adds the line to the error.
func (d *Duration) UnmarshalYAML(b []byte) error {
	s := strings.Trim(strings.TrimSpace(string(b)), `"'`)
	v, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("not a duration (e.g. 30s, 500ms, 5m)")
	}
	*d = Duration(v)
	return nil
}

// maxConfigFile bounds the file read.
const maxConfigFile = 4 << 20

var (
	upstreamName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
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
	if err := yaml.UnmarshalWithOptions(data, &f, yaml.Strict()); err != nil {
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
		if tk := ye.GetToken(); tk != nil && tk.Position != nil {
			return fmt.Sprintf("line %d: %s", tk.Position.Line, oneLine(ye.GetMessage()))
		}
		return oneLine(ye.GetMessage())
	}
	return oneLine(err.Error())
}

// expand replaces ${VAR} in the upstreams' strings with the environment. A variable
// that is not set is an error naming it (a key missing from the Secret should stop the
// gateway, not send requests to a URL without it).
func (f *FileConfig) expand(getenv func(string) string) error {
	for i := range f.Upstreams {
		u := &f.Upstreams[i]
		for _, field := range []*string{&u.Name, &u.HTTP, &u.WS, &u.User, &u.Password} {
			var missing []string
			*field = os.Expand(*field, func(name string) string {
				v := getenv(name)
				if v == "" {
					missing = append(missing, name)
				}
				return v
			})
			if len(missing) > 0 {
				return fmt.Errorf("upstream %d (%q): environment variable %s is not set", i+1, u.Name, missing[0])
			}
		}
	}
	return nil
}

func (f *FileConfig) validate() error {
	if len(f.Upstreams) == 0 {
		return errors.New("no upstreams: list at least one under upstreams:")
	}
	names := map[string]bool{}
	primaries := 0
	for i, u := range f.Upstreams {
		where := fmt.Sprintf("upstream %d (%q)", i+1, u.Name)
		switch {
		case !upstreamName.MatchString(u.Name):
			return fmt.Errorf("%s: name must be 1-63 of a-z, 0-9, _ and -, starting with a letter or digit", where)
		case names[u.Name]:
			return fmt.Errorf("%s: the name is used twice", where)
		case u.Tier != "" && u.Tier != "primary" && u.Tier != "fallback":
			return fmt.Errorf("%s: tier must be primary or fallback", where)
		case u.Weight < 0 || u.MaxInFlight < 0:
			return fmt.Errorf("%s: weight and max_in_flight must be >= 0", where)
		}
		names[u.Name] = true
		if err := checkURL(where+" http", u.HTTP, "http", "https"); err != nil {
			return err
		}
		if u.WS != "" {
			if err := checkURL(where+" ws", u.WS, "ws", "wss"); err != nil {
				return err
			}
		}
		for _, m := range append(append([]string(nil), u.Methods.Allow...), u.Methods.Deny...) {
			if !methodEntry.MatchString(m) {
				return fmt.Errorf("%s: method %q: want a method name or a prefix ending in _", where, m)
			}
		}
		if u.Tier != "fallback" {
			primaries++
		}
	}
	if primaries == 0 {
		return errors.New("every upstream is a fallback: mark at least one primary")
	}
	return nil
}

// apply sets the file's settings on c: the upstreams always, routing and health where
// the file has them.
func (f *FileConfig) apply(c *Config) {
	c.Upstreams = c.Upstreams[:0]
	for _, u := range f.Upstreams {
		tier := upstream.TierPrimary
		if u.Tier == "fallback" {
			tier = upstream.TierFallback
		}
		c.Upstreams = append(c.Upstreams, upstream.Spec{Name: u.Name, HTTPURL: u.HTTP, WSURL: u.WS,
			User: u.User, Password: u.Password, Tier: tier, Weight: u.Weight, MaxInFlight: u.MaxInFlight,
			Allow: u.Methods.Allow, Deny: u.Methods.Deny, Archive: u.Archive})
	}
	if r := f.Routing; r != nil {
		set(&c.Retries, r.Retries)
		set(&c.HedgeQuantile, r.HedgeQuantile)
		set(&c.HedgeMaxExtra, r.HedgeMaxExtra)
		set(&c.ArchiveDepth, r.ArchiveDepth)
	}
	if h := f.Health; h != nil {
		setDuration(&c.HealthWindow, h.Window)
		set(&c.BanMinRequests, h.MinRequests)
		set(&c.BanErrorRate, h.MaxErrorRate)
		set(&c.BanFailures, h.MaxFailures)
		set(&c.MaxLag, h.MaxLag)
		set(&c.SlowFactor, h.SlowFactor)
		setDuration(&c.SlowMin, h.SlowMin)
		setDuration(&c.BanMin, h.BanMin)
		setDuration(&c.BanMax, h.BanMax)
		set(&c.Readmit, h.Readmit)
		setDuration(&c.ProbeInterval, h.ProbeInterval)
	}
}

func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

func setDuration(dst *time.Duration, v *Duration) {
	if v != nil {
		*dst = time.Duration(*v)
	}
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
	if err := c.Validate(); err != nil {
		return base, sum, fmt.Errorf("config file %s: %w", base.ConfigFile, err)
	}
	return c, sum, nil
}
