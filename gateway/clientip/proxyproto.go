// Package clientip finds the client's address behind a load balancer or proxy: a
// net.Listener that reads the PROXY protocol header (v1 text, v2 binary) from trusted
// sources, and a resolver of X-Forwarded-For that believes the header only from trusted
// proxies. Nothing is trusted by default: with empty trusted lists the client address is
// the TCP peer.
package clientip

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"strconv"
	"unsafe"
)

// Header is a parsed PROXY protocol header.
type Header struct {
	Version int // 1 or 2
	// Local is true when the header carries no client address (v1 UNKNOWN, v2 LOCAL, or
	// a v2 family other than IPv4/IPv6): the connection's own addresses stand.
	Local    bool
	Src, Dst netip.AddrPort
}

var (
	// ErrNoHeader: the bytes do not start a PROXY header.
	ErrNoHeader = errors.New("no PROXY protocol header")
	// ErrIncomplete: the bytes are the start of a header; more are needed.
	ErrIncomplete = errors.New("incomplete PROXY protocol header")
	// ErrInvalid: a malformed header.
	ErrInvalid = errors.New("invalid PROXY protocol header")
)

const (
	v1Prefix = "PROXY "
	v1Max    = 107 // the spec's longest v1 line, CRLF included
	// MaxHeaderV2 bounds a v2 header (16 bytes and its addresses and TLVs). Load balancers
	// send a few dozen bytes; anything longer is refused as invalid.
	MaxHeaderV2 = 4096
)

var v2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

// ParseHeader parses the PROXY header at the start of b and returns it with its length
// in bytes. ErrNoHeader means b does not start with one (its bytes are application
// data); ErrIncomplete that more bytes are needed. It never allocates.
func ParseHeader(b []byte) (Header, int, error) {
	switch {
	case len(b) >= len(v1Prefix) && string(b[:len(v1Prefix)]) == v1Prefix:
		return parseV1(b)
	case len(b) >= len(v2Sig) && bytes.Equal(b[:len(v2Sig)], v2Sig):
		return parseV2(b)
	case len(b) < len(v1Prefix) && string(b) == v1Prefix[:len(b)],
		len(b) < len(v2Sig) && bytes.Equal(b, v2Sig[:len(b)]):
		return Header{}, 0, ErrIncomplete
	}
	return Header{}, 0, ErrNoHeader
}

func parseV1(b []byte) (Header, int, error) {
	end := bytes.Index(b[:min(len(b), v1Max)], []byte("\r\n"))
	if end < 0 {
		if len(b) < v1Max {
			return Header{}, 0, ErrIncomplete
		}
		return Header{}, 0, ErrInvalid
	}
	n := end + 2
	line := b[len(v1Prefix):end]
	h := Header{Version: 1}
	if bytes.HasPrefix(line, []byte("UNKNOWN")) {
		h.Local = true
		return h, n, nil
	}
	var f [5][]byte
	for i := range f {
		sp := bytes.IndexByte(line, ' ')
		if i == len(f)-1 {
			if sp >= 0 {
				return Header{}, 0, ErrInvalid
			}
			f[i] = line
			break
		}
		if sp < 0 {
			return Header{}, 0, ErrInvalid
		}
		f[i], line = line[:sp], line[sp+1:]
	}
	src, err1 := netip.ParseAddr(b2s(f[1]))
	dst, err2 := netip.ParseAddr(b2s(f[2]))
	sp, ok1 := parsePort(f[3])
	dp, ok2 := parsePort(f[4])
	if err1 != nil || err2 != nil || !ok1 || !ok2 || src.Zone() != "" || dst.Zone() != "" {
		return Header{}, 0, ErrInvalid
	}
	switch string(f[0]) {
	case "TCP4":
		if !src.Is4() || !dst.Is4() {
			return Header{}, 0, ErrInvalid
		}
	case "TCP6":
		if !src.Is6() || !dst.Is6() {
			return Header{}, 0, ErrInvalid
		}
	default:
		return Header{}, 0, ErrInvalid
	}
	h.Src, h.Dst = netip.AddrPortFrom(src, sp), netip.AddrPortFrom(dst, dp)
	return h, n, nil
}

func parsePort(b []byte) (uint16, bool) {
	if len(b) == 0 || len(b) > 5 || (len(b) > 1 && b[0] == '0') {
		return 0, false
	}
	v := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return uint16(v), v <= 65535
}

func parseV2(b []byte) (Header, int, error) {
	if len(b) < 16 {
		return Header{}, 0, ErrIncomplete
	}
	verCmd, fam := b[12], b[13]
	size := int(binary.BigEndian.Uint16(b[14:16]))
	n := 16 + size
	if verCmd>>4 != 2 || n > MaxHeaderV2 {
		return Header{}, 0, ErrInvalid
	}
	if len(b) < n {
		return Header{}, 0, ErrIncomplete
	}
	h := Header{Version: 2}
	switch verCmd & 0xf {
	case 0: // LOCAL: health checks from the proxy itself
		h.Local = true
		return h, n, nil
	case 1: // PROXY
	default:
		return Header{}, 0, ErrInvalid
	}
	a := b[16:n]
	switch fam >> 4 {
	case 1: // INET
		if len(a) < 12 {
			return Header{}, 0, ErrInvalid
		}
		h.Src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[0:4])), binary.BigEndian.Uint16(a[8:10]))
		h.Dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[4:8])), binary.BigEndian.Uint16(a[10:12]))
	case 2: // INET6
		if len(a) < 36 {
			return Header{}, 0, ErrInvalid
		}
		h.Src = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[0:16])), binary.BigEndian.Uint16(a[32:34]))
		h.Dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[16:32])), binary.BigEndian.Uint16(a[34:36]))
	case 0, 3: // UNSPEC, UNIX: no IP address to use
		h.Local = true
	default:
		return Header{}, 0, ErrInvalid
	}
	return h, n, nil
}

// AppendV1 appends h as a v1 header (TCP4/TCP6, or UNKNOWN when Local).
func AppendV1(dst []byte, h Header) []byte {
	if h.Local {
		return append(dst, "PROXY UNKNOWN\r\n"...)
	}
	proto := "TCP4 "
	if h.Src.Addr().Is6() {
		proto = "TCP6 "
	}
	dst = append(dst, v1Prefix...)
	dst = append(dst, proto...)
	dst = h.Src.Addr().AppendTo(dst)
	dst = append(dst, ' ')
	dst = h.Dst.Addr().AppendTo(dst)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, uint64(h.Src.Port()), 10)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, uint64(h.Dst.Port()), 10)
	return append(dst, "\r\n"...)
}

// AppendV2 appends h as a v2 header (PROXY over TCP, or LOCAL when Local).
func AppendV2(dst []byte, h Header) []byte {
	dst = append(dst, v2Sig...)
	if h.Local {
		return append(dst, 0x20, 0x00, 0, 0)
	}
	if h.Src.Addr().Is4() {
		dst = append(dst, 0x21, 0x11, 0, 12)
		s, d := h.Src.Addr().As4(), h.Dst.Addr().As4()
		dst = append(append(dst, s[:]...), d[:]...)
	} else {
		dst = append(dst, 0x21, 0x21, 0, 36)
		s, d := h.Src.Addr().As16(), h.Dst.Addr().As16()
		dst = append(append(dst, s[:]...), d[:]...)
	}
	dst = binary.BigEndian.AppendUint16(dst, h.Src.Port())
	return binary.BigEndian.AppendUint16(dst, h.Dst.Port())
}

// b2s views b as a string for parsing; the string must not outlive b's contents.
func b2s(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
