package head

import (
	"fmt"
	"strings"
	"testing"
)

// TestObserve: which headers are new heads, and which reveal a reorg.
func TestObserve(t *testing.T) {
	hdr := func(n int, hash, parent string) []byte {
		full := func(h string) string { return h + strings.Repeat("0", 66-len(h)) }
		return []byte(fmt.Sprintf(`{"number":"0x%x","hash":"%s","parentHash":"%s"}`, n, full(hash), full(parent)))
	}
	h := &Tracker{}
	reorgs := 0
	h.OnReorg(func() { reorgs++ })
	for i, tc := range []struct {
		header     []byte
		new        bool
		reorgs     int
		number     uint64
		epochAfter uint64
	}{
		{[]byte(`{"hash":"0x1"}`), false, 0, 0, 0},  // no number: not a head
		{hdr(10, "0xa", "0x9"), true, 0, 10, 1},     // the first
		{hdr(10, "0xa", "0x9"), false, 0, 10, 1},    // the same again
		{hdr(11, "0xb", "0xa"), true, 0, 11, 2},     // extends it
		{hdr(12, "0xc", "0xOTHER"), true, 1, 12, 3}, // does not extend 0xb
		{hdr(12, "0xd", "0xb"), true, 2, 12, 4},     // another block at the same height
		{hdr(9, "0xe", "0x8"), true, 3, 9, 5},       // the chain went back
	} {
		if got := h.Observe(tc.header); got != tc.new || reorgs != tc.reorgs || h.Number() != tc.number || h.Epoch() != tc.epochAfter {
			t.Errorf("%d: new %v reorgs %d number %d epoch %d, want %v %d %d %d", i, got, reorgs, h.Number(), h.Epoch(),
				tc.new, tc.reorgs, tc.number, tc.epochAfter)
		}
	}
	if !h.Seen() {
		t.Fatal("not seen")
	}
}
