package gateway

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestSharedCacheChangeNeedsRestart: the shared tier is built at start; a reload that
// changes shared_cache is refused, and the running configuration stays.
func TestSharedCacheChangeNeedsRestart(t *testing.T) {
	_, gw, path := startKeyed(t, accessConfig("{}")+"shared_cache: {ttl: 1h}\n")
	writeFile(t, filepath.Dir(path), filepath.Base(path), accessConfig("{}")+"shared_cache: {ttl: 2h}\n")
	if err := gw.srv.ReloadConfig(); err == nil || !strings.Contains(err.Error(), "shared_cache changed") {
		t.Fatalf("reload with another shared_cache.ttl: %v", err)
	}
	writeFile(t, filepath.Dir(path), filepath.Base(path), accessConfig("{requests_per_second: 5}")+"shared_cache: {ttl: 1h}\n")
	if err := gw.srv.ReloadConfig(); err != nil {
		t.Fatalf("reload with the same shared_cache: %v", err)
	}
}
