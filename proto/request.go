package proto

import (
	"bytes"
	"net/http"
	"unicode/utf8"

	"github.com/infura-gateway/infura-gateway/tracing"
)

// MaxMethodLen bounds a method name; the longest standard name is under 50 bytes.
const MaxMethodLen = 128

// Request is one JSON-RPC request as the gateway decided it: the client's raw id, the
// decoded method and the canonical params. What the gateway sends upstream is written
// from these fields alone (AppendEnvelope), never from the bytes the client put around
// them, so an upstream that reads JSON differently from the gateway (case-insensitive
// keys, first or last of duplicates) cannot be steered.
//
// ID, Name and Params may point into the parsed bytes: they are valid while those are.
type Request struct {
	// ID is the client's id as raw JSON (string, number or null, byte for byte); nil
	// when the request has no id member (a notification: no answer is owed).
	ID []byte
	// Method is Name's index in the known-method table (MethodOther for the rest).
	Method Method
	// Name is the decoded method name: 1 to MaxMethodLen of [A-Za-z0-9_].
	Name []byte
	// Params is the canonical params: a JSON array or object without insignificant
	// whitespace; "[]" when the client sent none or null.
	Params []byte
	// SubKind is the decoded subscription kind of an eth_subscribe (newHeads, logs, ...),
	// nil for every other method. Its params are canonical (subscribe.go).
	SubKind []byte
	// Trace is the call's tracing state and request id (set by the transport, nil
	// for calls the gateway makes itself). Parse and Set leave it as it is.
	Trace *tracing.Call

	nameBuf   [MaxMethodLen + 2*utf8.UTFMax]byte
	paramsBuf []byte
	subBuf    []byte
}

// Errors for request objects the gateway refuses (-32600, HTTP 400 on REST routes; the
// JSON-RPC endpoints answer them with 200 as geth does). Each names what is wrong.
var (
	ErrDuplicateMember = newErr(CodeInvalidRequest, http.StatusBadRequest,
		`invalid request: "jsonrpc", "id", "method" and "params" must each appear at most once, spelled in lower case`)
	ErrBadVersion = newErr(CodeInvalidRequest, http.StatusBadRequest, `invalid request: "jsonrpc" must be "2.0"`)
	ErrNoVersion  = newErr(CodeInvalidRequest, http.StatusBadRequest, `invalid request: "jsonrpc" is missing; it must be "2.0"`)
	ErrBadID      = newErr(CodeInvalidRequest, http.StatusBadRequest, `invalid request: "id" must be a string, a number or null`)
	ErrBadMethod  = newErr(CodeInvalidRequest, http.StatusBadRequest,
		`invalid request: "method" must be a string of 1 to 128 letters, digits and underscores`)
	// ErrBadParams is -32602, as geth answers params that are not structured ("non-array
	// args"): the request is well formed, its arguments are not.
	ErrBadParams = newErr(CodeInvalidParams, http.StatusBadRequest, `invalid params: "params" must be an array or an object`)
)

var (
	emptyParams = []byte("[]")
	nullValue   = []byte("null")
	version20   = []byte(`"2.0"`)
)

// The envelope's members. A key that decodes to one of them exactly is that member; a
// key that only folds to one (encoding/json matches keys case-insensitively, with
// Unicode folding: "ID", "Method", "paramſ") is refused, as is a second occurrence.
const (
	memberJSONRPC = iota
	memberID
	memberMethod
	memberParams
	numMembers
)

var memberNames = [numMembers]string{"jsonrpc", "id", "method", "params"}

// maxFoldedKey is the longest key that can fold to a member name: every ASCII letter
// has folding partners of at most 3 bytes in UTF-8 (K, U+212A, folds to k).
const maxFoldedKey = 3 * len("jsonrpc")

// Parse validates the single request object in b (whitespace around it allowed) and
// fills r. Errors: ErrParse when b is not JSON; ErrInvalidRequest when it is not an
// object; the errors above for an object the gateway will not forward. r.ID is set
// whenever the id member was read, so a refusal can still carry the client's id.
func (r *Request) Parse(b []byte) *Error {
	r.ID, r.Method, r.Name, r.Params, r.SubKind = nil, MethodOther, nil, nil, nil
	i := SkipWS(b, 0)
	if i >= len(b) {
		return ErrParse
	}
	if b[i] != '{' {
		if Valid(b) {
			return ErrInvalidRequest
		}
		return ErrParse
	}
	it, err := NewObjectIter(b, i)
	if err != nil {
		return ErrParse
	}
	var seen [numMembers]bool
	var spans [numMembers]Span
	var refuse *Error
	for {
		key, val, ok, err := it.Next()
		if err != nil {
			return ErrParse
		}
		if !ok {
			break
		}
		idx, exact := classifyKey(key.Bytes(b))
		if idx < 0 {
			continue
		}
		if !exact || seen[idx] {
			refuse = ErrDuplicateMember // keep scanning: the whole body must be JSON
			continue
		}
		seen[idx], spans[idx] = true, val
	}
	if SkipWS(b, it.Pos()) != len(b) {
		return ErrParse
	}
	if seen[memberID] {
		id := spans[memberID].Bytes(b)
		if id[0] == '{' || id[0] == '[' {
			return ErrBadID
		}
		r.ID = id
	}
	if refuse != nil {
		return refuse
	}
	if !seen[memberJSONRPC] {
		return ErrNoVersion // geth refuses it too (-32600); JSON-RPC 2.0 requires the member
	}
	if v, ok := DecodeString(r.nameBuf[:], spans[memberJSONRPC].Bytes(b)); !ok || string(v) != "2.0" {
		return ErrBadVersion
	}
	if !seen[memberMethod] {
		return ErrBadMethod
	}
	name, ok := DecodeString(r.nameBuf[:], spans[memberMethod].Bytes(b))
	if !ok || !validMethodName(name) {
		return ErrBadMethod
	}
	r.Name, r.Method = name, MethodOf(name)
	var p []byte
	if seen[memberParams] {
		p = spans[memberParams].Bytes(b)
	}
	switch {
	case p == nil:
		r.Params = emptyParams
	case p[0] == '[' || p[0] == '{':
		if isCompact(p) {
			r.Params = p
		} else {
			r.paramsBuf = AppendCompact(r.paramsBuf[:0], p)
			r.Params = r.paramsBuf
		}
	case bytes.Equal(p, nullValue):
		r.Params = emptyParams
	default:
		return ErrBadParams
	}
	if r.Method == methodSubscribe {
		return r.canonicalSubscribe()
	}
	return nil
}

// RefusalAnswered reports whether a request Parse refused with e is answered when it
// carries id: always with an id; without one (id null) only when it is not a valid
// request, as geth does. Params refused (-32602: ErrBadParams, ErrBadSubscribeParams)
// make a valid notification with wrong arguments, and no notification is answered.
func RefusalAnswered(e *Error, id []byte) bool { return id != nil || e.Code != CodeInvalidParams }

// canonicalSubscribe makes r.Params the canonical form of its eth_subscribe params: the
// one spelling every decision and the upstream see.
func (r *Request) canonicalSubscribe() *Error {
	buf, kind, ok := canonicalSubscribe(r.subBuf[:0], r.Params)
	r.subBuf = buf
	if !ok {
		return ErrBadSubscribeParams
	}
	r.Params, r.SubKind = buf, buf[kind.Start:kind.End]
	return nil
}

// classifyKey returns the member a key names (-1 for none) and whether it is spelled
// exactly as the member's name.
func classifyKey(key []byte) (int, bool) {
	inner := key[1 : len(key)-1]
	// The fast path: the four names as every client writes them.
	switch string(inner) {
	case "jsonrpc":
		return memberJSONRPC, true
	case "id":
		return memberID, true
	case "method":
		return memberMethod, true
	case "params":
		return memberParams, true
	}
	if len(inner) > 6*maxFoldedKey || (len(inner) > maxFoldedKey && bytes.IndexByte(inner, '\\') < 0) {
		return -1, false // too long to decode to a member name
	}
	var buf [maxFoldedKey + 2*utf8.UTFMax]byte
	d, ok := DecodeString(buf[:], key)
	if !ok || len(d) > maxFoldedKey {
		return -1, false
	}
	for idx, name := range memberNames {
		if string(d) == name {
			return idx, true
		}
		if bytes.EqualFold(d, []byte(name)) {
			return idx, false
		}
	}
	return -1, false
}

// validMethodName reports whether name matches ^[A-Za-z0-9_]{1,MaxMethodLen}$.
func validMethodName(name []byte) bool {
	if len(name) == 0 || len(name) > MaxMethodLen {
		return false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// Set makes r a request the gateway itself builds (REST routes, probes): name is a
// valid method name and params canonical JSON (nil for none). It is a notification
// until the caller sets ID.
func (r *Request) Set(name, params []byte) { r.SetKnown(name, MethodOf(name), params) }

// SetKnown is Set for a name whose Method the caller resolved once (a REST route's
// fixed method): no table lookup per request.
func (r *Request) SetKnown(name []byte, m Method, params []byte) {
	r.ID, r.Name, r.Method, r.SubKind = nil, name, m, nil
	if len(params) == 0 {
		params = emptyParams
	}
	r.Params = params
}

// Retryable reports whether sending r again is harmless (a retry, a hedge): only a
// method on the gateway's list of reads (IsRead). Unknown methods are treated as writes.
func (r *Request) Retryable() bool { return r.IsRead() }

// Size is what the request holds in memory while it waits for the upstream.
func (r *Request) Size() int { return len(r.ID) + len(r.Name) + len(r.Params) + envelopeOverhead }

const envelopeOverhead = len(`{"jsonrpc":"2.0","id":,"method":"","params":}`) + 20

// AppendEnvelope appends the request the gateway sends upstream for r: the fixed
// envelope, id (raw JSON the gateway chose), the decoded method and the canonical params.
func AppendEnvelope(dst, id []byte, r *Request) []byte {
	dst = append(dst, `{"jsonrpc":"2.0","id":`...)
	dst = append(dst, id...)
	dst = append(dst, `,"method":"`...)
	dst = append(dst, r.Name...)
	dst = append(dst, `","params":`...)
	dst = append(dst, r.Params...)
	return append(dst, '}')
}
