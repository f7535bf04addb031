package proto

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
)

// keccakRef is a slow Keccak-256 written from the specification's text, independently
// of keccak.go: lanes as A[x][y], rotation offsets computed by the rho walk, round
// constants by the rc(t) LFSR, absorption byte by byte.
func keccakRef(msg []byte) []byte {
	var A [5][5]uint64
	rot := func(v uint64, n int) uint64 { n %= 64; return v<<n | v>>((64-n)%64) }
	var offsets [5][5]int
	x, y := 1, 0
	for t := 0; t < 24; t++ {
		offsets[x][y] = (t + 1) * (t + 2) / 2
		x, y = y, (2*x+3*y)%5
	}
	rcBit := func(t int) uint64 {
		if t%255 == 0 {
			return 1
		}
		R := uint16(1)
		for i := 1; i <= t%255; i++ {
			R <<= 1
			if R&0x100 != 0 {
				R ^= 0x171
			}
		}
		return uint64(R & 1)
	}
	perm := func() {
		for ir := 0; ir < 24; ir++ {
			var C, D [5]uint64
			for x := 0; x < 5; x++ {
				C[x] = A[x][0] ^ A[x][1] ^ A[x][2] ^ A[x][3] ^ A[x][4]
			}
			for x := 0; x < 5; x++ {
				D[x] = C[(x+4)%5] ^ rot(C[(x+1)%5], 1)
				for y := 0; y < 5; y++ {
					A[x][y] ^= D[x]
				}
			}
			var B [5][5]uint64
			for x := 0; x < 5; x++ {
				for y := 0; y < 5; y++ {
					B[y][(2*x+3*y)%5] = rot(A[x][y], offsets[x][y])
				}
			}
			for x := 0; x < 5; x++ {
				for y := 0; y < 5; y++ {
					A[x][y] = B[x][y] ^ (^B[(x+1)%5][y] & B[(x+2)%5][y])
				}
			}
			var rc uint64
			for j := 0; j <= 6; j++ {
				rc |= rcBit(j+7*ir) << ((1 << j) - 1)
			}
			A[0][0] ^= rc
		}
	}
	padded := append(append([]byte{}, msg...), 0x01)
	for len(padded)%136 != 0 {
		padded = append(padded, 0)
	}
	padded[len(padded)-1] |= 0x80
	for off := 0; off < len(padded); off += 136 {
		for i := 0; i < 136; i++ {
			lane := i / 8
			A[lane%5][lane/5] ^= uint64(padded[off+i]) << (8 * (i % 8))
		}
		perm()
	}
	out := make([]byte, 32)
	for i := range out {
		lane := i / 8
		out[i] = byte(A[lane%5][lane/5] >> (8 * (i % 8)))
	}
	return out
}

func TestKeccak256Vectors(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"},
		{"abc", "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"},
		{"The quick brown fox jumps over the lazy dog", "4d741b6f1eb29cb2a9b9911c82f56fa8d73b04959d3d9d222895df6c0b28aa15"},
	} {
		h := Keccak256([]byte(c.in))
		if got := hex.EncodeToString(h[:]); got != c.want {
			t.Errorf("keccak256(%q) = %s, want %s", c.in, got, c.want)
		}
		if got := hex.EncodeToString(keccakRef([]byte(c.in))); got != c.want {
			t.Errorf("reference keccak256(%q) = %s, want %s", c.in, got, c.want)
		}
	}
}

// Every length around the rate's edges, and written in pieces, against the reference.
func TestKeccak256MatchesReference(t *testing.T) {
	msg := make([]byte, 3*136+7)
	for i := range msg {
		msg[i] = byte(i*7 + 3)
	}
	for n := 0; n <= len(msg); n++ {
		want := keccakRef(msg[:n])
		h := Keccak256(msg[:n])
		if !bytes.Equal(h[:], want) {
			t.Fatalf("length %d: %x, want %x", n, h, want)
		}
		var k Keccak
		k.Write(msg[:n/3])
		for _, b := range msg[n/3 : n/2] {
			k.AbsorbByte(b)
		}
		k.Write(msg[n/2 : n])
		if h := k.Sum256(); !bytes.Equal(h[:], want) {
			t.Fatalf("length %d in pieces: %x, want %x", n, h, want)
		}
	}
}

func FuzzKeccak256(f *testing.F) {
	f.Add([]byte(""))
	f.Add([]byte(strings.Repeat("a", 136)))
	f.Add([]byte(strings.Repeat("b", 135)))
	f.Fuzz(func(t *testing.T, msg []byte) {
		h := Keccak256(msg)
		if want := keccakRef(msg); !bytes.Equal(h[:], want) {
			t.Fatalf("%x: %x, want %x", msg, h, want)
		}
	})
}

func TestTxHash(t *testing.T) {
	raw := []byte{0x02, 0xf8, 0x6b, 0x01, 0x02, 0x03}
	want := Keccak256(raw)
	for _, c := range []struct {
		params string
		ok     bool
	}{
		{`["0x` + hex.EncodeToString(raw) + `"]`, true},
		{`["0X` + strings.ToUpper(hex.EncodeToString(raw)) + `"]`, true},
		{`[ "0x` + hex.EncodeToString(raw) + `" , {"x":1}]`, true},
		{`["0x"]`, false},
		{`["0x0"]`, false},
		{`["02f8"]`, false},
		{`["0xzz"]`, false},
		{`["0x\u0030\u0030"]`, false},
		{`[1]`, false},
		{`[]`, false},
		{`{"raw":"0x00"}`, false},
		{``, false},
	} {
		h, ok := TxHash([]byte(c.params))
		if ok != c.ok || (ok && h != want) {
			t.Errorf("TxHash(%s) = %x, %v; want ok %v", c.params, h, ok, c.ok)
		}
	}
	if got := string(AppendHash(nil, &want)); got != `"0x`+hex.EncodeToString(want[:])+`"` {
		t.Errorf("AppendHash = %s", got)
	}
}

func FuzzTxHash(f *testing.F) {
	f.Add([]byte(`["0x02f8"]`))
	f.Add([]byte(`["0x"]`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, params []byte) {
		h, ok := TxHash(params)
		if !ok {
			return
		}
		s := Nth(params, 0).Bytes(params)
		raw, err := hex.DecodeString(string(s[3 : len(s)-1]))
		if err != nil || len(raw) == 0 {
			t.Fatalf("TxHash accepted %s", params)
		}
		if want := keccakRef(raw); !bytes.Equal(h[:], want) {
			t.Fatalf("TxHash(%s) = %x, want %x", params, h, want)
		}
	})
}

func TestTxHashAllocatesNothing(t *testing.T) {
	params := []byte(`["0x` + strings.Repeat("ab", 400) + `"]`)
	if n := testing.AllocsPerRun(100, func() { _, _ = TxHash(params) }); n != 0 {
		t.Fatalf("TxHash allocates %v times", n)
	}
}
