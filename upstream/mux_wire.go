package upstream

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// The client side of RFC 6455 for the upstream sockets, written here rather than taken
// from the websocket library for two reasons: the writer appends whole frames to one
// buffer per burst (one write syscall for many requests), and reading a message costs
// no allocation (the library allocates a reader per message). Only what a JSON-RPC
// client needs: text/binary messages (fragmented or not), ping, pong, close.

// WebSocket opcodes.
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xa
)

// Close codes used here.
const (
	closeGoingAway       = 1001
	closeProtocolError   = 1002
	closeNoStatusRecvd   = 1005
	maxControlPayloadLen = 125
)

var (
	// errTooLarge is returned by readMessage for a message over the read limit. It is
	// not a connection error: the message was read to its end and dropped.
	errTooLarge = errors.New("upstream message larger than the read limit")
	errProtocol = errors.New("websocket protocol violation by the upstream")
)

// keepPrefix is how much of an oversized message readMessage keeps: enough to find the
// id of the answer (geth writes "jsonrpc" and "id" first), never the message itself.
const keepPrefix = 4 << 10

// CloseError is returned by a read when the upstream closed the websocket.
type CloseError struct {
	Code int
	// Reason is the close frame's text (at most 123 bytes): providers say why there,
	// e.g. a rate or a refused key. Never logged: it may name the project.
	Reason string
}

func (e *CloseError) Error() string { return fmt.Sprintf("upstream closed the websocket (%d)", e.Code) }

// wireConn is one upstream websocket. The reader goroutine owns br and the read
// scratch; writes go through mc, whose lock keeps frames whole.
type wireConn struct {
	mc     *meteredConn
	br     *bufio.Reader
	limit  int
	hdr    [8]byte
	ctl    [maxControlPayloadLen]byte
	onPong func()
	// reads counts the read syscalls so far: the reader reads the clock only when a
	// message took one (the messages of one read arrived together).
	reads *uint64
}

// dialWire opens a websocket to rawURL: TCP (counted), TLS for wss, the HTTP upgrade.
func dialWire(ctx context.Context, rawURL string, header http.Header, tlsConfig *tls.Config,
	dialTimeout time.Duration, limit int, met *Metrics) (*wireConn, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("bad upstream websocket URL: %w", err)
	}
	secure := false
	switch u.Scheme {
	case "ws":
	case "wss":
		secure = true
	default:
		return nil, fmt.Errorf("bad upstream websocket URL scheme %q: want ws or wss", u.Scheme)
	}
	addr := u.Host
	if u.Port() == "" {
		port := "80"
		if secure {
			port = "443"
		}
		addr = net.JoinHostPort(u.Hostname(), port)
	}
	nd := net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	tcp, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	reads := new(uint64)
	var c net.Conn = countingConn{tcp, met, reads}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if secure {
		tcfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if tlsConfig != nil {
			tcfg = tlsConfig.Clone()
		}
		if tcfg.ServerName == "" {
			tcfg.ServerName = u.Hostname()
		}
		tc := tls.Client(c, tcfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = tcp.Close()
			return nil, fmt.Errorf("TLS handshake: %w", err)
		}
		c = tc
	}
	w := &wireConn{mc: &meteredConn{Conn: c}, br: bufio.NewReaderSize(c, 64<<10), limit: limit, reads: reads}
	if err := w.upgrade(u, header); err != nil {
		_ = c.Close()
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return w, nil
}

// upgrade performs the opening handshake (RFC 6455 4.1).
func (w *wireConn) upgrade(u *url.URL, header http.Header) error {
	var nonce [16]byte
	_, _ = rand.Read(nonce[:])
	key := base64.StdEncoding.EncodeToString(nonce[:])
	var b strings.Builder
	b.WriteString("GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
		"\r\nSec-WebSocket-Version: 13\r\n")
	if u.User != nil && header.Get("Authorization") == "" {
		pass, _ := u.User.Password()
		b.WriteString("Authorization: Basic " +
			base64.StdEncoding.EncodeToString([]byte(u.User.Username()+":"+pass)) + "\r\n")
	}
	for k, vs := range header {
		for _, v := range vs {
			if strings.ContainsAny(k+v, "\r\n") {
				return errors.New("bad upstream websocket header: contains a line break")
			}
			b.WriteString(k + ": " + v + "\r\n")
		}
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(w.mc, b.String()); err != nil {
		return fmt.Errorf("cannot send the websocket handshake: %w", err)
	}
	resp, err := http.ReadResponse(w.br, &http.Request{Method: http.MethodGet})
	if err != nil {
		return fmt.Errorf("cannot read the websocket handshake answer: %w", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return fmt.Errorf("websocket handshake: HTTP status %d", resp.StatusCode)
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	switch {
	case !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket"),
		!headerHasToken(resp.Header.Get("Connection"), "upgrade"),
		resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]):
		return errors.New("websocket handshake: the upstream answered 101 without a valid upgrade")
	case resp.Header.Get("Sec-WebSocket-Extensions") != "":
		return errors.New("websocket handshake: the upstream enabled an extension nobody asked for")
	}
	return nil
}

func headerHasToken(v, token string) bool {
	for _, t := range strings.Split(v, ",") {
		if strings.EqualFold(strings.TrimSpace(t), token) {
			return true
		}
	}
	return false
}

// readMessage appends the next data message to dst[:0], answering pings and handling
// pongs and close frames on the way. It never allocates once dst is large enough. A
// message over the read limit is not buffered: its first keepPrefix bytes are kept in
// dst, the rest is read and discarded, and errTooLarge says so; the connection stays
// usable.
func (w *wireConn) readMessage(dst []byte) ([]byte, error) {
	dst = dst[:0]
	inMessage, skipping := false, false
	total := 0 // bytes of the message so far, skipped ones included
	for {
		if _, err := io.ReadFull(w.br, w.hdr[:2]); err != nil {
			return dst, err
		}
		b0, b1 := w.hdr[0], w.hdr[1]
		fin, op := b0&0x80 != 0, b0&0x0f
		if b0&0x70 != 0 || b1&0x80 != 0 { // reserved bits, or a masked server frame
			return dst, w.fail(closeProtocolError, errProtocol)
		}
		n := uint64(b1 & 0x7f)
		switch n {
		case 126:
			if _, err := io.ReadFull(w.br, w.hdr[:2]); err != nil {
				return dst, err
			}
			n = uint64(binary.BigEndian.Uint16(w.hdr[:2]))
		case 127:
			if _, err := io.ReadFull(w.br, w.hdr[:8]); err != nil {
				return dst, err
			}
			n = binary.BigEndian.Uint64(w.hdr[:8])
			if n > 1<<62 { // RFC 6455: the most significant bit must be 0
				return dst, w.fail(closeProtocolError, errProtocol)
			}
		}
		if op >= opClose {
			if !fin || n > maxControlPayloadLen {
				return dst, w.fail(closeProtocolError, errProtocol)
			}
			p := w.ctl[:n]
			if _, err := io.ReadFull(w.br, p); err != nil {
				return dst, err
			}
			if err := w.control(op, p); err != nil {
				return dst, err
			}
			continue
		}
		switch {
		case op == opContinuation && inMessage, (op == opText || op == opBinary) && !inMessage:
			inMessage = true
		default:
			return dst, w.fail(closeProtocolError, errProtocol)
		}
		if !skipping && n > uint64(w.limit-total) {
			skipping = true
		}
		if skipping {
			// Keep what still fits in the prefix, drop the rest of the frame unread
			// into memory.
			keep := min(n, uint64(max(keepPrefix-len(dst), 0)))
			start := len(dst)
			dst = slices.Grow(dst, int(keep))[:start+int(keep)]
			if _, err := io.ReadFull(w.br, dst[start:]); err != nil {
				return dst, err
			}
			if err := w.discard(n - keep); err != nil {
				return dst, err
			}
			if fin {
				return dst, errTooLarge
			}
			continue
		}
		total += int(n)
		start := len(dst)
		dst = slices.Grow(dst, int(n))[:start+int(n)]
		if _, err := io.ReadFull(w.br, dst[start:]); err != nil {
			return dst, err
		}
		if fin {
			return dst, nil
		}
	}
}

// discard reads and drops n bytes.
func (w *wireConn) discard(n uint64) error {
	for n > 0 {
		chunk := int(min(n, 1<<30))
		d, err := w.br.Discard(chunk)
		n -= uint64(d)
		if err != nil {
			return err
		}
	}
	return nil
}

// control handles a control frame read by readMessage.
func (w *wireConn) control(op byte, p []byte) error {
	switch op {
	case opPing:
		return w.writeControl(opPong, p, time.Now().Add(5*time.Second))
	case opPong:
		if w.onPong != nil {
			w.onPong()
		}
		return nil
	case opClose:
		code := closeNoStatusRecvd
		if len(p) >= 2 {
			code = int(binary.BigEndian.Uint16(p))
		}
		_ = w.writeClose(closeGoingAway)
		ce := &CloseError{Code: code}
		if len(p) > 2 {
			ce.Reason = string(p[2:])
		}
		return ce
	}
	return w.fail(closeProtocolError, errProtocol)
}

// fail sends a close frame with code and returns err.
func (w *wireConn) fail(code int, err error) error {
	_ = w.writeClose(code)
	return err
}

func (w *wireConn) writeClose(code int) error {
	var p [2]byte
	binary.BigEndian.PutUint16(p[:], uint16(code))
	return w.writeControl(opClose, p[:], time.Now().Add(time.Second))
}

// writeControl writes a masked control frame; safe from any goroutine.
func (w *wireConn) writeControl(op byte, payload []byte, deadline time.Time) error {
	var f [2 + 4 + maxControlPayloadLen]byte
	key := randUint32()
	f[0], f[1] = 0x80|op, 0x80|byte(len(payload))
	binary.LittleEndian.PutUint32(f[2:6], key)
	n := copy(f[6:], payload)
	maskBytes(f[6:6+n], key)
	return w.mc.writeNow(f[:6+n], deadline)
}

func (w *wireConn) setReadDeadline(t time.Time) error { return w.mc.SetReadDeadline(t) }

func (w *wireConn) close() error { return w.mc.Close() }
