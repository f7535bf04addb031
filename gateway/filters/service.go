package filters

import (
	"encoding/json"
	"errors"
	"strconv"

	"github.com/infura-gateway/infura-gateway/proto"
)

// newLogFilter answers eth_newFilter: the criteria checked as geth checks them, the
// cursor at the head, so the first poll returns the logs of the blocks after it.
func (s *Service) newLogFilter(q *query, params []byte, scope string) ([]byte, error) {
	c, err := parseCriteria(params)
	if err != nil {
		return nil, err
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	return s.install(q, &state{Scope: scope, Kind: kindLogs, Crit: c})
}

// newBlockFilter answers eth_newBlockFilter.
func (s *Service) newBlockFilter(q *query, scope string) ([]byte, error) {
	return s.install(q, &state{Scope: scope, Kind: kindBlocks})
}

// creationArgs checks the params of eth_newBlockFilter (most 0: none) and
// eth_newPendingTransactionFilter (most 1: an optional fullTx) as geth does, before a
// filter is made: one made of arguments geth refuses only spent the client's filter
// quota. fullTx true is refused: the gateway keeps the hashes only, and its polls would
// answer hashes where geth's answer transactions.
func creationArgs(params []byte, most int) error {
	if proto.FirstByte(params) != '[' {
		return errNonArray
	}
	if proto.Nth(params, most).Present() {
		return &rpcError{code: proto.CodeInvalidParams, msg: "too many arguments, want at most " + strconv.Itoa(most)}
	}
	if most == 0 {
		return nil
	}
	switch a := proto.Nth(params, 0); {
	case !a.Present():
		return nil
	case string(a.Bytes(params)) == "true":
		return errFullPending
	case string(a.Bytes(params)) != "false" && string(a.Bytes(params)) != "null":
		return argError(errors.New("fullTx must be true or false"))
	}
	return nil
}

var (
	errNonArray    = &rpcError{code: proto.CodeInvalidParams, msg: "non-array args"}
	errFullPending = argError(errors.New("full transactions are not served by this gateway's pending filters: " +
		"use eth_newPendingTransactionFilter without arguments (hashes), or subscribe to newPendingTransactions with true over a websocket"))
)

func (s *Service) install(q *query, st *state) ([]byte, error) {
	// The bounds first: a refused filter must cost no upstream call (a batch of 1,000
	// eth_newBlockFilter past the bound cost 1,000 head reads).
	if err := s.store.room(q.ctx, st.Scope); err != nil {
		return nil, err
	}
	h, hh, ok, err := q.header(-1)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, proto.ErrBadUpstream
	}
	st.Next, st.Recent = h+1, []mark{{N: h, H: hh}}
	blob, _ := json.Marshal(st)
	id := newID()
	if err := s.store.create(q.ctx, id, st.Scope, blob); err != nil {
		return nil, err
	}
	return []byte(`"` + id + `"`), nil
}

// idParam reads the filter id of eth_getFilterChanges, eth_getFilterLogs and
// eth_uninstallFilter; ok is false when it cannot name a filter of ours.
func idParam(params []byte) (string, bool, error) {
	var args []json.RawMessage
	if json.Unmarshal(params, &args) != nil || len(args) != 1 {
		return "", false, invalidParams("want one filter id")
	}
	var id string
	// null decodes into a string without an error; geth refuses it as a missing id.
	if string(args[0]) == "null" || json.Unmarshal(args[0], &id) != nil {
		return "", false, argError(errors.New("filter id must be a string"))
	}
	return id, validID(id), nil
}

// find loads the filter id of scope: from the shared store, then (pending filters)
// the process's. A filter of another scope is not found, as an unknown id.
func (s *Service) find(q *query, id, scope string) (store, []byte, *state, error) {
	// The process's first: it answers without a round trip (pending filters, or every
	// filter without Redis).
	stores := []store{s.local}
	if s.store != store(s.local) {
		stores = append(stores, s.store)
	}
	for _, st := range stores {
		blob, err := st.load(q.ctx, id)
		if err != nil {
			return nil, nil, nil, err
		}
		if blob == nil {
			continue
		}
		var f state
		if json.Unmarshal(blob, &f) != nil || f.Scope != scope {
			return nil, nil, nil, errNotFound
		}
		return st, blob, &f, nil
	}
	return nil, nil, nil, errNotFound
}

// maxRetries bounds the polls run again when another poll of the same filter (on
// another replica) moved it first: each answer covers its blocks once.
const maxRetries = 4

var errContended = proto.NewError(proto.CodeServer, 503, "filter polled concurrently by other calls, retry")

// changes answers eth_getFilterChanges.
func (s *Service) changes(q *query, params []byte, scope string) ([]byte, error) {
	id, ok, err := idParam(params)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errNotFound
	}
	for range maxRetries {
		st, old, f, err := s.find(q, id, scope)
		if err != nil {
			return nil, err
		}
		var out []byte
		switch f.Kind {
		case kindLogs:
			out, err = q.pollLogs(f)
		case kindBlocks:
			out, err = q.pollBlocks(f)
		case kindPending:
			out = s.pending.drain(id)
		default:
			err = errNotFound
		}
		if errors.Is(err, errChainGone) {
			return nil, s.dropGone(q, st, id, scope, old)
		}
		if err != nil {
			return nil, err
		}
		blob, _ := json.Marshal(f)
		switch r, err := st.save(q.ctx, id, scope, old, blob); {
		case err != nil:
			return nil, err
		case r == saved:
			return out, nil
		case r == gone:
			return nil, errNotFound
		}
		if f.Kind == kindPending {
			return out, nil // its buffer is drained once, whatever the store says
		}
	}
	return nil, errContended
}

// dropGone removes a filter whose delivered blocks all left the chain and answers as
// for an unknown id, as geth's own filters are gone after its restart: the client
// makes a new filter (and reads what it missed with eth_getLogs) rather than being
// given logs it cannot tell apart from those it holds, or none at all while the
// chain climbs back.
func (s *Service) dropGone(q *query, st store, id, scope string, old []byte) error {
	if _, err := st.remove(q.ctx, id, scope, old); err != nil {
		return err
	}
	s.cfg.Log.Info("filter removed: no block it delivered is on the chain any more (a node restarted on a rewound or new chain?)", "filter", id)
	return errNotFound
}

// filterLogs answers eth_getFilterLogs: eth_getLogs with the filter's criteria, its
// range as given (tags resolved by the node now), as geth runs it. The cursor stays.
func (s *Service) filterLogs(q *query, params []byte, scope string) ([]byte, error) {
	id, ok, err := idParam(params)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errNotFound
	}
	_, _, f, err := s.find(q, id, scope)
	if err != nil {
		return nil, err
	}
	if f.Kind != kindLogs {
		return nil, errNotFound
	}
	return q.call("eth_getLogs", f.Crit.filterLogsQuery())
}

// uninstall answers eth_uninstallFilter: true when the filter was there (and the
// caller's), false otherwise, as geth does.
func (s *Service) uninstall(q *query, params []byte, scope string) ([]byte, error) {
	id, ok, err := idParam(params)
	if err != nil {
		return nil, err
	}
	if !ok {
		return []byte("false"), nil
	}
	for range maxRetries {
		st, old, _, err := s.find(q, id, scope)
		if errors.Is(err, errNotFound) {
			return []byte("false"), nil
		}
		if err != nil {
			return nil, err
		}
		r, err := st.remove(q.ctx, id, scope, old)
		if err != nil {
			return nil, err
		}
		switch r {
		case saved:
			if st == store(s.local) {
				s.pending.drop(id)
			}
			return []byte("true"), nil
		case gone:
			return []byte("false"), nil
		}
	}
	return nil, errContended
}
