package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// Fingerprint names the configuration a replica runs: the first 12 hex digits of the
// SHA-256 of the file's digest (fileSum, as LoadFile returns it; zero without a file)
// and of the settings the flags and environment gave at start. Replicas of one
// deployment show the same fingerprint unless one of them refused a reload or started
// with other flags. Secrets are left out of the flags' part (a digest truncated to 48
// bits of a short secret and known settings could be searched); the file is hashed as
// is, as the reload does.
func (c Config) Fingerprint(fileSum [32]byte) string {
	f := c
	if c.flags != nil {
		f = *c.flags
	}
	f.flags = nil
	f.UpstreamHTTPURL, f.UpstreamWSURL = RedactURL(f.UpstreamHTTPURL), RedactURL(f.UpstreamWSURL)
	f.UpstreamSecret, f.RedisPassword = "", ""
	f.TraceEndpoint = RedactURL(f.TraceEndpoint)
	f.InfuraProject = redactedIf(f.InfuraProject)
	f.AdminToken = redactedIf(f.AdminToken)
	f.Upstreams, f.Keys = nil, KeySettings{} // the file's, hashed with it
	// The flags' networks (the Infura shorthand's) carry the project id in their URLs:
	// named, not hashed as they are. The file's are hashed with the file.
	nets := ""
	for _, n := range f.Networks {
		nets += n.Name + ","
	}
	f.Networks = nil
	h := sha256.New()
	h.Write(fileSum[:])
	fmt.Fprintf(h, "%+v %s", f, nets)
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])[:6])
}

func redactedIf(s string) string {
	if s == "" {
		return ""
	}
	return "redacted"
}
