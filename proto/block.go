package proto

// BlockKind says what a JSON-RPC block parameter refers to.
type BlockKind uint8

const (
	BlockInvalid   BlockKind = iota
	BlockLatest              // "latest", and a missing optional parameter
	BlockSafe                // "safe"
	BlockFinalized           // "finalized"
	BlockPending             // "pending"
	BlockNumber              // a hex quantity, or "earliest" (number 0)
	BlockHash                // a 32-byte hash, or an EIP-1898 object with blockHash
)

// ParseBlockRef reads a raw JSON block parameter: a tag, a hex quantity, a block hash
// or an EIP-1898 object ({"blockHash": ...} or {"blockNumber": ...}). It is strict: a
// value the upstream might read differently from the gateway (escapes, duplicate or
// differently cased object keys, a malformed hash) is BlockInvalid, which the cache and
// the router treat as "do not rely on it".
func ParseBlockRef(v []byte) (BlockKind, uint64) {
	v = TrimWS(v)
	if len(v) == 0 {
		return BlockLatest, 0
	}
	if v[0] == '{' {
		return parseBlockObject(v)
	}
	if len(v) < 3 || v[0] != '"' || v[len(v)-1] != '"' {
		return BlockInvalid, 0
	}
	s := v[1 : len(v)-1]
	switch string(s) {
	case "latest":
		return BlockLatest, 0
	case "safe":
		return BlockSafe, 0
	case "finalized":
		return BlockFinalized, 0
	case "pending":
		return BlockPending, 0
	case "earliest":
		return BlockNumber, 0
	}
	if isHash(s) {
		return BlockHash, 0
	}
	if len(s) > 2 && s[0] == '0' && s[1] == 'x' {
		if n, ok := parseHex(s[2:]); ok {
			return BlockNumber, n
		}
	}
	return BlockInvalid, 0
}

// parseBlockObject reads an EIP-1898 block parameter. Exactly one of blockHash and
// blockNumber, spelled exactly, each at most once; requireCanonical may accompany them.
func parseBlockObject(v []byte) (BlockKind, uint64) {
	it, err := NewObjectIter(v, 0)
	if err != nil {
		return BlockInvalid, 0
	}
	var hash, number Span
	for {
		key, val, ok, err := it.Next()
		if err != nil {
			return BlockInvalid, 0
		}
		if !ok {
			break
		}
		k := key.Bytes(v)
		switch {
		case string(k) == `"blockHash"` && !hash.Present():
			hash = val
		case string(k) == `"blockNumber"` && !number.Present():
			number = val
		case string(k) == `"requireCanonical"`:
		default:
			return BlockInvalid, 0 // a duplicate, a variant spelling, or a key nobody defined
		}
	}
	switch {
	case hash.Present() && !number.Present():
		if h := hash.Bytes(v); len(h) == 68 && h[0] == '"' && isHash(h[1:67]) {
			return BlockHash, 0
		}
	case number.Present() && !hash.Present():
		if k, n := ParseBlockRef(number.Bytes(v)); k != BlockHash {
			return k, n
		}
	}
	return BlockInvalid, 0
}

// isHash reports whether s is 0x followed by 64 hex digits.
func isHash(s []byte) bool {
	if len(s) != 66 || s[0] != '0' || s[1] != 'x' {
		return false
	}
	for _, c := range s[2:] {
		if !isHex(c) {
			return false
		}
	}
	return true
}

// ParseQuantity reads a JSON hex quantity string ("0x1b4").
func ParseQuantity(v []byte) (uint64, bool) {
	v = TrimWS(v)
	if len(v) < 4 || v[0] != '"' || v[1] != '0' || v[2] != 'x' || v[len(v)-1] != '"' {
		return 0, false
	}
	return parseHex(v[3 : len(v)-1])
}

// Nth returns the span of element n of the JSON array a (zero Span if absent).
func Nth(a []byte, n int) Span {
	it, err := NewArrayIter(a)
	if err != nil {
		return Span{}
	}
	for i := 0; ; i++ {
		el, ok, err := it.Next()
		if err != nil || !ok {
			return Span{}
		}
		if i == n {
			return el
		}
	}
}
