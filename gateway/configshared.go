package gateway

import "slices"

// SharedCacheEntry is the file's shared_cache section: what the Redis cache tier takes
// and how much (the flags of the same meaning, which it overrides). A change takes a
// restart.
type SharedCacheEntry struct {
	TTL                  *Duration `yaml:"ttl"`
	MaxValueBytes        *int      `yaml:"max_value_bytes"`
	TenantBytesPerMinute *int      `yaml:"tenant_bytes_per_minute"`
	Methods              []string  `yaml:"methods"`
}

// apply sets the section's settings on c; Config.Validate checks them.
func (e *SharedCacheEntry) apply(c *Config) {
	if e == nil {
		return
	}
	setDuration(&c.SharedCacheTTL, e.TTL)
	set(&c.SharedCacheMaxValue, e.MaxValueBytes)
	set(&c.SharedCacheTenantBytes, e.TenantBytesPerMinute)
	if e.Methods != nil {
		c.SharedCacheMethods = e.Methods
	}
}

// sharedCacheChanged reports whether b's shared tier settings differ from a's: the
// tier is built with them at start.
func sharedCacheChanged(a, b *Config) bool {
	return a.SharedCacheTTL != b.SharedCacheTTL || a.SharedCacheMaxValue != b.SharedCacheMaxValue ||
		a.SharedCacheTenantBytes != b.SharedCacheTenantBytes || !slices.Equal(a.SharedCacheMethods, b.SharedCacheMethods)
}
