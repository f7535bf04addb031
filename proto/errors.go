package proto

import (
	"net/http"
	"strconv"
)

// JSON-RPC 2.0 error codes, plus the -32000 range servers use for their own errors.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602
	CodeInternal       = -32603
	CodeServer         = -32000 // upstream unreachable, timed out, overloaded
	CodeLimitExceeded  = -32005 // request or response over a limit (EIP-1474)
)

// Error is a gateway error: a JSON-RPC code and message, and the HTTP status the REST
// and HTTP JSON-RPC paths answer with. The shared values below are compared by pointer.
type Error struct {
	Code    int
	Status  int
	Message string
	// RetryAfter, in seconds, goes out as the Retry-After header of an HTTP answer
	// (limits); 0: none.
	RetryAfter int
}

func (e *Error) Error() string { return e.Message }

// NewError returns an Error; used for messages that name the offending input.
func NewError(code, status int, msg string) *Error {
	return &Error{Code: code, Status: status, Message: msg}
}

// Shared error values. Messages never carry upstream URLs or credentials.
var (
	ErrParse            = newErr(CodeParseError, http.StatusBadRequest, "parse error: body is not valid JSON")
	ErrEmptyBody        = newErr(CodeParseError, http.StatusBadRequest, "parse error: empty body")
	ErrInvalidRequest   = newErr(CodeInvalidRequest, http.StatusBadRequest, "invalid request: want a JSON-RPC 2.0 object or a non-empty array of them")
	ErrEmptyBatch       = newErr(CodeInvalidRequest, http.StatusBadRequest, "invalid request: empty batch")
	ErrBatchTooLarge    = newErr(CodeLimitExceeded, http.StatusRequestEntityTooLarge, "batch too large")
	ErrMethodNotFound   = newErr(CodeMethodNotFound, http.StatusOK, "the method does not exist or is not available")
	ErrBodyTooLarge     = newErr(CodeLimitExceeded, http.StatusRequestEntityTooLarge, "request body too large")
	ErrNotFound         = newErr(CodeMethodNotFound, http.StatusNotFound, "no such route")
	ErrMethodNotAllowed = newErr(CodeInvalidRequest, http.StatusMethodNotAllowed, "HTTP method not allowed on this route")
	ErrUnavailable      = newErr(CodeServer, http.StatusBadGateway, "upstream unavailable")
	// ErrUnreachable reads the same to the client as ErrUnavailable, and tells the
	// gateway more: the request never left (no connection could be made), so even a
	// write may go to another upstream.
	ErrUnreachable      = newErr(CodeServer, http.StatusBadGateway, "upstream unavailable")
	ErrTimeout          = newErr(CodeServer, http.StatusGatewayTimeout, "upstream timed out")
	ErrOverloaded       = newErr(CodeServer, http.StatusServiceUnavailable, "gateway overloaded: upstream queue full, retry later")
	ErrResponseTooLarge = newErr(CodeLimitExceeded, http.StatusBadGateway, "upstream response larger than the configured maximum")
	// ErrAnswerBudget refuses an answer that does not fit in the bytes of upstream
	// answers the gateway holds at once (-max-answer-bytes): the gateway's own limit,
	// never held against the upstream, retried a moment later.
	ErrAnswerBudget = &Error{Code: CodeLimitExceeded, Status: http.StatusServiceUnavailable, RetryAfter: 1,
		Message: "gateway busy: it holds too many large upstream answers right now, retry later"}
	// ErrBatchAnswerTooLarge answers the elements of a batch past the answer budget
	// (-max-response-body), in request order, as go-ethereum does past its own.
	ErrBatchAnswerTooLarge = newErr(CodeLimitExceeded, http.StatusOK, "batch answer too large: answers past the response size limit are refused; split the batch")
	ErrBadUpstream         = newErr(CodeInternal, http.StatusBadGateway, "upstream answered with an invalid response")
	ErrRateLimited         = newErr(CodeLimitExceeded, http.StatusTooManyRequests, "upstream rate limit reached")
	ErrShuttingDown        = newErr(CodeServer, http.StatusServiceUnavailable, "gateway shutting down")
	ErrInternal            = newErr(CodeInternal, http.StatusInternalServerError, "internal error")
)

var nullID = []byte("null")

// AppendError appends a JSON-RPC error response carrying id (raw JSON bytes, as the
// client sent them; nil means null).
func AppendError(dst, id []byte, e *Error) []byte {
	if len(id) == 0 {
		id = nullID
	}
	dst = append(dst, `{"jsonrpc":"2.0","id":`...)
	dst = append(dst, id...)
	dst = append(dst, `,"error":{"code":`...)
	dst = strconv.AppendInt(dst, int64(e.Code), 10)
	dst = append(dst, `,"message":`...)
	dst = AppendString(dst, e.Message)
	return append(dst, "}}"...)
}

// AppendRequest appends a JSON-RPC request. id and params are raw JSON; params may be nil.
func AppendRequest(dst, id []byte, method string, params []byte) []byte {
	dst = append(dst, `{"jsonrpc":"2.0","id":`...)
	dst = append(dst, id...)
	dst = append(dst, `,"method":"`...)
	dst = append(dst, method...)
	if len(params) == 0 {
		return append(dst, `","params":[]}`...)
	}
	dst = append(dst, `","params":`...)
	dst = append(dst, params...)
	return append(dst, '}')
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string, escaping what JSON requires and the HTML
// characters encoding/json escapes, so error messages that echo input stay inert.
func AppendString[T string | []byte](dst []byte, s T) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// newErr keeps the shared-value table above one line per error.
func newErr(code, status int, msg string) *Error {
	return &Error{Code: code, Status: status, Message: msg}
}
