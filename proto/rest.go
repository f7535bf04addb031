package proto

import (
	"bytes"
	"math"
	"net/http"
	"strconv"
)

// REST bodies of the POST routes:
//
//	POST /blockbynumber      {"block": <block>, "txdetails": <bool>}
//	POST /txbyblockandindex  {"block": <block>, "index": <quantity>}
//
// <block> is "latest", "earliest", "pending", "safe", "finalized", a hex quantity
// ("0xc6af55"), a decimal string ("13020000") or a JSON integer. txdetails is true/false
// or "true"/"false" (the route's published example sends a string) and defaults to false.
// The parsers validate the whole body and append the canonical JSON-RPC params array,
// so the upstream sees exactly what the node would get from a careful client.

var blockTags = [...]string{"latest", "earliest", "pending", "safe", "finalized"}

const wantBlock = `want "latest", "earliest", "pending", "safe", "finalized", a hex quantity ("0x1b4"), a decimal string ("436") or a JSON integer`

// maxShown bounds how much of a bad value an error message echoes.
const maxShown = 66

// AppendBlockByNumberParams validates a /blockbynumber body and appends the params of
// eth_getBlockByNumber: ["<block>",<txdetails>].
func AppendBlockByNumberParams(dst, body []byte) ([]byte, *Error) {
	var block, txd Span
	if err := scanRESTBody(body, "block", &block, "txdetails", &txd); err != nil {
		return dst, err
	}
	if !block.Present() {
		return dst, invalidParams(`missing "block": ` + wantBlock)
	}
	full := false
	if txd.Present() {
		switch v := txd.Bytes(body); string(v) {
		case "true", `"true"`:
			full = true
		case "false", `"false"`, "null":
		default:
			return dst, invalidParams(`"txdetails": want true or false, got ` + shown(v))
		}
	}
	dst = append(dst, '[')
	dst, err := appendBlock(dst, block.Bytes(body))
	if err != nil {
		return dst, err
	}
	if full {
		return append(dst, ",true]"...), nil
	}
	return append(dst, ",false]"...), nil
}

// AppendTxByBlockAndIndexParams validates a /txbyblockandindex body and appends the
// params of eth_getTransactionByBlockNumberAndIndex: ["<block>","<index>"].
func AppendTxByBlockAndIndexParams(dst, body []byte) ([]byte, *Error) {
	var block, index Span
	if err := scanRESTBody(body, "block", &block, "index", &index); err != nil {
		return dst, err
	}
	if !block.Present() {
		return dst, invalidParams(`missing "block": ` + wantBlock)
	}
	if !index.Present() {
		return dst, invalidParams(`missing "index": want a hex quantity ("0x0") or a decimal number`)
	}
	dst = append(dst, '[')
	dst, err := appendBlock(dst, block.Bytes(body))
	if err != nil {
		return dst, err
	}
	var buf [64]byte
	n, ok := parseQuantity(unescaped(index.Bytes(body), &buf))
	if !ok {
		return dst, invalidParams(`"index": want a hex quantity ("0x0") or a decimal number, got ` + shown(index.Bytes(body)))
	}
	dst = append(dst, `,"0x`...)
	dst = strconv.AppendUint(dst, n, 16)
	return append(dst, `"]`...), nil
}

// scanRESTBody validates body as one JSON object and records the spans of two members.
// A member whose value is null counts as absent.
func scanRESTBody(body []byte, k1 string, v1 *Span, k2 string, v2 *Span) *Error {
	i := SkipWS(body, 0)
	if i == len(body) {
		return ErrEmptyBody
	}
	if body[i] != '{' {
		if Valid(body) {
			return invalidParams("body must be a JSON object")
		}
		return ErrParse
	}
	it, err := NewObjectIter(body, i)
	if err != nil {
		return ErrParse
	}
	for {
		key, val, ok, err := it.Next()
		if err != nil {
			return ErrParse
		}
		if !ok {
			break
		}
		if string(val.Bytes(body)) == "null" {
			val = Span{}
		}
		switch k := key.Bytes(body); {
		case KeyIs(k, k1):
			*v1 = val
		case KeyIs(k, k2):
			*v2 = val
		}
	}
	if SkipWS(body, it.Pos()) != len(body) {
		return ErrParse
	}
	return nil
}

// appendBlock appends the canonical JSON form of a block parameter.
func appendBlock(dst, v []byte) ([]byte, *Error) {
	var buf [64]byte
	v = unescaped(v, &buf)
	if len(v) > 2 && v[0] == '"' {
		s := v[1 : len(v)-1]
		for _, tag := range blockTags {
			if equalFoldASCII(s, tag) {
				dst = append(dst, '"')
				dst = append(dst, tag...)
				return append(dst, '"'), nil
			}
		}
	}
	n, ok := parseQuantity(v)
	if !ok || n > math.MaxInt64 { // geth's BlockNumber is an int64
		return dst, invalidParams(`"block": ` + wantBlock + `, got ` + shown(v))
	}
	dst = append(dst, `"0x`...)
	dst = strconv.AppendUint(dst, n, 16)
	return append(dst, '"'), nil
}

// unescaped returns v, a JSON string written with escapes ("\u006catest"), decoded and
// quoted again in buf, so a value is judged as the JSON it is, as the node would read
// it; v itself when it has no escape, or when it decodes to more than any valid value
// (32 bytes), which then fails as written.
func unescaped(v []byte, buf *[64]byte) []byte {
	if len(v) < 2 || v[0] != '"' || bytes.IndexByte(v, '\\') < 0 {
		return v
	}
	d, ok := appendUnquoted(append(buf[:0], '"'), v, 32)
	if !ok {
		return v
	}
	return append(d, '"')
}

// parseQuantity accepts "0x<hex>", "<decimal>" or a bare non-negative JSON integer.
func parseQuantity(v []byte) (uint64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	if v[0] != '"' {
		return ParseDecimal(v)
	}
	if len(v) < 3 || v[len(v)-1] != '"' {
		return 0, false
	}
	s := v[1 : len(v)-1]
	if len(s) > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
		return parseHex(s[2:])
	}
	return ParseDecimal(s)
}

// ParseDecimal reads bare decimal digits that fit a uint64 (a gateway id, a block number).
func ParseDecimal(s []byte) (uint64, bool) {
	if len(s) == 0 || len(s) > 20 {
		return 0, false
	}
	var n uint64
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (math.MaxUint64-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

func parseHex(s []byte) (uint64, bool) {
	// Leading zeros are accepted and normalised away (geth itself rejects them).
	for len(s) > 1 && s[0] == '0' {
		s = s[1:]
	}
	if len(s) == 0 || len(s) > 16 {
		return 0, false
	}
	var n uint64
	for _, c := range s {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		n = n<<4 | uint64(d)
	}
	return n, true
}

func equalFoldASCII(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

func invalidParams(msg string) *Error {
	return NewError(CodeInvalidParams, http.StatusBadRequest, "invalid params: "+msg)
}

// shown returns v for an error message, cut to a bounded length.
func shown(v []byte) string {
	if len(v) > maxShown {
		return string(v[:maxShown]) + "..."
	}
	return string(v)
}
