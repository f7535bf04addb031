// Package redact removes what a client puts in a path or in bytes fasthttp quotes back. Keys
// travel in paths (/v3/<key>, /ws/v3/<key>), and a client that gets the shape slightly
// wrong (a trailing slash, an extra segment, another case, percent-encoding) still sends
// its key. So the rule does not look for a well-formed key: everything after the first
// "/v3/" of a path, whatever follows, is replaced. Every log line, error and metric
// label that carries a request path goes through Path; fasthttp's own
// messages through ClientBytes.
//
// It imports only the standard library.
package redact

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
)

// redacted replaces what follows /v3/.
const redacted = "redacted"

// keyPathEnd returns the index in s just past its first "/v3/" (any case, any of its
// characters percent-encoded, as a raw request line may have it), or -1.
func keyPathEnd(s string) int {
	for i := 0; i < len(s); i++ {
		j := i
		for _, c := range [...]byte{'/', 'v', '3', '/'} {
			n := matchByte(s[j:], c)
			if n == 0 {
				j = -1
				break
			}
			j += n
		}
		if j >= 0 {
			return j
		}
	}
	return -1
}

// matchByte reports how many bytes at the start of s spell c: 1 for c itself (any
// case), 3 for its percent-encoding, 0 for neither.
func matchByte(s string, c byte) int {
	if len(s) == 0 {
		return 0
	}
	if lower(s[0]) == c {
		return 1
	}
	if len(s) >= 3 && s[0] == '%' {
		if v, err := strconv.ParseUint(s[1:3], 16, 8); err == nil && lower(byte(v)) == c {
			return 3
		}
	}
	return 0
}

func lower(b byte) byte {
	if 'A' <= b && b <= 'Z' {
		return b + 'a' - 'A'
	}
	return b
}

// Path returns a request path fit for logs, errors and metric labels: from
// /v3/ on (so /ws/v3/ too), the rest of the path is replaced, whatever its shape.
func Path(p string) string {
	if i := keyPathEnd(p); i >= 0 && i < len(p) {
		return p[:i] + redacted
	}
	return p
}

// UnknownPath returns the path of a request no route matched fit for the log. Such a
// path may carry a key the client meant for another provider (/v2/<key>, /<token>/) or
// wrote wrong (/v3<key>): after Path's rule, a segment is kept only when it reads as a
// word (letters, '-', '_', at most 12) or a version (v2), and never right after a version.
func UnknownPath(p string) string { return Segments(Path(p)) }

// Segments returns path with every segment that may be a key replaced by "redacted": a
// segment is kept only when it reads as a word or a version, and never right after a
// version. Providers carry keys there (Infura /v3/<id>, Alchemy /v2/<key>, QuickNode
// /<token>/).
func Segments(path string) string {
	segs := strings.Split(path, "/")
	afterVersion := false
	for i, s := range segs {
		keep := s == "" || s == redacted || (!afterVersion && (isVersion(s) || isWord(s)))
		afterVersion = isVersion(s)
		if !keep {
			segs[i] = redacted
		}
	}
	return strings.Join(segs, "/")
}

// isVersion reports whether a path segment reads as an API version (v2, v3, V10).
func isVersion(s string) bool {
	if len(s) < 2 || len(s) > 3 || (s[0] != 'v' && s[0] != 'V') {
		return false
	}
	for _, c := range s[1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// isWord reports whether a path segment reads as a word (letters, '-', '_', at most 12),
// not as a key or a token.
func isWord(s string) bool {
	if len(s) > 12 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// ClientBytes makes a fasthttp message fit for the log. fasthttp quotes (%q)
// what it repeats of a request it could not parse: the request line, a header, the
// start of the buffer; any of them may hold a key (in the path, in Authorization or
// X-API-Key). A quoted part is kept only when it is an address (the connection's
// ends); in the rest, paths are redacted as redactPath does.
func ClientBytes(msg string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(msg, '"')
		if i < 0 {
			break
		}
		b.WriteString(redactPathsIn(msg[:i]))
		q, err := strconv.QuotedPrefix(msg[i:])
		if err != nil { // an unterminated quote: nothing after it is kept
			b.WriteString(`"(redacted)"`)
			return b.String()
		}
		if s, err := strconv.Unquote(q); err == nil {
			if _, err := netip.ParseAddrPort(s); err == nil {
				b.WriteString(q)
				msg = msg[i+len(q):]
				continue
			}
		}
		b.WriteString(`"(redacted)"`)
		msg = msg[i+len(q):]
	}
	b.WriteString(redactPathsIn(msg))
	return b.String()
}

// redactPathsIn applies redactPath to every path in free text (a path ends at a space).
func redactPathsIn(s string) string {
	var b strings.Builder
	for {
		i := keyPathEnd(s)
		if i < 0 {
			break
		}
		end := i + strings.IndexAny(s[i:], " \t\r\n")
		if end < i {
			end = len(s)
		}
		b.WriteString(s[:i])
		if end > i {
			b.WriteString(redacted)
		}
		s = s[end:]
	}
	if b.Len() == 0 {
		return s
	}
	b.WriteString(s)
	return b.String()
}

// Logger is a fasthttp logger (Printf) that logs through L at debug level, with what
// fasthttp quotes of a client's request redacted.
type Logger struct{ L *slog.Logger }

// Printf logs one fasthttp message.
func (f Logger) Printf(format string, args ...any) {
	// Not under "msg": the line's message is "fasthttp", and a second msg key is a
	// duplicate that strict JSON log pipelines drop the whole line for.
	f.L.Debug("fasthttp", "detail", ClientBytes(fmt.Sprintf(format, args...)))
}
