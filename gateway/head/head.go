// Package head follows one chain's head: the block number, the hash and an epoch that
// changes with every new head, so that whatever was fetched before it is told apart. It
// tells its owner about reorgs. It imports proto/ and upstream/ (the metrics registry).
package head

import (
	"sync"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"

	"github.com/infura-gateway/infura-gateway/proto"
	"github.com/infura-gateway/infura-gateway/upstream"
)

// Tracker tracks the chain head. Every new head (or a changed head hash) starts a new
// epoch; head-scoped cache entries belong to the epoch they were fetched in. A reorg (a
// head that does not extend the previous one) also tells the cache to drop what a
// reorg could have replaced.
type Tracker struct {
	epoch  atomic.Uint64
	number atomic.Uint64
	seen   atomic.Bool

	mu      sync.Mutex // orders head updates from the subscription and the poller
	hash    [68]byte   // a quoted 32-byte hex hash
	hashN   int
	onReorg func()
	updates *metrics.Counter
}

// Register declares the head's metrics in reg.
func (h *Tracker) Register(reg *upstream.Registry) {
	reg.Gauge("gateway_chain_head_block", "Latest block number the gateway has seen.",
		func() float64 { return float64(h.number.Load()) })
	h.updates = reg.Counter("gateway_chain_head_updates_total", "New chain heads seen.")
}

// Observe takes a block header (a newHeads result or a block object) and reports
// whether it is a new head.
func (h *Tracker) Observe(header []byte) bool {
	num, ok := proto.ParseQuantity(proto.FirstMember(header, "number").Bytes(header))
	if !ok {
		return false
	}
	hash := proto.FirstMember(header, "hash").Bytes(header)
	parent := proto.FirstMember(header, "parentHash").Bytes(header)
	h.mu.Lock()
	defer h.mu.Unlock()
	prev := h.number.Load()
	prevHash := h.hash[:h.hashN]
	if h.seen.Load() && num == prev && string(hash) == string(prevHash) {
		return false // the same head again (poller and subscription both saw it)
	}
	if h.seen.Load() {
		switch {
		case num < prev: // the chain went back: a deep reorg, or an upstream restarted on a new chain
			h.reorged()
		case num == prev && string(hash) != string(prevHash): // another block at the same height
			h.reorged()
		case num == prev+1 && len(parent) > 0 && string(parent) != string(prevHash): // does not extend our head
			h.reorged()
		}
	}
	if len(hash) > len(h.hash) {
		hash = nil // not a block hash; compare nothing rather than a prefix
	}
	h.hashN = copy(h.hash[:], hash)
	h.number.Store(num)
	h.seen.Store(true)
	h.epoch.Add(1)
	if h.updates != nil {
		h.updates.Inc()
	}
	return true
}

func (h *Tracker) reorged() {
	if h.onReorg != nil {
		h.onReorg()
	}
}

// OnReorg sets what runs on a reorg (the cache drops what a reorg could replace). Set
// it before the first Observe.
func (h *Tracker) OnReorg(f func()) { h.onReorg = f }

// Epoch is the current head epoch: it changes with every new head.
func (h *Tracker) Epoch() uint64 { return h.epoch.Load() }

// Number is the latest block number seen (0 before the first).
func (h *Tracker) Number() uint64 { return h.number.Load() }

// Seen reports whether a head was seen at all.
func (h *Tracker) Seen() bool { return h.seen.Load() }
