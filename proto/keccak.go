package proto

import (
	"encoding/binary"
	"math/bits"
)

// Keccak-256 as Ethereum uses it (the original Keccak submission: padding 0x01 ... 0x80,
// not FIPS 202 SHA3-256, whose padding is 0x06; crypto/sha3 is the latter). The gateway
// needs it to name a transaction by its hash (keccak of the raw envelope bytes) without
// a dependency. It never allocates: the state lives in the caller's Keccak value.

const keccakRate = 136 // 1600 - 2*256 bits, in bytes

// Keccak is a Keccak-256 hash in progress; the zero value is ready to Write.
type Keccak struct {
	a   [25]uint64
	buf [keccakRate]byte
	n   int // bytes in buf
}

// Write absorbs p.
func (k *Keccak) Write(p []byte) {
	for len(p) > 0 {
		c := copy(k.buf[k.n:], p)
		k.n += c
		p = p[c:]
		if k.n == keccakRate {
			k.absorb()
		}
	}
}

// AbsorbByte absorbs one byte.
func (k *Keccak) AbsorbByte(b byte) {
	k.buf[k.n] = b
	if k.n++; k.n == keccakRate {
		k.absorb()
	}
}

func (k *Keccak) absorb() {
	for i := 0; i < keccakRate/8; i++ {
		k.a[i] ^= binary.LittleEndian.Uint64(k.buf[i*8:])
	}
	keccakF1600(&k.a)
	k.n = 0
}

// Sum256 returns the hash of what was written; k is spent.
func (k *Keccak) Sum256() (h [32]byte) {
	clear(k.buf[k.n:])
	k.buf[k.n] ^= 0x01
	k.buf[keccakRate-1] ^= 0x80
	k.absorb()
	for i := 0; i < 4; i++ {
		binary.LittleEndian.PutUint64(h[i*8:], k.a[i])
	}
	return h
}

// Keccak256 returns the Keccak-256 of data.
func Keccak256(data []byte) [32]byte {
	var k Keccak
	k.Write(data)
	return k.Sum256()
}

var keccakRC = [24]uint64{
	0x0000000000000001, 0x0000000000008082, 0x800000000000808A, 0x8000000080008000,
	0x000000000000808B, 0x0000000080000001, 0x8000000080008081, 0x8000000000008009,
	0x000000000000008A, 0x0000000000000088, 0x0000000080008009, 0x000000008000000A,
	0x000000008000808B, 0x800000000000008B, 0x8000000000008089, 0x8000000000008003,
	0x8000000000008002, 0x8000000000000080, 0x000000000000800A, 0x800000008000000A,
	0x8000000080008081, 0x8000000000008080, 0x0000000080000001, 0x8000000080008008,
}

// keccakRot and keccakPi walk the rho and pi steps as one cycle through the lanes.
var keccakRot = [24]int{1, 3, 6, 10, 15, 21, 28, 36, 45, 55, 2, 14, 27, 41, 56, 8, 25, 43, 62, 18, 39, 61, 20, 44}
var keccakPi = [24]int{10, 7, 11, 17, 18, 3, 5, 16, 8, 21, 24, 4, 15, 23, 19, 13, 12, 2, 20, 14, 22, 9, 6, 1}

// keccakF1600 is the permutation: 24 rounds of theta, rho, pi, chi, iota.
func keccakF1600(a *[25]uint64) {
	var c [5]uint64
	for round := 0; round < 24; round++ {
		for x := 0; x < 5; x++ {
			c[x] = a[x] ^ a[x+5] ^ a[x+10] ^ a[x+15] ^ a[x+20]
		}
		for x := 0; x < 5; x++ {
			d := c[(x+4)%5] ^ bits.RotateLeft64(c[(x+1)%5], 1)
			for y := 0; y < 25; y += 5 {
				a[y+x] ^= d
			}
		}
		t := a[1]
		for i := 0; i < 24; i++ {
			j := keccakPi[i]
			t, a[j] = a[j], bits.RotateLeft64(t, keccakRot[i])
		}
		for y := 0; y < 25; y += 5 {
			c0, c1, c2, c3, c4 := a[y], a[y+1], a[y+2], a[y+3], a[y+4]
			a[y] = c0 ^ (^c1 & c2)
			a[y+1] = c1 ^ (^c2 & c3)
			a[y+2] = c2 ^ (^c3 & c4)
			a[y+3] = c3 ^ (^c4 & c0)
			a[y+4] = c4 ^ (^c0 & c1)
		}
		a[0] ^= keccakRC[round]
	}
}
