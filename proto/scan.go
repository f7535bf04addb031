// Package proto holds the JSON-RPC 2.0 envelope, the REST bodies and the byte-level
// helpers the gateway and the upstream side share.
//
// Messages are never decoded whole on hot paths: a small scanner finds the byte spans of
// the top-level members the gateway needs (id, method, params, params.subscription, ...)
// and skips every other value without building it. Splicing those spans keeps every other
// byte of a message as the sender wrote it, including ids that float64 would corrupt.
package proto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"unicode/utf8"
)

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

// Message holds the spans of the top-level JSON-RPC members of one object.
// Spans cover the raw JSON value (a string span includes its quotes).
type Message struct {
	ID, Method, Params, Result, Error Span
	// Subscription is params.subscription, set when params is an object holding it
	// (an eth_subscription notification).
	Subscription Span
}

// Reset clears m for reuse.
func (m *Message) Reset() { *m = Message{} }

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

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// skipString returns the index past the closing quote of the string starting at b[i].
func skipString(b []byte, i int) (int, error) {
	end, _, err := scanString(b, i)
	return end, err
}

// scanString is skipString that also reports whether the string holds escapes.
func scanString(b []byte, i int) (end int, escaped bool, err error) {
	i++ // opening quote
	for i < len(b) {
		// Eight plain bytes at a time (long hex strings: raw transactions, call data,
		// block fields), then one byte at a time from the first that needs a look.
		for i+8 <= len(b) && !needsLook(binary.LittleEndian.Uint64(b[i:])) {
			i += 8
		}
		if i >= len(b) {
			break
		}
		c := b[i]
		switch {
		case c == '"':
			return i + 1, escaped, nil
		case c == '\\':
			escaped = true
			if i+1 >= len(b) {
				return i, escaped, ErrSyntax
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return i, escaped, ErrSyntax
				}
				i += 6
			default:
				return i, escaped, ErrSyntax
			}
		case c < 0x20:
			return i, escaped, ErrSyntax
		case c >= utf8.RuneSelf:
			// JSON exchanged between systems is UTF-8 (RFC 8259 §8.1): a string with
			// invalid bytes would reach a websocket client as a text frame it must
			// reject, so it is not valid JSON here.
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				return i, escaped, ErrSyntax
			}
			i += size
		default:
			i++
		}
	}
	return i, escaped, ErrSyntax
}

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// needsLook reports whether any of the eight bytes in w is one a string scan must stop
// at: a quote, a backslash, a control byte (< 0x20) or a non-ASCII byte (>= 0x80).
func needsLook(w uint64) bool {
	hasZero := func(v uint64) uint64 { return (v - ones) & ^v & highs }
	return (w&highs)|((w-0x20*ones) & ^w & highs)|hasZero(w^('"'*ones))|hasZero(w^('\\'*ones)) != 0
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

// ObjectIter walks the members of one JSON object without allocating.
type ObjectIter struct {
	b     []byte
	i     int
	depth int
	done  bool
}

// NewObjectIter starts iterating the object whose '{' is the first non-whitespace byte
// at or after b[i].
func NewObjectIter(b []byte, i int) (ObjectIter, error) {
	i = SkipWS(b, i)
	if i >= len(b) || b[i] != '{' {
		return ObjectIter{}, ErrSyntax
	}
	return ObjectIter{b: b, i: SkipWS(b, i+1), depth: 1}, nil
}

// Pos returns the index just past the closing '}' once Next has reported ok == false.
func (it *ObjectIter) Pos() int { return it.i }

// Next returns the next member: the key span (with quotes) and the value span.
// ok is false after the closing brace.
func (it *ObjectIter) Next() (key, val Span, ok bool, err error) {
	if key, _, ok, err = it.nextKey(); err != nil || !ok {
		return key, val, ok, err
	}
	val, _, ok, err = it.nextValue()
	return key, val, ok, err
}

// nextKey reads the next key and its colon, leaving the iterator at the value.
func (it *ObjectIter) nextKey() (key, _ Span, ok bool, err error) {
	b := it.b
	if it.done {
		return key, key, false, nil
	}
	if it.i >= len(b) {
		return key, key, false, ErrSyntax
	}
	if b[it.i] == '}' { // only reachable for an empty object: after ',' a key is required
		it.i++
		it.done = true
		return key, key, false, nil
	}
	if b[it.i] != '"' {
		return key, key, false, ErrSyntax
	}
	key.Start = it.i
	if it.i, err = skipString(b, it.i); err != nil {
		return key, key, false, err
	}
	key.End = it.i
	it.i = SkipWS(b, it.i)
	if it.i >= len(b) || b[it.i] != ':' {
		return key, key, false, ErrSyntax
	}
	it.i = SkipWS(b, it.i+1)
	return key, key, true, nil
}

// nextValue skips the value after nextKey and the separator that follows it.
func (it *ObjectIter) nextValue() (val, _ Span, ok bool, err error) {
	b := it.b
	val.Start = it.i
	if it.i, err = skipValue(b, it.i, it.depth); err != nil {
		return val, val, false, err
	}
	val.End = it.i
	it.i = SkipWS(b, it.i)
	if it.i >= len(b) {
		return val, val, false, ErrSyntax
	}
	switch b[it.i] {
	case ',':
		it.i = SkipWS(b, it.i+1)
		if it.i >= len(b) || b[it.i] != '"' {
			return val, val, false, ErrSyntax
		}
	case '}':
		it.i++
		it.done = true
	default:
		return val, val, false, ErrSyntax
	}
	return val, val, true, nil
}

// KeyIs reports whether the JSON string key (with quotes) decodes to exactly name.
// Keys written with escapes ("\u0069d") are decoded on the way, as encoding/json would
// decode them; the cost is bounded by len(name), whatever the key's length.
func KeyIs(key []byte, name string) bool {
	if len(key) == len(name)+2 && string(key[1:len(key)-1]) == name {
		return true
	}
	if len(key) <= len(name)+2 || bytes.IndexByte(key, '\\') < 0 {
		return false // only an escape makes a key longer than what it decodes to
	}
	var buf [64]byte
	if len(name) > len(buf)-8 {
		return false
	}
	d, ok := appendUnquoted(buf[:0], key, len(name))
	return ok && string(d) == name
}

// ScanMessage finds the spans of the top-level JSON-RPC members of the object at the
// start of b (after whitespace) and returns the index just past the object. Like
// encoding/json, the last of duplicate keys wins. Values are validated, not built.
func ScanMessage(b []byte, m *Message) (int, error) {
	m.Reset()
	it, err := NewObjectIter(b, 0)
	if err != nil {
		return 0, err
	}
	for {
		key, val, ok, err := it.Next()
		if err != nil {
			return it.i, err
		}
		if !ok {
			return it.i, nil
		}
		k := key.Bytes(b)
		switch {
		case KeyIs(k, "id"):
			m.ID = val
		case KeyIs(k, "method"):
			m.Method = val
		case KeyIs(k, "params"):
			m.Params = val
			m.Subscription = Span{}
			if b[val.Start] == '{' {
				m.Subscription = findMember(b, val.Start, "subscription")
			}
		case KeyIs(k, "result"):
			m.Result = val
		case KeyIs(k, "error"):
			m.Error = val
		}
	}
}

// findMember returns the span of member name in the object starting at b[i]
// (last one wins), or the zero Span. The object was already validated.
func findMember(b []byte, i int, name string) Span {
	it, err := NewObjectIter(b, i)
	if err != nil {
		return Span{}
	}
	var found Span
	for {
		key, val, ok, err := it.Next()
		if err != nil || !ok {
			return found
		}
		if KeyIs(key.Bytes(b), name) {
			found = val
		}
	}
}

// ArrayIter walks the elements of one JSON array (a batch) without allocating.
type ArrayIter struct {
	b    []byte
	i    int
	n    int
	done bool
}

// NewArrayIter starts iterating the array whose '[' is the first non-whitespace byte of b.
func NewArrayIter(b []byte) (ArrayIter, error) {
	i := SkipWS(b, 0)
	if i >= len(b) || b[i] != '[' {
		return ArrayIter{}, ErrSyntax
	}
	return ArrayIter{b: b, i: SkipWS(b, i+1)}, nil
}

// Pos returns the index just past the closing ']' once Next has reported ok == false.
func (it *ArrayIter) Pos() int { return it.i }

// Next returns the span of the next element; ok is false after the closing bracket.
func (it *ArrayIter) Next() (el Span, ok bool, err error) {
	b := it.b
	if it.done {
		return el, false, nil
	}
	if it.i >= len(b) {
		return el, false, ErrSyntax
	}
	if b[it.i] == ']' && it.n == 0 {
		it.i++
		it.done = true
		return el, false, nil
	}
	el.Start = it.i
	if it.i, err = skipValue(b, it.i, 1); err != nil {
		return el, false, err
	}
	el.End = it.i
	it.n++
	it.i = SkipWS(b, it.i)
	if it.i >= len(b) {
		return el, false, ErrSyntax
	}
	switch b[it.i] {
	case ',':
		it.i = SkipWS(b, it.i+1)
		if it.i < len(b) && b[it.i] == ']' {
			return el, false, ErrSyntax // trailing comma
		}
	case ']':
		it.i++
		it.done = true
	default:
		return el, false, ErrSyntax
	}
	return el, true, nil
}

// Splice appends msg with the bytes of span s replaced by repl. It is how ids and
// subscription ids are rewritten: every other byte of msg is kept as it was.
func Splice(dst, msg []byte, s Span, repl []byte) []byte {
	dst = append(dst, msg[:s.Start]...)
	dst = append(dst, repl...)
	return append(dst, msg[s.End:]...)
}

// IsErrorResponse reports whether the JSON-RPC response in b carries an error member.
// It reads members in order and stops at "result" or "error", so a large result is
// never scanned.
func IsErrorResponse(b []byte) bool {
	if _, idEnd := afterAnswerID(b); idEnd >= 0 {
		switch {
		case plainKeyAt(b, idEnd, "result"):
			return false
		case plainKeyAt(b, idEnd, "error"):
			return true
		}
	}
	return isErrorScan(b)
}

// isErrorScan is IsErrorResponse's general path.
func isErrorScan(b []byte) bool {
	it, err := NewObjectIter(b, 0)
	if err != nil {
		return false
	}
	for {
		key, _, ok, err := it.nextKey()
		if err != nil || !ok {
			return false
		}
		k := key.Bytes(b)
		if KeyIs(k, "error") {
			return true
		}
		if KeyIs(k, "result") {
			return false
		}
		if _, _, ok, err := it.nextValue(); err != nil || !ok {
			return false
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

// FirstMember returns the span of the first top-level member called name in the object
// b, reading no further than that member: an answer's id is found without scanning a
// large result that follows it.
func FirstMember(b []byte, name string) Span {
	// Answers almost always begin {"jsonrpc":"2.0","id":<id>, and the member after
	// the id is the one asked for: found without the general scan.
	if idStart, idEnd := afterAnswerID(b); idStart >= 0 {
		switch {
		case name == "id":
			return Span{Start: idStart, End: idEnd}
		case name != "jsonrpc" && plainKeyAt(b, idEnd, name):
			v := idEnd + len(name) + 4 // ,"name":
			if end, err := skipValue(b, v, 0); err == nil && separatorAt(b, end) {
				return Span{Start: v, End: end}
			}
		}
	}
	return firstMemberScan(b, name)
}

// answerPrefix is how nodes and the gateway begin a JSON-RPC answer.
var answerPrefix = []byte(`{"jsonrpc":"2.0","id":`)

// afterAnswerID returns the span of the id of an answer that begins with answerPrefix
// and has no space around the id, or -1s (then the general scan decides).
func afterAnswerID(b []byte) (int, int) {
	if !bytes.HasPrefix(b, answerPrefix) {
		return -1, -1
	}
	start := len(answerPrefix)
	end, err := skipValue(b, start, 0)
	if err != nil || !separatorAt(b, end) {
		return -1, -1
	}
	return start, end
}

// separatorAt reports whether a member value ending at i is followed by what the
// general scan requires, written without spaces: the object's end or another key.
func separatorAt(b []byte, i int) bool {
	return i < len(b) && (b[i] == '}' || (b[i] == ',' && i+1 < len(b) && b[i+1] == '"'))
}

// plainKeyAt reports whether b[i:] begins with ,"name": (the key spelled without escapes).
func plainKeyAt(b []byte, i int, name string) bool {
	n := i + len(name) + 4
	return n <= len(b) && b[i] == ',' && b[i+1] == '"' && string(b[i+2:n-2]) == name && b[n-2] == '"' && b[n-1] == ':'
}

// firstMemberScan is FirstMember's general path.
func firstMemberScan(b []byte, name string) Span {
	it, err := NewObjectIter(b, 0)
	if err != nil {
		return Span{}
	}
	for {
		key, _, ok, err := it.nextKey()
		if err != nil || !ok {
			return Span{}
		}
		val, _, ok, err := it.nextValue()
		if err != nil {
			return Span{}
		}
		if KeyIs(key.Bytes(b), name) {
			return val
		}
		if !ok {
			return Span{}
		}
	}
}
