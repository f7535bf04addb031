// Iterators over the members of one object (ObjectIter) and the elements of one array
// (ArrayIter): spans of keys and values, validated as they are skipped, nothing allocated.

package proto

// ObjectIter walks the members of one JSON object without allocating.
type ObjectIter struct {
	b     []byte
	i     int
	depth int
	done  bool
}

// NewObjectIter starts iterating the object whose '{' is the first non-whitespace byte
// at or after b[i].
func NewObjectIter(b []byte, i int) (ObjectIter, error) {
	i = SkipWS(b, i)
	if i >= len(b) || b[i] != '{' {
		return ObjectIter{}, ErrSyntax
	}
	return ObjectIter{b: b, i: SkipWS(b, i+1), depth: 1}, nil
}

// Pos returns the index just past the closing '}' once Next has reported ok == false.
func (it *ObjectIter) Pos() int { return it.i }

// Next returns the next member: the key span (with quotes) and the value span.
// ok is false after the closing brace.
func (it *ObjectIter) Next() (key, val Span, ok bool, err error) {
	if key, _, ok, err = it.nextKey(); err != nil || !ok {
		return key, val, ok, err
	}
	val, _, ok, err = it.nextValue()
	return key, val, ok, err
}

// nextKey reads the next key and its colon, leaving the iterator at the value.
func (it *ObjectIter) nextKey() (key, _ Span, ok bool, err error) {
	b := it.b
	if it.done {
		return key, key, false, nil
	}
	if it.i >= len(b) {
		return key, key, false, ErrSyntax
	}
	if b[it.i] == '}' { // only reachable for an empty object: after ',' a key is required
		it.i++
		it.done = true
		return key, key, false, nil
	}
	if b[it.i] != '"' {
		return key, key, false, ErrSyntax
	}
	key.Start = it.i
	if it.i, err = skipString(b, it.i); err != nil {
		return key, key, false, err
	}
	key.End = it.i
	it.i = SkipWS(b, it.i)
	if it.i >= len(b) || b[it.i] != ':' {
		return key, key, false, ErrSyntax
	}
	it.i = SkipWS(b, it.i+1)
	return key, key, true, nil
}

// nextValue skips the value after nextKey and the separator that follows it.
func (it *ObjectIter) nextValue() (val, _ Span, ok bool, err error) {
	b := it.b
	val.Start = it.i
	if it.i, err = skipValue(b, it.i, it.depth); err != nil {
		return val, val, false, err
	}
	val.End = it.i
	it.i = SkipWS(b, it.i)
	if it.i >= len(b) {
		return val, val, false, ErrSyntax
	}
	switch b[it.i] {
	case ',':
		it.i = SkipWS(b, it.i+1)
		if it.i >= len(b) || b[it.i] != '"' {
			return val, val, false, ErrSyntax
		}
	case '}':
		it.i++
		it.done = true
	default:
		return val, val, false, ErrSyntax
	}
	return val, val, true, nil
}

// ArrayIter walks the elements of one JSON array (a batch) without allocating.
type ArrayIter struct {
	b    []byte
	i    int
	n    int
	done bool
}

// NewArrayIter starts iterating the array whose '[' is the first non-whitespace byte of b.
func NewArrayIter(b []byte) (ArrayIter, error) {
	i := SkipWS(b, 0)
	if i >= len(b) || b[i] != '[' {
		return ArrayIter{}, ErrSyntax
	}
	return ArrayIter{b: b, i: SkipWS(b, i+1)}, nil
}

// Pos returns the index just past the closing ']' once Next has reported ok == false.
func (it *ArrayIter) Pos() int { return it.i }

// Next returns the span of the next element; ok is false after the closing bracket.
func (it *ArrayIter) Next() (el Span, ok bool, err error) {
	b := it.b
	if it.done {
		return el, false, nil
	}
	if it.i >= len(b) {
		return el, false, ErrSyntax
	}
	if b[it.i] == ']' && it.n == 0 {
		it.i++
		it.done = true
		return el, false, nil
	}
	el.Start = it.i
	if it.i, err = skipValue(b, it.i, 1); err != nil {
		return el, false, err
	}
	el.End = it.i
	it.n++
	it.i = SkipWS(b, it.i)
	if it.i >= len(b) {
		return el, false, ErrSyntax
	}
	switch b[it.i] {
	case ',':
		it.i = SkipWS(b, it.i+1)
		if it.i < len(b) && b[it.i] == ']' {
			return el, false, ErrSyntax // trailing comma
		}
	case ']':
		it.i++
		it.done = true
	default:
		return el, false, ErrSyntax
	}
	return el, true, nil
}
