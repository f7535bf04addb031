// Package filters answers the JSON-RPC filter methods (eth_newFilter,
// eth_newBlockFilter, eth_newPendingTransactionFilter, eth_getFilterChanges,
// eth_getFilterLogs, eth_uninstallFilter) itself, for one network. A node keeps a
// filter in its own memory, so behind several upstreams (or several replicas) a poll
// that reaches another node answers "filter not found". Here a filter is a cursor the
// gateway keeps (the last block delivered and the hashes of the blocks delivered near
// the head), and a poll asks the network's router for eth_getLogs and block headers:
// any upstream serves it, failover keeps it, and with Redis any replica answers it.
//
// It imports upstream/, redisconn/ and proto/ only.
package filters

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/redisconn"
	"github.com/infura-gateway/infura-gateway/proto"
	"github.com/infura-gateway/infura-gateway/upstream"
)

// Caller is the network's router (network.Caller): every upstream call of a filter
// goes through its normal pick, retries and health, as any client call does.
type Caller interface {
	Call(spare []byte, r *proto.Request, id []byte, deadline time.Time) ([]byte, error)
}

// Config bounds the filters of one network.
type Config struct {
	// Network names the network: filter ids and their Redis keys are its own.
	Network string
	// Timeout: a filter not polled for this long is removed (geth: 5 minutes).
	Timeout time.Duration
	// MaxPerTenant and MaxTotal bound the filters alive at once, per tenant (an API
	// key, or an anonymous client's address block) and for the network (with Redis:
	// across the replicas); MaxBytes bounds their stored state.
	MaxPerTenant, MaxTotal int
	MaxBytes               int64
	// MaxResponse is the byte budget of one answer (-max-response-body).
	MaxResponse int
	// MaxLag is how many blocks below what a filter delivered the chain's head may be
	// and still be an upstream behind (the network's max_lag); further down, the
	// network is asked for the last delivered block, and the filter is removed when
	// no upstream has it (the chain went back). 0: 5, the default max_lag.
	MaxLag uint64
	// Redis holds the filters for every replica; nil: in this process.
	Redis *redisconn.Conn
	// Subs is the router's shared subscriptions, for pending-transaction filters; nil
	// when no upstream has a websocket.
	Subs *upstream.Subscriptions
	Log  *slog.Logger
	// Now is the clock (tests move it); nil: time.Now.
	Now func() time.Time
}

// Service answers the filter methods of one network.
type Service struct {
	cfg     Config
	store   store     // log and block filters: in Redis, or in the process
	local   *memStore // pending-transaction filters: always in the process
	pending *pendingHub
}

// New makes the filter service of one network.
func New(cfg Config) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.MaxLag == 0 {
		cfg.MaxLag = 5
	}
	s := &Service{cfg: cfg}
	s.local = newMemStore(cfg)
	s.local.svc = s
	if cfg.Redis != nil {
		rs := newRedisStore(cfg)
		rs.svc = s
		s.store = rs
	} else {
		s.store = s.local
	}
	s.pending = newPendingHub(s)
	s.local.onExpire = s.pending.drop
	return s
}

// Close ends the pending-transaction subscription, if one is held.
func (s *Service) Close() { s.pending.close() }

// owned marks the methods the service answers.
var owned = func() (t [proto.NumMethods]bool) {
	for _, m := range []string{"eth_newFilter", "eth_newBlockFilter", "eth_newPendingTransactionFilter",
		"eth_getFilterChanges", "eth_getFilterLogs", "eth_uninstallFilter"} {
		t[proto.MethodNamed(m)] = true
	}
	return t
}()

// Owns reports whether the service answers method m: one table lookup, so every other
// call pays nothing for filters.
func Owns(m proto.Method) bool { return owned[m] }

var (
	mNewFilter      = proto.MethodNamed("eth_newFilter")
	mNewBlockFilter = proto.MethodNamed("eth_newBlockFilter")
	mNewPending     = proto.MethodNamed("eth_newPendingTransactionFilter")
	mChanges        = proto.MethodNamed("eth_getFilterChanges")
	mLogs           = proto.MethodNamed("eth_getFilterLogs")
	mUninstall      = proto.MethodNamed("eth_uninstallFilter")
)

// Serve answers r (a filter method, see Owns) for the tenant scope (Tenant.Scope: ""
// when calls are not attributed). The answer, carrying id, is appended to dst. Errors
// about the call itself (an unknown filter, bad params, a limit) are JSON-RPC error
// answers as a node gives them; a returned error is the transport's to frame (upstream
// unavailable, Redis unreachable).
func (s *Service) Serve(dst []byte, up Caller, r *proto.Request, id []byte, scope string, deadline time.Time) ([]byte, error) {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	q := &query{s: s, up: up, deadline: deadline, ctx: ctx}
	var (
		result []byte
		err    error
	)
	switch r.Method {
	case mNewFilter:
		result, err = s.newLogFilter(q, r.Params, scope)
	case mNewBlockFilter:
		if err = creationArgs(r.Params, 0); err == nil {
			result, err = s.newBlockFilter(q, scope)
		}
	case mNewPending:
		if err = creationArgs(r.Params, 1); err == nil {
			result, err = s.pending.create(q, scope)
		}
	case mChanges:
		result, err = s.changes(q, r.Params, scope)
	case mLogs:
		result, err = s.filterLogs(q, r.Params, scope)
	case mUninstall:
		result, err = s.uninstall(q, r.Params, scope)
	default:
		err = proto.ErrMethodNotFound
	}
	var re *rpcError
	switch {
	case errors.As(err, &re):
		return appendRPCError(dst, id, re), nil
	case err != nil:
		var pe *proto.Error
		if errors.As(err, &pe) {
			return dst, pe
		}
		s.cfg.Log.Warn("filter call failed", "method", r.Method.String(), "err", err)
		return dst, proto.ErrInternal
	}
	dst = append(dst, `{"jsonrpc":"2.0","id":`...)
	dst = append(dst, id...)
	dst = append(dst, `,"result":`...)
	dst = append(dst, result...)
	return append(dst, '}'), nil
}

// rpcError is a JSON-RPC error answered to the client as it is (HTTP 200): what a
// node says about the call. data, when set, is raw JSON.
type rpcError struct {
	code int
	msg  string
	data []byte
}

func (e *rpcError) Error() string { return e.msg }

func appendRPCError(dst, id []byte, e *rpcError) []byte {
	dst = append(dst, `{"jsonrpc":"2.0","id":`...)
	dst = append(dst, id...)
	dst = append(dst, `,"error":{"code":`...)
	dst = strconv.AppendInt(dst, int64(e.code), 10)
	dst = append(dst, `,"message":`...)
	dst = proto.AppendString(dst, e.msg)
	if len(e.data) > 0 {
		dst = append(dst, `,"data":`...)
		dst = append(dst, e.data...)
	}
	return append(dst, "}}"...)
}

// Answers as geth gives them: an unknown filter (also one of another tenant, or
// expired) is "filter not found", -32000.
var (
	errNotFound     = &rpcError{code: -32000, msg: "filter not found"}
	errInvalidRange = &rpcError{code: proto.CodeInvalidParams, msg: "invalid block range params"}
	errPendingLogs  = &rpcError{code: proto.CodeInvalidParams, msg: "pending logs are not supported"}
	errMaxTopics    = argError(errors.New("exceed max topics"))
)

func invalidParams(msg string) *rpcError {
	return &rpcError{code: proto.CodeInvalidParams, msg: "invalid params: " + msg}
}

// errStateDown answers while the filters' Redis cannot be reached: a filter made on
// another replica cannot be read, and one made here could not be read there.
var errStateDown = proto.NewError(proto.CodeServer, http.StatusServiceUnavailable,
	"filter state unavailable (Redis unreachable), retry later")

// newID is a filter id as geth makes one: 16 random bytes, hex, as a quantity (0x,
// no leading zeros). Unguessable: an id is all it takes to poll a filter when calls
// are not attributed to keys.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := strings.TrimLeft(hex.EncodeToString(b[:]), "0")
	if h == "" {
		h = "0"
	}
	return "0x" + h
}

// validID reports whether id could be one of newID's: anything else is not looked up
// (it would only name a Redis key).
func validID(id string) bool {
	if len(id) < 3 || len(id) > 34 || id[:2] != "0x" {
		return false
	}
	for i := 2; i < len(id); i++ {
		c := id[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
