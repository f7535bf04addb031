package config

import (
	"fmt"
	"slices"
	"strings"
)

// SharedCacheEntry is the file's shared_cache section: what the Redis cache tier takes
// and how much (the flags of the same meaning, which it overrides). A change takes a
// restart.
type SharedCacheEntry struct {
	TTL                  *Duration `yaml:"ttl"`
	MaxValueBytes        *int      `yaml:"max_value_bytes"`
	TenantBytesPerMinute *int      `yaml:"tenant_bytes_per_minute"`
	Methods              []string  `yaml:"methods"`
	RequestBudget        *Duration `yaml:"request_budget"`
}

// apply sets the section's settings on c; Config.Validate checks them.
func (e *SharedCacheEntry) apply(c *Config) {
	if e == nil {
		return
	}
	setDuration(&c.SharedCacheTTL, e.TTL)
	set(&c.SharedCacheMaxValue, e.MaxValueBytes)
	set(&c.SharedCacheTenantBytes, e.TenantBytesPerMinute)
	setDuration(&c.SharedCacheBudget, e.RequestBudget)
	if e.Methods != nil {
		c.SharedCacheMethods = e.Methods
	}
}

// SharedCacheChanged reports whether b's shared tier settings differ from a's: the
// tier is built with them at start, so a reload that changes them is refused.
func SharedCacheChanged(a, b *Config) bool {
	return a.SharedCacheTTL != b.SharedCacheTTL || a.SharedCacheMaxValue != b.SharedCacheMaxValue ||
		a.SharedCacheTenantBytes != b.SharedCacheTenantBytes || a.SharedCacheBudget != b.SharedCacheBudget || !slices.Equal(a.SharedCacheMethods, b.SharedCacheMethods)
}

// The shared tier (Redis) holds what every replica can use and no client can inflate:
// blocks, receipts and transactions, looked up by hash or by deep block number. Each
// is bounded by the chain (one answer per block or transaction), so the tier's size
// follows the chain's, not what clients ask. Answers to eth_call and the state reads
// are as many as there are (address, data, block) triples a client can make up: they
// are kept in this replica's bounded in-process store only, unless named in
// -shared-cache-methods (shared_cache.methods). Whatever is admitted is also capped in
// size per answer and charged to its tenant's write budget (gateway/sharedcache). The lists live here, not
// with the cache policy (gateway/cachepolicy.go), because validation checks
// -shared-cache-methods against them at start and on reload.
var SharedByDefault = []string{
	"eth_getBlockByNumber", "eth_getBlockByHash", "eth_getBlockReceipts",
	"eth_getTransactionByHash", "eth_getTransactionReceipt",
	"eth_getTransactionByBlockNumberAndIndex", "eth_getTransactionByBlockHashAndIndex",
	"eth_getBlockTransactionCountByNumber", "eth_getBlockTransactionCountByHash",
	"eth_getUncleCountByBlockNumber", "eth_getUncleCountByBlockHash",
}

// SharedOnRequest are the immutable (at a deep block) answers an operator may admit.
var SharedOnRequest = []string{
	"eth_call", "eth_getBalance", "eth_getCode", "eth_getStorageAt", "eth_getTransactionCount",
	"eth_getProof", "eth_feeHistory",
}

// CheckSharedMethods returns an error naming the first of extra the shared tier cannot
// take: each must be in SharedOnRequest or SharedByDefault.
func CheckSharedMethods(extra []string) error {
	for _, n := range extra {
		if !slices.Contains(SharedOnRequest, n) && !slices.Contains(SharedByDefault, n) {
			return fmt.Errorf("%q cannot be shared; want some of %s", n, strings.Join(SharedOnRequest, ", "))
		}
	}
	return nil
}
