package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"runtime/debug"
	"strconv"
	"strings"
)

// The Go heap's soft limit follows the container's memory limit as the pod actually
// has it (the downward API's limits.memory, in bytes), not a number computed when the
// chart was rendered: a limit changed outside Helm (a LimitRange, a VPA) moves it too.
// These flags live here, not in gateway/config, because the limit is a property of the
// process, set once before the gateway starts.
const (
	fractionFlag  = "memory-limit-fraction"
	fractionEnv   = "MEMORY_LIMIT_FRACTION"
	containerFlag = "container-memory-limit"
	containerEnv  = "CONTAINER_MEMORY_LIMIT"

	defaultFraction = 0.9
	// Below this the GC would run constantly: a limit that small is a mistake (a
	// divisor in the downward API, a unit lost), not a setting.
	minGoMemLimit = 16 << 20
)

// memLimit is what the process's memory limit is derived from.
type memLimit struct {
	container int64   // the container's limit in bytes; 0: unknown, no limit set
	fraction  float64 // share of it given to the Go runtime
	explicit  string  // GOMEMLIMIT from the environment: the runtime applied it already
}

// memLimitFlagName reports whether arg is one of this file's flags (-name, --name,
// with or without =value) and which.
func memLimitFlagName(arg string) (string, bool) {
	name, ok := strings.CutPrefix(arg, "-")
	if !ok {
		return "", false
	}
	name = strings.TrimPrefix(name, "-")
	name, _, _ = strings.Cut(name, "=")
	if name == fractionFlag || name == containerFlag {
		return name, true
	}
	return "", false
}

// memLimitSettings takes this file's flags out of args (the gateway's flag parser
// does not know them) and reads them, with their environment fallbacks.
func memLimitSettings(args []string, getenv func(string) string) ([]string, memLimit, error) {
	m := memLimit{fraction: defaultFraction, explicit: getenv("GOMEMLIMIT")}
	values := map[string]string{fractionFlag: getenv(fractionEnv), containerFlag: getenv(containerEnv)}
	rest := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		name, ok := memLimitFlagName(a)
		if !ok {
			rest = append(rest, a)
			continue
		}
		if _, v, hasValue := strings.Cut(a, "="); hasValue {
			values[name] = v
		} else if i+1 < len(args) {
			i++
			values[name] = args[i]
		} else {
			return nil, m, fmt.Errorf("-%s needs a value", name)
		}
	}
	if v := values[fractionFlag]; v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return nil, m, fmt.Errorf("-%s (env %s): %q is not a number", fractionFlag, fractionEnv, v)
		}
		if !(f > 0 && f <= 1) { // also refuses NaN
			return nil, m, fmt.Errorf("-%s (env %s): %v is not in (0, 1]", fractionFlag, fractionEnv, v)
		}
		m.fraction = f
	}
	if v := values[containerFlag]; v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return nil, m, fmt.Errorf("-%s (env %s): %q is not a number of bytes (the downward API's limits.memory with the default divisor)", containerFlag, containerEnv, v)
		}
		m.container = n
	}
	if m.container > 0 && m.explicit == "" && goMemLimit(m.container, m.fraction) < minGoMemLimit {
		return nil, m, fmt.Errorf("-%s (env %s) %d bytes × -%s %v is below 16 MiB: the gateway cannot run in that", containerFlag, containerEnv, m.container, fractionFlag, m.fraction)
	}
	return rest, m, nil
}

// goMemLimit is fraction of container bytes, rounded down, never above container.
func goMemLimit(container int64, fraction float64) int64 {
	l := math.Floor(float64(container) * fraction)
	if l >= float64(container) { // float64 rounds MaxInt64 up
		return container
	}
	return int64(l)
}

// apply sets the runtime's memory limit and logs where it came from.
func (m memLimit) apply(log *slog.Logger) {
	switch {
	case m.explicit != "":
		log.Info("memory limit", "source", "GOMEMLIMIT", "gomemlimit_bytes", debug.SetMemoryLimit(-1))
	case m.container > 0:
		l := goMemLimit(m.container, m.fraction)
		debug.SetMemoryLimit(l)
		log.Info("memory limit", "source", "container", "gomemlimit_bytes", l,
			"container_limit_bytes", m.container, "fraction", m.fraction)
	default:
		log.Info("memory limit", "source", "none", "gomemlimit_bytes", debug.SetMemoryLimit(-1))
	}
}

// printMemLimitUsage adds this file's flags to -h, in the flag package's format.
func printMemLimitUsage(w io.Writer) {
	fs := flag.NewFlagSet("infura-gateway", flag.ContinueOnError)
	fs.SetOutput(w)
	fs.Float64(fractionFlag, defaultFraction, "share of the container's memory limit (-"+containerFlag+") given to the Go runtime as its soft memory limit, in (0, 1]; ignored when GOMEMLIMIT is set (env "+fractionEnv+")")
	fs.String(containerFlag, "", "the container's memory limit in bytes (a pod: the downward API's limits.memory); empty or 0: no limit set (env "+containerEnv+")")
	fs.PrintDefaults()
}
