// String scanning: a JSON string is validated eight bytes at a time (lookMask marks, in
// a 64-bit word, the bytes that are a quote, a backslash, a control or a non-ASCII byte),
// jumping straight to the first that needs a look, where escapes and UTF-8 are checked.

package proto

import (
	"encoding/binary"
	"math/bits"
	"unicode/utf8"
)

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
		// Eight bytes at a time (long hex strings: raw transactions, call data, block
		// fields), to the first byte that needs a look: a short string's closing quote
		// is found in one step, not byte by byte.
		if i+8 <= len(b) {
			m := lookMask(binary.LittleEndian.Uint64(b[i:]))
			if m == 0 {
				i += 8
				continue
			}
			i += bits.TrailingZeros64(m) >> 3
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

// lookMask marks the bytes of w (little-endian: the first in memory lowest) a string
// scan must stop at: a quote, a backslash, a control byte (< 0x20) or a non-ASCII byte
// (>= 0x80), with the byte's high bit. A borrow can also mark bytes after a marked one,
// never before it: the lowest mark is always the first such byte, the only one used.
func lookMask(w uint64) uint64 {
	hasZero := func(v uint64) uint64 { return (v - ones) & ^v & highs }
	return (w & highs) | ((w - 0x20*ones) & ^w & highs) | hasZero(w^('"'*ones)) | hasZero(w^('\\'*ones))
}
