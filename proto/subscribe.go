package proto

import (
	"bytes"
	"net/http"
	"slices"
)

// eth_subscribe params are rewritten into one canonical form when parsed: every string
// decoded and written again the one way AppendString writes it, object keys decoded and
// sorted, and for a logs filter the keys a node reads case-insensitively (encoding/json
// does) spelled as the node names them, with hex values lower-cased. The canonical form
// is the subscription's sharing key and what goes upstream, so "new\u0048eads" and
// "newHeads" are one subscription, with one upstream subscription and one backfill.

var methodSubscribe = MethodNamed("eth_subscribe")

// ErrBadSubscribeParams refuses an eth_subscribe the gateway cannot read: the kind must
// be a plain name, a logs filter an object without keys that name the same field twice.
var ErrBadSubscribeParams = newErr(CodeInvalidParams, http.StatusBadRequest,
	`invalid params: eth_subscribe takes ["<kind>", <options>] with a kind of letters and digits (newHeads, logs, newPendingTransactions, syncing); a logs filter names each field once`)

// maxSubKind bounds a subscription kind's name.
const maxSubKind = 64

// logFilterKeys are the fields of a logs filter as geth names them; a key that folds to
// one of them is that field (encoding/json matches keys case-insensitively).
var logFilterKeys = [...]string{"address", "blockHash", "fromBlock", "toBlock", "topics"}

// canonicalSubscribe appends the canonical form of the eth_subscribe params p (compact,
// valid JSON) to dst and returns it with the kind's position in it.
func canonicalSubscribe(dst, p []byte) ([]byte, Span, bool) {
	it, err := NewArrayIter(p)
	if err != nil {
		return dst, Span{}, false
	}
	first, ok, err := it.Next()
	if err != nil || !ok || p[first.Start] != '"' {
		return dst, Span{}, false
	}
	var buf [maxSubKind + 8]byte
	kind, ok := DecodeString(buf[:], first.Bytes(p))
	if !ok || !validSubKind(kind) {
		return dst, Span{}, false
	}
	start := len(dst)
	dst = append(append(append(dst, '[', '"'), kind...), '"')
	span := Span{Start: start + 2, End: start + 2 + len(kind)}
	logs := string(kind) == "logs"
	for i := 1; ; i++ {
		el, ok, err := it.Next()
		if err != nil {
			return dst, Span{}, false
		}
		if !ok {
			break
		}
		dst = append(dst, ',')
		v := el.Bytes(p)
		if logs && i == 1 && v[0] == '{' {
			if dst, ok = appendLogFilter(dst, v); !ok {
				return dst, Span{}, false
			}
			continue
		}
		if dst, ok = appendCanonical(dst, v, false); !ok {
			return dst, Span{}, false
		}
	}
	return append(dst, ']'), span, true
}

func validSubKind(k []byte) bool {
	if len(k) == 0 || len(k) > maxSubKind {
		return false
	}
	for _, c := range k {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

type member struct {
	key []byte // decoded
	val []byte
}

// appendLogFilter appends a logs filter object: known fields spelled as geth names
// them, sorted, unknown ones dropped (the node ignores them; the gateway sends only what
// it read), hex strings lower-cased. A field named twice (in any spelling) is refused:
// which one a node would keep is the node's choice.
func appendLogFilter(dst, v []byte) ([]byte, bool) {
	it, err := NewObjectIter(v, 0)
	if err != nil {
		return dst, false
	}
	var vals [len(logFilterKeys)][]byte
	var kbuf [32]byte
	for {
		k, val, ok, err := it.Next()
		if err != nil {
			return dst, false
		}
		if !ok {
			break
		}
		key, ok := DecodeString(kbuf[:], k.Bytes(v))
		if !ok {
			continue // longer than any field name: not one
		}
		for i, name := range logFilterKeys {
			if bytes.EqualFold(key, []byte(name)) {
				if vals[i] != nil {
					return dst, false
				}
				vals[i] = val.Bytes(v)
			}
		}
	}
	dst = append(dst, '{')
	n := 0
	for i, name := range logFilterKeys {
		if vals[i] == nil {
			continue
		}
		if n > 0 {
			dst = append(dst, ',')
		}
		n++
		dst = append(append(append(dst, '"'), name...), `":`...)
		var ok bool
		if dst, ok = appendCanonical(dst, vals[i], true); !ok {
			return dst, false
		}
	}
	return append(dst, '}'), true
}

// appendCanonical appends the valid JSON value v with its strings decoded and written
// again by AppendString (hex strings lower-cased when lowerHex), and its objects' keys
// decoded and sorted; a key present twice is refused. Numbers and literals are kept.
func appendCanonical(dst, v []byte, lowerHex bool) ([]byte, bool) {
	switch v[0] {
	case '"':
		s, ok := DecodeString(make([]byte, len(v)+8), v)
		if !ok {
			return dst, false
		}
		if lowerHex && len(s) > 1 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
			s = bytes.ToLower(s)
		}
		return AppendString(dst, string(s)), true
	case '[':
		it, err := NewArrayIter(v)
		if err != nil {
			return dst, false
		}
		dst = append(dst, '[')
		for n := 0; ; n++ {
			el, ok, err := it.Next()
			if err != nil {
				return dst, false
			}
			if !ok {
				break
			}
			if n > 0 {
				dst = append(dst, ',')
			}
			if dst, ok = appendCanonical(dst, el.Bytes(v), lowerHex); !ok {
				return dst, false
			}
		}
		return append(dst, ']'), true
	case '{':
		it, err := NewObjectIter(v, 0)
		if err != nil {
			return dst, false
		}
		var ms []member
		for {
			k, val, ok, err := it.Next()
			if err != nil {
				return dst, false
			}
			if !ok {
				break
			}
			kb := k.Bytes(v)
			key, ok := DecodeString(make([]byte, len(kb)+8), kb)
			if !ok {
				return dst, false
			}
			ms = append(ms, member{key: key, val: val.Bytes(v)})
		}
		slices.SortFunc(ms, func(a, b member) int { return bytes.Compare(a.key, b.key) })
		dst = append(dst, '{')
		for i, m := range ms {
			if i > 0 {
				if bytes.Equal(m.key, ms[i-1].key) {
					return dst, false
				}
				dst = append(dst, ',')
			}
			dst = append(AppendString(dst, string(m.key)), ':')
			var ok bool
			if dst, ok = appendCanonical(dst, m.val, lowerHex); !ok {
				return dst, false
			}
		}
		return append(dst, '}'), true
	}
	return append(dst, v...), true
}
