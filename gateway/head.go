package gateway

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/infura-gateway/infura-gateway/proto"
	"github.com/infura-gateway/infura-gateway/upstream"
)

// heads tracks the chain head. Every new head (or a changed head hash) starts a new
// epoch; head-scoped cache entries belong to the epoch they were fetched in. A reorg (a
// head that does not extend the previous one) also tells the cache to drop what a
// reorg could have replaced.
type heads struct {
	epoch  atomic.Uint64
	number atomic.Uint64
	seen   atomic.Bool

	mu      sync.Mutex // orders head updates from the subscription and the poller
	hash    [68]byte   // a quoted 32-byte hex hash
	hashN   int
	onReorg func()
	updates *metrics.Counter
}

// register declares the head's metrics in reg.
func (h *heads) register(reg *upstream.Registry) {
	reg.Gauge("gateway_chain_head_block", "Latest block number the gateway has seen.",
		func() float64 { return float64(h.number.Load()) })
	h.updates = reg.Counter("gateway_chain_head_updates_total", "New chain heads seen.")
}

// observe takes a block header (a newHeads result or a block object) and reports
// whether it is a new head.
func (h *heads) observe(header []byte) bool {
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

func (h *heads) reorged() {
	if h.onReorg != nil {
		h.onReorg()
	}
}

// trackHeads follows the head: through a newHeads subscription on the Mux when there
// is a websocket upstream (retrying until it is established; it then survives
// reconnects), otherwise by polling the latest block over HTTP.
func (s *Server) trackHeads() {
	defer s.wg.Done()
	if s.mux != nil {
		backoff := 100 * time.Millisecond
		for {
			unsub, err := s.mux.Subscribe([]byte(`["newHeads"]`), func(header []byte) { s.heads.observe(header) })
			if err == nil {
				// newHeads reports only later heads: read the current one once.
				s.pollHead()
				<-s.stop
				unsub()
				return
			}
			s.log.Debug("head subscription not established yet", "err", err)
			select {
			case <-s.stop:
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 5*time.Second)
		}
	}
	t := time.NewTicker(s.cfg.HeadPoll)
	defer t.Stop()
	for {
		s.pollHead()
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
	}
}

// pollHead reads the latest block header over HTTP.
func (s *Server) pollHead() {
	var r proto.Request
	r.Set(methodGetBlockByNumber, latestHeaderParams)
	ans, err := s.pool.Call(nil, &r, restID, time.Now().Add(min(s.cfg.UpstreamTimeout, 2*s.cfg.HeadPoll)))
	if err == nil {
		s.heads.observe(proto.FirstMember(ans, "result").Bytes(ans))
	}
}

var (
	methodGetBlockByNumber = []byte("eth_getBlockByNumber")
	latestHeaderParams     = []byte(`["latest",false]`)
)
