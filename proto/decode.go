package proto

import (
	"bytes"
	"unicode/utf8"
)

// Decoding JSON strings without encoding/json: keys and the few values the gateway
// decides on (method names, block tags, subscription kinds) are decoded here, linearly
// and without allocating, exactly as encoding/json would decode them, so a decision is
// never made on a spelling the upstream reads differently.

// appendUnquoted appends the decoded contents of the JSON string q (quotes included,
// already validated by the scanner) to dst. It resolves escapes as encoding/json does
// (\uXXXX, surrogate pairs; a lone surrogate becomes U+FFFD) and stops, reporting
// false, as soon as the output would pass limit bytes: the cost is bounded by limit,
// not by the length of q.
func appendUnquoted(dst, q []byte, limit int) ([]byte, bool) {
	if len(q) < 2 {
		return dst, false
	}
	start := len(dst)
	s := q[1 : len(q)-1]
	for i := 0; i < len(s); {
		if len(dst)-start > limit {
			return dst, false
		}
		c := s[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		if i+1 >= len(s) {
			return dst, false
		}
		switch s[i+1] {
		case '"', '\\', '/':
			dst = append(dst, s[i+1])
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, ok := hex4(s, i+2)
			if !ok {
				return dst, false
			}
			i += 6
			if r >= 0xd800 && r < 0xdc00 { // high surrogate: a low one must follow
				if lo, ok := hex4(s, i+2); ok && i+1 < len(s) && s[i] == '\\' && s[i+1] == 'u' && lo >= 0xdc00 && lo < 0xe000 {
					r = 0x10000 + (r-0xd800)<<10 + (lo - 0xdc00)
					i += 6
				} else {
					r = utf8.RuneError
				}
			} else if r >= 0xdc00 && r < 0xe000 {
				r = utf8.RuneError
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default:
			return dst, false
		}
		i += 2
	}
	return dst, len(dst)-start <= limit
}

// hex4 reads the four hex digits at s[i:i+4].
func hex4(s []byte, i int) (rune, bool) {
	if i+4 > len(s) {
		return 0, false
	}
	var r rune
	for _, c := range s[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// DecodeString returns the decoded contents of the JSON string q (quotes included),
// using buf's storage when it has escapes; ok is false for anything else (not a valid
// string, or decoded longer than len(buf)-utf8.UTFMax bytes). Plain strings are returned
// without copying.
func DecodeString(buf []byte, q []byte) (s []byte, ok bool) {
	if len(q) < 2 || q[0] != '"' || q[len(q)-1] != '"' {
		return nil, false
	}
	end, escaped, err := scanString(q, 0)
	if err != nil || end != len(q) {
		return nil, false
	}
	if !escaped {
		return q[1 : len(q)-1], true
	}
	limit := len(buf) - utf8.UTFMax
	if limit < 0 {
		return nil, false
	}
	// The limit keeps every append within buf: no allocation.
	return appendUnquoted(buf[:0], q, limit)
}

// AppendCompact appends the valid JSON value v without insignificant whitespace and with
// each string's unneeded escapes resolved (appendMinimalString): it changes no value,
// only the spelling, so two requests that differ only in layout or escapes share a cache
// entry and an upstream subscription, and every decision sees the decoded value.
func AppendCompact(dst, v []byte) []byte {
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case isWS(c):
			continue
		case c == '"':
			end, err := skipString(v, i)
			if err != nil { // not reached for validated input; keep the bytes as they are
				return append(dst, v[i:]...)
			}
			dst = appendMinimalString(dst, v[i:end])
			i = end - 1
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// appendMinimalString appends the JSON string q with its escapes resolved and written
// again only where JSON needs them: "l\u0061test" is "latest" for every decision (cache,
// router, policy) and for the upstream. A string without a backslash is copied as it is.
func appendMinimalString(dst, q []byte) []byte {
	if bytes.IndexByte(q, '\\') < 0 {
		return append(dst, q...)
	}
	var stack [256]byte
	buf := stack[:]
	if len(q)+utf8.UTFMax > len(stack) {
		buf = make([]byte, len(q)+utf8.UTFMax) // decoding never lengthens a string
	}
	s, ok := DecodeString(buf, q)
	if !ok { // not reached for validated input; keep the bytes as they are
		return append(dst, q...)
	}
	return AppendString(dst, s)
}

// isCompact reports whether v holds no whitespace outside strings and no escape: plain
// strings never hold a tab or line break, so a value without spaces, tabs, line breaks
// or backslashes is already in the form AppendCompact writes.
func isCompact(v []byte) bool {
	for _, c := range v {
		if c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\\' {
			return false
		}
	}
	return true
}
