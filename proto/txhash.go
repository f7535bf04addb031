package proto

import "net/http"

// ErrRawTx answers a send whose first parameter is not a signed transaction the gateway
// can name (a 0x-prefixed hex string of whole bytes): nothing is sent.
var ErrRawTx = newErr(CodeInvalidParams, http.StatusOK,
	"invalid params: the first parameter must be the signed transaction as a 0x-prefixed hex string of whole bytes")

// TxHash returns the hash of the signed transaction a send (eth_sendRawTransaction and
// the like) carries as its first parameter: the Keccak-256 of the raw bytes, for a
// legacy transaction (RLP list) and a typed one (type byte and payload) alike. The hex
// is decoded straight into the hash, without a copy of the bytes. ok is false when the
// parameter is not a JSON string of 0x and an even, non-zero number of hex digits (a
// string with escapes included: no client writes hex so).
func TxHash(params []byte) (h [32]byte, ok bool) {
	if FirstByte(params) != '[' {
		return h, false
	}
	s := Nth(params, 0)
	if !s.Present() {
		return h, false
	}
	v := s.Bytes(params)
	if len(v) < 5 || v[0] != '"' || v[len(v)-1] != '"' || v[1] != '0' || (v[2] != 'x' && v[2] != 'X') {
		return h, false
	}
	hex := v[3 : len(v)-1]
	if len(hex)%2 != 0 {
		return h, false
	}
	var k Keccak
	for i := 0; i < len(hex); i += 2 {
		hi, lo := unhex(hex[i]), unhex(hex[i+1])
		if hi > 15 || lo > 15 {
			return h, false
		}
		k.AbsorbByte(hi<<4 | lo)
	}
	return k.Sum256(), true
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10
	}
	return 255
}

// AppendHash appends h as a JSON string, 0x and lower-case hex, as nodes answer it.
func AppendHash(dst []byte, h *[32]byte) []byte {
	const digits = "0123456789abcdef"
	dst = append(dst, `"0x`...)
	for _, b := range h {
		dst = append(dst, digits[b>>4], digits[b&15])
	}
	return append(dst, '"')
}
