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
// or an EIP-1898 object ({"blockHash": ...} or {"blockNumber": ...}).
func ParseBlockRef(v []byte) (BlockKind, uint64) {
	v = TrimWS(v)
	if len(v) == 0 {
		return BlockLatest, 0
	}
	if v[0] == '{' {
		if h := FirstMember(v, "blockHash"); h.Present() {
			return BlockHash, 0
		}
		if n := FirstMember(v, "blockNumber"); n.Present() {
			return ParseBlockRef(n.Bytes(v))
		}
		return BlockInvalid, 0
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
	if len(s) == 66 && s[0] == '0' && s[1] == 'x' {
		return BlockHash, 0
	}
	if len(s) > 2 && s[0] == '0' && s[1] == 'x' {
		if n, ok := parseHex(s[2:]); ok {
			return BlockNumber, n
		}
	}
	return BlockInvalid, 0
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
