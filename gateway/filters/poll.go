package filters

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
)

type kind uint8

const (
	kindLogs kind = iota + 1
	kindBlocks
	kindPending
)

// state is what the gateway keeps of a filter: whose it is, what it matches, and its
// cursor: Next, the first block not delivered yet, and Recent, the blocks delivered
// near the head (number and hash, oldest first) to tell a reorg at the next poll.
type state struct {
	Scope  string    `json:"s"`
	Kind   kind      `json:"k"`
	Crit   *criteria `json:"c,omitempty"`
	Next   uint64    `json:"n"`
	Recent []mark    `json:"r,omitempty"`
}

// mark is a delivered block; L: logs of it were delivered (their removal is owed if it
// leaves the chain).
type mark struct {
	N uint64 `json:"n"`
	H string `json:"h"`
	L bool   `json:"l,omitempty"`
}

// Recent keeps the blocks of the last keepDepth below the head, at most maxMarks:
// deeper reorgs than that are not told (geth's own filters see what the node sees).
const (
	keepDepth = 128
	maxMarks  = 256
)

// query is one filter call: the router to ask and the call's deadline.
type query struct {
	s        *Service
	up       Caller
	deadline time.Time
	ctx      context.Context
}

var storedID = []byte("1")

// call asks the router; a node's JSON-RPC error is passed on to the client as it is.
func (q *query) call(method string, params []byte) (json.RawMessage, error) {
	var req proto.Request
	req.Set([]byte(method), params)
	ans, err := q.up.Call(nil, &req, storedID, q.deadline)
	if err != nil {
		if errors.Is(err, proto.ErrResponseTooLarge) {
			return nil, q.s.tooLarge()
		}
		return nil, err
	}
	if e := proto.FirstMember(ans, "error"); e.Present() {
		var re struct {
			Code    int             `json:"code"`
			Message string          `json:"message"`
			Data    json.RawMessage `json:"data"`
		}
		if json.Unmarshal(e.Bytes(ans), &re) != nil {
			return nil, proto.ErrBadUpstream
		}
		return nil, &rpcError{code: re.Code, msg: re.Message, data: re.Data}
	}
	r := proto.FirstMember(ans, "result")
	if !r.Present() {
		return nil, proto.ErrBadUpstream
	}
	return bytes.Clone(r.Bytes(ans)), nil
}

// header is the number and hash of block n ("latest" when n < 0); ok is false when the
// node does not have it (yet).
func (q *query) header(n int64) (num uint64, hash string, ok bool, err error) {
	tag := "latest"
	if n >= 0 {
		tag = quantity(uint64(n))
	}
	res, err := q.call("eth_getBlockByNumber", []byte(`["`+tag+`",false]`))
	if err != nil || string(res) == "null" {
		return 0, "", false, err
	}
	var h struct {
		Number string `json:"number"`
		Hash   string `json:"hash"`
	}
	if json.Unmarshal(res, &h) != nil {
		return 0, "", false, proto.ErrBadUpstream
	}
	num, ok = proto.ParseQuantity([]byte(`"` + h.Number + `"`))
	if !ok || h.Hash == "" {
		return 0, "", false, proto.ErrBadUpstream
	}
	return num, h.Hash, true, nil
}

// tooLarge refuses a poll whose answer would pass the response byte budget; the
// filter stays where it was, so nothing is lost.
func (s *Service) tooLarge() *rpcError {
	return &rpcError{code: proto.CodeLimitExceeded, msg: "filter changes larger than the response size limit (" +
		strconv.Itoa(s.cfg.MaxResponse) + " bytes): read the blocks since the last poll with eth_getLogs over smaller ranges, then make a new filter"}
}

// reconcile checks the delivered blocks in st.Recent against the chain at head (number
// h, hash hh): the blocks that left it are returned (oldest first), Recent is cut to
// the common ancestor, and Next goes back to the block after it. behind: the upstream
// asked has not reached what was delivered, on the same chain; nothing is new yet.
// errChainGone: no block the filter delivered is on the chain any more (a node
// restarted on a rewound or new chain, or a reorg deeper than the marks): what it
// delivered can be neither retracted nor continued.
func (q *query) reconcile(st *state, h uint64, hh string) (dropped []mark, behind bool, err error) {
	if len(st.Recent) == 0 {
		return nil, false, nil
	}
	top := len(st.Recent) - 1 // the newest mark a chain ending at h can hold
	for top >= 0 && st.Recent[top].N > h {
		top--
	}
	last := st.Recent[len(st.Recent)-1]
	if top < 0 && last.N-h > q.s.cfg.MaxLag {
		// Further below every delivered block than an upstream may lag. The network
		// is asked for the last delivered height (the router takes a null from an
		// upstream behind its served head to the others): a block there means this
		// upstream is behind (a fresh filter's only mark is its creation head), and a
		// poll that reaches it judges the marks; none anywhere, the chain went back.
		// Within max_lag no call is made: a load-balanced provider's backends differ
		// by a few blocks, so a null there would not tell a rewind from lag either.
		_, _, ok, err := q.header(int64(last.N))
		switch {
		case err != nil:
			return nil, false, err
		case !ok:
			return nil, false, errChainGone
		}
		return nil, true, nil
	}
	keep := -1
	for i := top; i >= 0; i-- {
		m := st.Recent[i]
		cur := hh
		if m.N != h {
			_, hash, ok, err := q.header(int64(m.N))
			if err != nil {
				return nil, false, err
			}
			if !ok {
				return nil, true, nil
			}
			cur = hash
		}
		if cur == m.H {
			keep = i
			break
		}
	}
	switch {
	case keep == top && top < len(st.Recent)-1:
		return nil, true, nil // behind what was delivered, on the same chain
	case top < 0:
		return nil, true, nil // behind every delivered block by at most MaxLag: nothing to compare yet
	case keep < 0:
		return nil, false, errChainGone
	}
	dropped = append(dropped, st.Recent[keep+1:]...)
	if len(dropped) == 0 {
		return nil, false, nil
	}
	st.Next = st.Recent[keep].N + 1
	st.Recent = st.Recent[:keep+1]
	return dropped, false, nil
}

// errChainGone: reconcile found none of the filter's delivered blocks on the chain.
var errChainGone = errors.New("the chain holds no block the filter delivered")

// trim drops marks deeper than keepDepth below h, and the oldest past maxMarks.
func (st *state) trim(h uint64) {
	i := 0
	for i < len(st.Recent) && st.Recent[i].N+keepDepth <= h {
		i++
	}
	if n := len(st.Recent) - i; n > maxMarks {
		i += n - maxMarks
	}
	st.Recent = append(st.Recent[:0], st.Recent[i:]...)
}

// addMark records a delivered block; a second mark for the same number keeps the one
// with logs (the head's hash was read before the logs).
func (st *state) addMark(m mark) {
	if n := len(st.Recent); n > 0 && st.Recent[n-1].N >= m.N {
		last := &st.Recent[n-1]
		if last.N == m.N && m.L {
			*last = m
		}
		return
	}
	st.Recent = append(st.Recent, m)
}

// pollLogs moves a log filter: the logs of blocks that left the chain again with
// removed: true, then the logs of the blocks since the last poll. The answer is a
// JSON array.
func (q *query) pollLogs(st *state) ([]byte, error) {
	h, hh, ok, err := q.header(-1)
	if err != nil || !ok {
		if err == nil {
			err = proto.ErrBadUpstream
		}
		return nil, err
	}
	dropped, behind, err := q.reconcile(st, h, hh)
	if err != nil {
		return nil, err
	}
	out := []byte{'['}
	budget := q.s.cfg.MaxResponse
	for _, m := range dropped {
		if !m.L {
			continue
		}
		logs, err := q.call("eth_getLogs", st.Crit.logsQuery(0, 0, m.H))
		if err != nil {
			var re *rpcError
			if errors.As(err, &re) {
				continue // the node no longer has the dropped block: nothing to tell of it
			}
			return nil, err
		}
		if out, err = appendLogs(out, logs, true, nil); err != nil {
			return nil, err
		}
		if len(out) > budget {
			return nil, q.s.tooLarge()
		}
	}
	if !behind {
		from, to := st.Next, h
		if st.Crit.From >= 0 && uint64(st.Crit.From) > from {
			from = uint64(st.Crit.From)
		}
		if st.Crit.To >= 0 && uint64(st.Crit.To) < to {
			to = uint64(st.Crit.To)
		}
		if from <= to {
			logs, err := q.call("eth_getLogs", st.Crit.logsQuery(from, to, ""))
			if err != nil {
				return nil, err
			}
			if out, err = appendLogs(out, logs, false, st); err != nil {
				return nil, err
			}
			if len(out) > budget {
				return nil, q.s.tooLarge()
			}
		}
		if h >= st.Next {
			st.addMark(mark{N: h, H: hh})
			st.Next = h + 1
		}
		st.trim(h)
	}
	return append(out, ']'), nil
}

// appendLogs appends the logs of an eth_getLogs result to the array in out, each
// marked removed when asked; with st, the blocks they are in become marks.
func appendLogs(out []byte, result json.RawMessage, removed bool, st *state) ([]byte, error) {
	var logs []json.RawMessage
	if err := json.Unmarshal(result, &logs); err != nil {
		return nil, proto.ErrBadUpstream
	}
	for _, l := range logs {
		if len(out) > 1 {
			out = append(out, ',')
		}
		if removed {
			out = appendRemoved(out, l)
		} else {
			out = append(out, l...)
		}
		if st != nil {
			var where struct {
				BlockNumber string `json:"blockNumber"`
				BlockHash   string `json:"blockHash"`
			}
			if json.Unmarshal(l, &where) != nil {
				return nil, proto.ErrBadUpstream
			}
			n, ok := proto.ParseQuantity([]byte(`"` + where.BlockNumber + `"`))
			if !ok {
				return nil, proto.ErrBadUpstream
			}
			st.addMark(mark{N: n, H: where.BlockHash, L: true})
		}
	}
	return out, nil
}

var (
	removedFalse = []byte(`"removed":false`)
	removedTrue  = []byte(`"removed":true`)
)

// appendRemoved appends log l with removed: true, as a node tells a log of a block
// that left the chain.
func appendRemoved(out, l []byte) []byte {
	if i := bytes.Index(l, removedFalse); i >= 0 {
		out = append(out, l[:i]...)
		out = append(out, removedTrue...)
		return append(out, l[i+len(removedFalse):]...)
	}
	end := bytes.LastIndexByte(l, '}')
	if end < 0 {
		return append(out, l...)
	}
	out = append(out, l[:end]...)
	if bytes.IndexByte(l[:end], ':') >= 0 {
		out = append(out, ',')
	}
	out = append(out, removedTrue...)
	return append(out, l[end:]...)
}

// hashLen is one block hash in a block filter's answer: quoted, with its comma.
const hashLen = 2 + 2 + 64 + 1

// pollBlocks moves a block filter: the hashes of the blocks since the last poll, in
// order (after a reorg, those of the new chain from the common ancestor on).
func (q *query) pollBlocks(st *state) ([]byte, error) {
	h, hh, ok, err := q.header(-1)
	if err != nil || !ok {
		if err == nil {
			err = proto.ErrBadUpstream
		}
		return nil, err
	}
	_, behind, err := q.reconcile(st, h, hh)
	if err != nil {
		return nil, err
	}
	out := []byte{'['}
	if behind || h < st.Next {
		return append(out, ']'), nil
	}
	if int(h-st.Next+1)*hashLen > q.s.cfg.MaxResponse {
		return nil, q.s.tooLarge()
	}
	hashes, err := q.hashes(st.Next, h, hh)
	if err != nil {
		return nil, err
	}
	for i, hash := range hashes {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, '"')
		out = append(out, hash...)
		out = append(out, '"')
		st.addMark(mark{N: st.Next + uint64(i), H: hash})
	}
	st.Next = h + 1
	st.trim(h)
	return append(out, ']'), nil
}

// headerFetchers bounds the header calls one block-filter poll makes at once: a poll
// after a long absence on a fast chain needs hundreds, which one at a time would not
// finish within the call's deadline (and the cursor would never move).
const headerFetchers = 8

// hashes returns the hashes of blocks from..to (to's is hh, already read).
func (q *query) hashes(from, to uint64, hh string) ([]string, error) {
	out := make([]string, to-from+1)
	out[len(out)-1] = hh
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		fail error
		next = from
	)
	for range min(headerFetchers, len(out)-1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				n := next
				next++
				stop := fail != nil
				mu.Unlock()
				if stop || n >= to {
					return
				}
				_, hash, ok, err := q.header(int64(n))
				if err == nil && !ok {
					err = proto.ErrBadUpstream // the head's node has it: one behind does not yet
				}
				if err != nil {
					mu.Lock()
					fail = err
					mu.Unlock()
					return
				}
				out[n-from] = hash
			}
		}()
	}
	wg.Wait()
	return out, fail
}
