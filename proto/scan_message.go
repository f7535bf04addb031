// The message scanner: the spans of a JSON-RPC message's top-level members
// (ScanMessage), one member read without scanning what follows it (FirstMember,
// IsErrorResponse; a fast path for answers that begin {"jsonrpc":"2.0","id":), keys
// compared as decoded (KeyIs), and spans replaced (Splice).

package proto

import "bytes"

// Message holds the spans of the top-level JSON-RPC members of one object.
// Spans cover the raw JSON value (a string span includes its quotes).
type Message struct {
	ID, Method, Params, Result, Error Span
	// Subscription is params.subscription, set when params is an object holding it
	// (an eth_subscription notification).
	Subscription Span
}

// OneOutcome reports whether m has exactly one of "result" and "error", as a JSON-RPC
// 2.0 answer must (both or neither is no answer a client can use).
func (m *Message) OneOutcome() bool { return m.Result.Present() != m.Error.Present() }

// Reset clears m for reuse.
func (m *Message) Reset() { *m = Message{} }

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
