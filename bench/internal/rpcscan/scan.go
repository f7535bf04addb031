// Package rpcscan finds the byte spans of the top-level members of a JSON-RPC
// message without decoding it.
//
// The fixed node is the CPU floor of the benchmark, so it must not pay for a
// JSON decoder; the load driver uses the same scanner to match reply ids
// without allocating. Values are returned as sub-slices of the input: they are
// valid only as long as the input is.
package rpcscan

// SkipSpace returns the index of the first non-whitespace byte at or after i.
func SkipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// SkipValue returns the index just past the JSON value starting at b[i]
// (after leading whitespace), or -1 if the value is malformed or truncated.
// It checks structure (brackets, quotes, escapes) but not the spelling of
// numbers and literals: a benchmark peer only needs to find boundaries.
func SkipValue(b []byte, i int) int {
	i = SkipSpace(b, i)
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		return skipContainer(b, i)
	default:
		start := i
		for i < len(b) {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				if i == start {
					return -1
				}
				return i
			case '"', '{', '[', ':':
				return -1
			}
			i++
		}
		if i == start {
			return -1
		}
		return i
	}
}

// skipString returns the index after the closing quote of the string that
// starts at b[i] == '"'.
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return -1
}

// skipContainer skips an object or array, tracking nesting depth and strings
// so that brackets inside strings are ignored.
func skipContainer(b []byte, i int) int {
	depth := 0
	for ; i < len(b); i++ {
		switch b[i] {
		case '"':
			j := skipString(b, i)
			if j < 0 {
				return -1
			}
			i = j - 1
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return i + 1
			}
		}
	}
	return -1
}

// Message holds the spans of the members of one JSON-RPC object. A nil span
// means the member is absent.
type Message struct {
	ID     []byte // raw id value, e.g. `7`, `"abc"`, `null`
	Method []byte // method name without quotes
	Params []byte // raw params value
	Result []byte // raw result value
	Error  []byte // raw error value
	// Subscription is params.subscription of an eth_subscription
	// notification, with its quotes.
	Subscription []byte
}

// ParseObject scans the object starting at b[i] and fills m. It returns the
// index after the object, or -1 when b[i:] does not start with a well-formed
// object.
func ParseObject(b []byte, i int, m *Message) int {
	*m = Message{}
	i = SkipSpace(b, i)
	if i >= len(b) || b[i] != '{' {
		return -1
	}
	i++
	for first := true; ; first = false {
		i = SkipSpace(b, i)
		if i >= len(b) {
			return -1
		}
		if b[i] == '}' && first {
			return i + 1
		}
		if b[i] != '"' {
			return -1
		}
		kEnd := skipString(b, i)
		if kEnd < 0 {
			return -1
		}
		key := b[i+1 : kEnd-1]
		i = SkipSpace(b, kEnd)
		if i >= len(b) || b[i] != ':' {
			return -1
		}
		vStart := SkipSpace(b, i+1)
		vEnd := SkipValue(b, vStart)
		if vEnd < 0 {
			return -1
		}
		val := b[vStart:vEnd]
		switch string(key) {
		case "id":
			m.ID = val
		case "method":
			if len(val) >= 2 && val[0] == '"' {
				m.Method = val[1 : len(val)-1]
			} else {
				return -1
			}
		case "params":
			m.Params = val
			if len(val) > 0 && val[0] == '{' {
				m.Subscription = Member(val, "subscription")
			}
		case "result":
			m.Result = val
		case "error":
			m.Error = val
		}
		i = SkipSpace(b, vEnd)
		if i >= len(b) {
			return -1
		}
		switch b[i] {
		case ',':
			i++
		case '}':
			return i + 1
		default:
			return -1
		}
	}
}

// Member returns the raw value of the top-level member key of the object obj,
// or nil.
func Member(obj []byte, key string) []byte {
	i := SkipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return nil
	}
	i++
	for {
		i = SkipSpace(obj, i)
		if i >= len(obj) || obj[i] != '"' {
			return nil
		}
		kEnd := skipString(obj, i)
		if kEnd < 0 {
			return nil
		}
		k := obj[i+1 : kEnd-1]
		i = SkipSpace(obj, kEnd)
		if i >= len(obj) || obj[i] != ':' {
			return nil
		}
		vStart := SkipSpace(obj, i+1)
		vEnd := SkipValue(obj, vStart)
		if vEnd < 0 {
			return nil
		}
		if string(k) == key {
			return obj[vStart:vEnd]
		}
		i = SkipSpace(obj, vEnd)
		if i >= len(obj) || obj[i] != ',' {
			return nil
		}
		i++
	}
}

// ArrayElem returns the raw n-th (0-based) element of the JSON array arr, or
// nil when arr is not an array or is shorter.
func ArrayElem(arr []byte, n int) []byte {
	i := SkipSpace(arr, 0)
	if i >= len(arr) || arr[i] != '[' {
		return nil
	}
	i++
	for k := 0; ; k++ {
		i = SkipSpace(arr, i)
		if i >= len(arr) || arr[i] == ']' {
			return nil
		}
		end := SkipValue(arr, i)
		if end < 0 {
			return nil
		}
		if k == n {
			return arr[i:end]
		}
		i = SkipSpace(arr, end)
		if i >= len(arr) || arr[i] != ',' {
			return nil
		}
		i++
	}
}

// EachElem calls fn with the raw bytes of every element of the JSON array
// starting at b[i]. It returns false when the array is malformed.
func EachElem(b []byte, i int, fn func(elem []byte)) bool {
	i = SkipSpace(b, i)
	if i >= len(b) || b[i] != '[' {
		return false
	}
	i++
	i = SkipSpace(b, i)
	if i < len(b) && b[i] == ']' {
		return true
	}
	for {
		start := SkipSpace(b, i)
		end := SkipValue(b, start)
		if end < 0 {
			return false
		}
		fn(b[start:end])
		i = SkipSpace(b, end)
		if i >= len(b) {
			return false
		}
		switch b[i] {
		case ',':
			i++
		case ']':
			return true
		default:
			return false
		}
	}
}
