package filters

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
	"github.com/infura-gateway/infura-gateway/upstream"
)

// pendingHub serves pending-transaction filters from one shared newPendingTransactions
// subscription (the router's, so it moves between upstreams as other subscriptions
// do), held while any such filter lives. The hashes a filter has not been polled for
// are kept in the process (a node's mempool is its own: they are not shared through
// Redis), at most maxPendingHashes per filter, the oldest dropped first.
type pendingHub struct {
	s *Service

	mu      sync.Mutex
	bufs    map[string]*[]string // by filter id
	gwID    []byte               // the subscription's gateway id; nil: not held
	replies chan []byte
	stop    chan struct{}
}

const maxPendingHashes = 4096

var pendingParams = []byte(`["newPendingTransactions"]`)

func newPendingHub(s *Service) *pendingHub {
	return &pendingHub{s: s, bufs: map[string]*[]string{}, replies: make(chan []byte, 1)}
}

// errNoPending refuses eth_newPendingTransactionFilter on a network whose upstreams
// cannot push pending transactions.
var errNoPending = &rpcError{code: proto.CodeMethodNotFound,
	msg: "eth_newPendingTransactionFilter needs a websocket upstream offering newPendingTransactions subscriptions; this network has none"}

// create makes a pending-transaction filter, subscribing first when none is held.
func (h *pendingHub) create(q *query, scope string) ([]byte, error) {
	subs := h.s.cfg.Subs
	if subs == nil {
		return nil, errNoPending
	}
	// Refused before it joins (or subscribes) upstream, as install is.
	if err := h.s.local.room(q.ctx, scope); err != nil {
		return nil, err
	}
	id, err := h.reserve(q, subs)
	if err != nil {
		return nil, err
	}
	blob, _ := json.Marshal(&state{Scope: scope, Kind: kindPending})
	if err := h.s.local.create(q.ctx, id, scope, blob); err != nil {
		h.drop(id)
		return nil, err
	}
	return []byte(`"` + id + `"`), nil
}

// reserve holds the subscription (joining it if needed) and a buffer for a new filter:
// the buffer keeps the subscription while the filter is stored (outside the lock: the
// store's expiry calls drop).
func (h *pendingHub) reserve(q *query, subs *upstream.Subscriptions) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.gwID == nil {
		subs.Join(pendingParams, storedID, h, q.deadline)
		var reply []byte
		select {
		case reply = <-h.replies:
		case <-time.After(time.Until(q.deadline)):
			return "", proto.ErrTimeout
		}
		r := proto.FirstMember(reply, "result")
		var id string
		if !r.Present() || json.Unmarshal(r.Bytes(reply), &id) != nil {
			msg := "no answer"
			if e := proto.FirstMember(reply, "error"); e.Present() {
				var re struct{ Message string }
				_ = json.Unmarshal(e.Bytes(reply), &re)
				msg = re.Message
			}
			return "", &rpcError{code: proto.CodeMethodNotFound,
				msg: "eth_newPendingTransactionFilter: no upstream websocket offers newPendingTransactions: " + msg}
		}
		h.gwID, h.stop = []byte(id), make(chan struct{})
		go h.sweep(h.stop)
	}
	id := newID()
	h.bufs[id] = new([]string)
	return id, nil
}

// sweep expires unpolled filters while the subscription is held, so the last one's
// expiry ends it.
func (h *pendingHub) sweep(stop chan struct{}) {
	t := time.NewTicker(max(h.s.cfg.Timeout/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			h.s.local.purge()
		}
	}
}

// Reply is the subscription's answer (upstream.Sink).
func (h *pendingHub) Reply(msg []byte) {
	select {
	case h.replies <- append([]byte(nil), msg...):
	default:
	}
}

// Notify takes one pending transaction hash (upstream.Sink).
func (h *pendingHub) Notify(frame []byte) {
	p := proto.FirstMember(frame, "params")
	if !p.Present() {
		return
	}
	params := p.Bytes(frame)
	var hash string
	if json.Unmarshal(proto.FirstMember(params, "result").Bytes(params), &hash) != nil {
		return
	}
	h.mu.Lock()
	for _, b := range h.bufs {
		if len(*b) == maxPendingHashes {
			*b = append((*b)[:0], (*b)[1:]...)
		}
		*b = append(*b, hash)
	}
	h.mu.Unlock()
}

// drain returns the hashes since the last poll, as a JSON array.
func (h *pendingHub) drain(id string) []byte {
	h.mu.Lock()
	b := h.bufs[id]
	var hashes []string
	if b != nil {
		hashes, *b = *b, nil
	}
	h.mu.Unlock()
	if hashes == nil {
		return []byte("[]")
	}
	out, _ := json.Marshal(hashes)
	return out
}

// drop forgets filter id (uninstalled, expired); the last one ends the subscription.
func (h *pendingHub) drop(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.bufs, id)
	h.leaveIfIdleLocked()
}

func (h *pendingHub) leaveIfIdleLocked() {
	if len(h.bufs) > 0 || h.gwID == nil {
		return
	}
	h.s.cfg.Subs.Leave(h, h.gwID)
	close(h.stop)
	h.gwID = nil
}

func (h *pendingHub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	clear(h.bufs)
	h.leaveIfIdleLocked()
}
