package cache

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/config"
	"github.com/infura-gateway/infura-gateway/gateway/head"
	"github.com/infura-gateway/infura-gateway/upstream"
)

func TestReorgDropsNumberedEntries(t *testing.T) {
	cfg, err := config.Load(nil, func(string) string { return "" }, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.CacheDepth = 1
	h := &head.Tracker{}
	c := New(cfg, h, upstream.NewRegistry())
	hdr := func(n int, hash, parent string) []byte { // hashes as long as real ones
		full := func(h string) string { return h + strings.Repeat("0", 66-len(h)) }
		return []byte(fmt.Sprintf(`{"number":"0x%x","hash":"%s","parentHash":"%s"}`, n, full(hash), full(parent)))
	}
	h.Observe(hdr(10, "0xa", "0x9"))
	blockKey, hashKey := []byte("block-5"), []byte("by-hash")
	answer := []byte(`{"jsonrpc":"2.0","id":1,"result":{"number":"0x5"}}`)
	c.Store(blockKey, methodBlockByNumber, ByNumber, 5, h.Epoch(), answer)
	c.Store(hashKey, methodBlockByNumber, ByHash, 0, h.Epoch(), answer)
	if c.Lookup(blockKey, ByNumber, h.Epoch(), time.Now()) == nil || c.Lookup(hashKey, ByHash, h.Epoch(), time.Now()) == nil {
		t.Fatal("entries not stored")
	}
	if !h.Observe(hdr(11, "0xb", "0xa")) || c.Lookup(blockKey, ByNumber, h.Epoch(), time.Now()) == nil {
		t.Fatal("a head extending the chain dropped a deep block")
	}
	if !h.Observe(hdr(12, "0xc", "0xOTHER")) { // does not extend 0xb: a reorg
		t.Fatal("new head not observed")
	}
	if c.Lookup(blockKey, ByNumber, h.Epoch(), time.Now()) != nil {
		t.Fatal("a block stored by number survived a reorg")
	}
	if c.Lookup(hashKey, ByHash, h.Epoch(), time.Now()) == nil {
		t.Fatal("a block stored by hash was dropped by a reorg")
	}
	if h.Observe(hdr(12, "0xc", "0xOTHER")) {
		t.Fatal("the same head twice counted as new")
	}
}
