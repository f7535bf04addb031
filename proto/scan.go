// Package proto holds the JSON-RPC 2.0 envelope, the REST bodies and the byte-level
// helpers the gateway and the upstream side share.
//
// Messages are never decoded whole on hot paths: a small scanner finds the byte spans of
// the top-level members the gateway needs (id, method, params, params.subscription, ...)
// and skips every other value without building it. Splicing those spans keeps every other
// byte of a message as the sender wrote it, including ids that float64 would corrupt.
package proto

import "errors"

// MaxDepth is the deepest nesting the scanner accepts, the same as encoding/json's.
const MaxDepth = 10000

// ErrSyntax is returned for input that is not valid JSON.
var ErrSyntax = errors.New("invalid JSON")

// ErrDepth is returned for input nested deeper than MaxDepth.
var ErrDepth = errors.New("JSON nested too deeply")

// Span is the byte range [Start, End) of a JSON value inside a message.
// The zero Span (End == 0) means the member was absent.
type Span struct {
	Start, End int
}

// Present reports whether the member was found.
func (s Span) Present() bool { return s.End > s.Start }

// Bytes returns the span's bytes within b.
func (s Span) Bytes(b []byte) []byte { return b[s.Start:s.End] }

// IsWS reports whether c is JSON whitespace.
func isWS(c byte) bool { return c == ' ' || c == '\n' || c == '\r' || c == '\t' }

// SkipWS returns the index of the first non-whitespace byte at or after i.
func SkipWS(b []byte, i int) int {
	for i < len(b) && isWS(b[i]) {
		i++
	}
	return i
}

// FirstByte returns the first non-whitespace byte of b, or 0 when there is none.
// It tells an object ('{') from a batch ('[') without scanning further.
func FirstByte(b []byte) byte {
	i := SkipWS(b, 0)
	if i < len(b) {
		return b[i]
	}
	return 0
}

// Valid reports whether b is exactly one JSON value, surrounded only by whitespace.
func Valid(b []byte) bool {
	if end := plainAnswerEnd(b); end > 0 {
		return SkipWS(b, end) == len(b)
	}
	return validScan(b)
}

// ValidAnswer reports whether b is one JSON-RPC answer: Valid, an object, with exactly
// one of "result" and "error" (JSON-RPC 2.0 forbids both and neither). An upstream's
// answer without one outcome is no answer a client can use.
func ValidAnswer(b []byte) bool {
	if end := plainAnswerEnd(b); end > 0 {
		return SkipWS(b, end) == len(b)
	}
	if FirstByte(b) != '{' || !validScan(b) {
		return false
	}
	var m Message
	if _, err := ScanMessage(b, &m); err != nil {
		return false
	}
	return m.OneOutcome()
}

// plainAnswerEnd returns the end of an answer written the way nodes write nearly every
// one, {"jsonrpc":"2.0","id":<id>,"result":<value>} (or "error"), with no space
// between its members; 0 when b is not one (then validScan decides). Every HTTP answer
// is checked: this way it costs the id and the value's scan, not the object
// iterator's steps for each member (about a tenth of the time on a small answer).
func plainAnswerEnd(b []byte) int {
	_, idEnd := afterAnswerID(b)
	if idEnd < 0 {
		return 0
	}
	for _, name := range [...]string{"result", "error"} {
		if plainKeyAt(b, idEnd, name) {
			end, err := skipValue(b, idEnd+len(name)+4, 1)
			if err == nil && end < len(b) && b[end] == '}' {
				return end + 1
			}
			return 0
		}
	}
	return 0
}

// validScan is Valid's general path.
func validScan(b []byte) bool {
	i := SkipWS(b, 0)
	end, err := SkipValue(b, i)
	if err != nil {
		return false
	}
	return SkipWS(b, end) == len(b)
}

// SkipValue validates the JSON value starting at b[i] (no leading whitespace) and
// returns the index just past it. It never allocates and never recurses deeper than MaxDepth.
func SkipValue(b []byte, i int) (int, error) {
	return skipValue(b, i, 0)
}

func skipValue(b []byte, i, depth int) (int, error) {
	if i >= len(b) {
		return i, ErrSyntax
	}
	switch c := b[i]; {
	case c == '"':
		return skipString(b, i)
	case c == '{':
		if depth >= MaxDepth {
			return i, ErrDepth
		}
		return skipObject(b, i, depth+1)
	case c == '[':
		if depth >= MaxDepth {
			return i, ErrDepth
		}
		return skipArray(b, i, depth+1)
	case c == 't':
		return skipLiteral(b, i, "true")
	case c == 'f':
		return skipLiteral(b, i, "false")
	case c == 'n':
		return skipLiteral(b, i, "null")
	case c == '-' || (c >= '0' && c <= '9'):
		return skipNumber(b, i)
	}
	return i, ErrSyntax
}

func skipLiteral(b []byte, i int, lit string) (int, error) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return i, ErrSyntax
	}
	return i + len(lit), nil
}

// skipNumber follows the JSON number grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func skipNumber(b []byte, i int) (int, error) {
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return i, ErrSyntax
	}
	if i < len(b) && b[i] == '.' {
		if i = skipDigits(b, i+1); i < 0 {
			return len(b), ErrSyntax
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i = skipDigits(b, i); i < 0 {
			return len(b), ErrSyntax
		}
	}
	return i, nil
}

// skipDigits skips one or more decimal digits from b[i]; -1 if there are none.
func skipDigits(b []byte, i int) int {
	start := i
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	if i == start {
		return -1
	}
	return i
}

func skipArray(b []byte, i, depth int) (int, error) {
	i = SkipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, nil
	}
	for {
		var err error
		if i, err = skipValue(b, i, depth); err != nil {
			return i, err
		}
		i = SkipWS(b, i)
		if i >= len(b) {
			return i, ErrSyntax
		}
		switch b[i] {
		case ',':
			i = SkipWS(b, i+1)
		case ']':
			return i + 1, nil
		default:
			return i, ErrSyntax
		}
	}
}

func skipObject(b []byte, i, depth int) (int, error) {
	var it ObjectIter
	it.b, it.i, it.depth = b, i, depth
	it.i = SkipWS(b, i+1)
	for {
		_, _, ok, err := it.Next()
		if err != nil {
			return it.i, err
		}
		if !ok {
			return it.i, nil
		}
	}
}

// TrimWS returns b without leading and trailing JSON whitespace.
func TrimWS(b []byte) []byte {
	i := SkipWS(b, 0)
	j := len(b)
	for j > i && isWS(b[j-1]) {
		j--
	}
	return b[i:j]
}
