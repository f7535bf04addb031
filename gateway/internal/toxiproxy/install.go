// Package toxiproxy runs Shopify's toxiproxy (a TCP proxy with injectable faults) for
// tests, talking to its HTTP API with net/http and encoding/json only: the gateway's
// go.mod does not depend on the toxiproxy module. It is the one definition of
// toxiproxy's version (Version); `./task toxiproxy` installs that release into .bin/
// through the Go module proxy, and `./task test` does it when it is missing.
//
// A test starts a server (Start), puts a proxy in front of each upstream address
// (Server.NewProxy, or Server.NewUpstream for a node's HTTP and websocket ports at once)
// and points the gateway at the proxies' addresses; it then injects faults per proxy:
// Latency, ResetPeer, Timeout, Bandwidth, Down/Up, and Clear to heal. The semantics the
// helpers rely on, read from the pinned release's source and checked by this package's
// tests:
//
//   - A toxic applies to a stream: "upstream" is client → server bytes, "downstream"
//     server → client. It applies to connections open when it is added and to new ones.
//   - Toxicity is the probability, drawn per connection and stream each time its toxic
//     chain is rebuilt, that the toxic is active; every helper here uses 1 (always).
//   - latency delays every chunk by latency ± jitter milliseconds (so a request/answer
//     round trip grows by at least the latency of the stream it is applied to).
//   - timeout swallows all data; with a timeout > 0 it closes the connection that long
//     after the toxic started on it, with 0 it holds it open forever. Removing a timeout
//     toxic closes the connections it held (their data is gone).
//   - reset_peer swallows the first chunk, waits its timeout, then closes the
//     connection; connections opened while it is present get SO_LINGER 0, so the close
//     is a TCP RST (ECONNRESET for the client). Connections that were already open when
//     it was added are closed with a FIN instead (EOF for the client).
//   - bandwidth limits a stream to rate KB/s (kilobytes per second).
//   - A disabled proxy ("enabled": false) closes its listener (connections refused) and
//     every connection it carries; enabling it listens again on the same address.
package toxiproxy

import (
	"debug/buildinfo"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Version is the toxiproxy release the tests are written against; Install builds it
// and `./task toxiproxy` runs Install. (`go install …@latest` resolves to an older
// release, v2.5.0: always install this pinned one.)
const Version = "v2.12.0"

const (
	// module and serverPackage are what `go install` builds at Version.
	module        = "github.com/Shopify/toxiproxy/v2"
	serverPackage = module + "/cmd/server"
	// BinName is the installed server binary's name (`go install` would call it server).
	BinName = "toxiproxy-server"
	// BinEnv names the variable that points at another toxiproxy-server binary.
	BinEnv = "TOXIPROXY_BIN"
)

// Find locates the toxiproxy server binary: $TOXIPROXY_BIN, then .bin/toxiproxy-server
// at the repository root, then $PATH, then $GOBIN and ~/go/bin.
func Find() (string, error) {
	if p := os.Getenv(BinEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", BinEnv, p, err)
		}
		return p, nil
	}
	if dir, err := os.Getwd(); err == nil {
		for ; dir != filepath.Dir(dir); dir = filepath.Dir(dir) {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				p := filepath.Join(dir, ".bin", BinName)
				if _, err := os.Stat(p); err == nil {
					return p, nil
				}
			}
		}
	}
	if p, err := exec.LookPath(BinName); err == nil {
		return p, nil
	}
	for _, dir := range []string{os.Getenv("GOBIN"), filepath.Join(os.Getenv("HOME"), "go", "bin")} {
		if dir == "" {
			continue
		}
		if p := filepath.Join(dir, BinName); fileExists(p) {
			return p, nil
		}
	}
	return "", errors.New(BinName + " not found: run `./task toxiproxy` (installs toxiproxy " + Version +
		" into .bin/) or set " + BinEnv)
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// BinaryVersion reports which toxiproxy release the server binary at bin is: the module
// version recorded in a `go install`ed binary, else what `-version` prints (release
// builds set it with -ldflags), with a leading v.
func BinaryVersion(bin string) (string, error) {
	if info, err := buildinfo.ReadFile(bin); err == nil && info.Path == serverPackage &&
		info.Main.Path == module && strings.HasPrefix(info.Main.Version, "v") {
		return info.Main.Version, nil
	}
	out, err := exec.Command(bin, "-version").Output()
	if err != nil {
		return "", fmt.Errorf("%s -version: %w", bin, err)
	}
	// "toxiproxy-server version X.Y.Z"
	f := strings.Fields(string(out))
	if len(f) < 3 || f[1] != "version" {
		return "", fmt.Errorf("%s -version printed %q", bin, out)
	}
	return "v" + strings.TrimPrefix(f[2], "v"), nil
}

// IsPinned reports whether the binary at bin is the Version release.
func IsPinned(bin string) bool {
	v, err := BinaryVersion(bin)
	return err == nil && v == Version
}

// Install makes dir/toxiproxy-server the pinned release: a binary there that is
// Version is kept, anything else is replaced by `go install` (through the Go module
// proxy; about 20 seconds on 2 cores). Build output goes to out.
func Install(dir string, out io.Writer) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(abs, BinName)
	if IsPinned(bin) {
		return bin, nil
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return "", err
	}
	// go install names the binary after its package (server): build into a scratch
	// GOBIN beside the target, then rename, so dir never holds a half-written binary.
	tmp, err := os.MkdirTemp(abs, ".toxiproxy-install-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	fmt.Fprintf(out, "installing toxiproxy %s into %s (once)\n", Version, abs)
	cmd := exec.Command("go", "install", serverPackage+"@"+Version)
	cmd.Env = append(os.Environ(), "GOBIN="+tmp)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go install %s@%s: %w", serverPackage, Version, err)
	}
	if err := os.Rename(filepath.Join(tmp, "server"), bin); err != nil {
		return "", err
	}
	if v, err := BinaryVersion(bin); err != nil || v != Version {
		return "", fmt.Errorf("%s is %q (%v) after go install, want %s", bin, v, err, Version)
	}
	return bin, nil
}
