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
	"sync/atomic"
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
	closeMessageTooBig   = 1009
	maxControlPayloadLen = 125
)

var (
	// errTooLarge is returned by readMessage for a message over the read limit. It is
	// not a connection error: the rest of the message is dropped (skipRest) and the
	// connection carries on.
	errTooLarge = errors.New("upstream message larger than the read limit")
	// errAbsurdLength ends a connection whose upstream declared a message far over
	// the read limit (absurdLen).
	errAbsurdLength = errors.New("upstream websocket message declares an absurd length")
	errProtocol     = errors.New("websocket protocol violation by the upstream")
	// errNoRoom is returned by readMessage for a message the answer budget has no room
	// for: dropped as one over the read limit (errTooLarge), its call refused with
	// proto.ErrAnswerBudget.
	errNoRoom = errors.New("upstream message refused: the gateway holds its answer byte budget")
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

// HandshakeError is a dial the upstream refused with an HTTP status instead of the
// upgrade: a provider refuses it for its rate (429, with or without Retry-After), its
// quota or the key (401, 403). Its body is not kept: it may name the project.
type HandshakeError struct {
	Status     int
	RetryAfter string // the Retry-After header, "" if none
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("websocket handshake: HTTP status %d", e.Status)
}

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
	// busy says a message is being read (or dropped): begun, not ended. The writer's
	// probe waits while it is (slot.write).
	busy atomic.Bool
	// upgradeTook is the upgrade's request and answer: a round trip and the server's
	// time, the socket's round trip until a pong measures it (slot.probeWindow).
	upgradeTook time.Duration
	// skip is the oversized message being dropped; skipTimeout (0: none) bounds the
	// time dropping one may take. Reader only.
	skip        skipState
	skipTimeout time.Duration
	// answers is the process's answer budget (nil: none); held what the message read
	// last reserved from it, given back by settle. Reader only.
	answers *AnswerBudget
	held    int64
}

// skipState is where the drop of an oversized message stands.
type skipState struct {
	active bool
	left   uint64    // bytes of the current frame still unread
	fin    bool      // the current frame is the message's last
	total  uint64    // bytes the message declared so far
	by     time.Time // the drop's read deadline (skipTimeout)
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
	hs := &handshakeCap{r: c, left: maxHandshake}
	w := &wireConn{mc: &meteredConn{Conn: c}, br: bufio.NewReaderSize(hs, 64<<10), limit: limit, reads: reads}
	start := time.Now()
	if err := w.upgrade(u, header); err != nil {
		_ = c.Close()
		return nil, err
	}
	w.upgradeTook = time.Since(start)
	hs.left = -1 // frames: bounded by the read limit and the answer budget
	_ = c.SetDeadline(time.Time{})
	return w, nil
}

// maxHandshake bounds what the upstream's handshake answer may take: net/http's
// ReadResponse reads a header line of any length, so an upstream that never ends one
// would grow it until the dial's deadline.
const maxHandshake = 64 << 10

var errHandshakeTooLarge = errors.New("upstream websocket handshake answer over 64 KiB")

// handshakeCap ends reads past left bytes (left < 0: no bound, once the handshake is
// done).
type handshakeCap struct {
	r    io.Reader
	left int
}

func (h *handshakeCap) Read(p []byte) (int, error) {
	if h.left < 0 {
		return h.r.Read(p)
	}
	if h.left == 0 {
		return 0, errHandshakeTooLarge
	}
	n, err := h.r.Read(p[:min(len(p), h.left)])
	h.left -= n
	return n, err
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
		return &HandshakeError{Status: resp.StatusCode, RetryAfter: resp.Header.Get("Retry-After")}
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
// pongs and close frames on the way. It never allocates once dst is large enough.
//
// A message over the read limit is never buffered, nor read to its end here: as soon as
// a frame's header says the message passes the limit, readMessage returns errTooLarge
// with what dst holds of it so far (the reader grows that prefix with growPrefix until
// it knows whose answer it is, so that call fails at once) and the connection is left
// dropping the rest, which skipRest (or the next readMessage) finishes within
// skipTimeout. A message declaring an absurd length (absurdLen) is not skipped: the
// connection fails at once.
func (w *wireConn) readMessage(dst []byte) ([]byte, error) {
	dst = dst[:0]
	if w.skip.active {
		if err := w.skipRest(); err != nil {
			return dst, err
		}
	}
	inMessage := false
	total := 0 // bytes of the message so far
	for {
		fin, op, n, err := w.nextFrame()
		if err != nil {
			return dst, err
		}
		switch {
		case op == opContinuation && inMessage, (op == opText || op == opBinary) && !inMessage:
			if !inMessage {
				w.busy.Store(true)
			}
			inMessage = true
		default:
			return dst, w.fail(closeProtocolError, errProtocol)
		}
		if n > uint64(w.limit-total) {
			return dst, w.startSkip(uint64(total), n, fin)
		}
		// Reserved from the frame's header, before its bytes are buffered.
		if !w.answers.grow(int64(total), int64(n), TransportWS) {
			if err := w.startSkip(uint64(total), n, fin); err != errTooLarge {
				return dst, err
			}
			return dst, errNoRoom
		}
		w.held += int64(n)
		total += int(n)
		start := len(dst)
		dst = slices.Grow(dst, int(n))[:start+int(n)]
		if _, err := io.ReadFull(w.br, dst[start:]); err != nil {
			return dst, err
		}
		if fin {
			w.busy.Store(false)
			return dst, nil
		}
	}
}

// settle gives back what the last message reserved from the answer budget: the reader
// has routed it (its call holds a copy) or dropped it.
func (w *wireConn) settle() {
	w.answers.release(reserved(w.held))
	w.held = 0
}

// nextFrame reads frame headers until a data frame's, handling the control frames on
// the way, and returns its FIN bit, opcode and payload length.
func (w *wireConn) nextFrame() (fin bool, op byte, n uint64, err error) {
	for {
		if _, err := io.ReadFull(w.br, w.hdr[:2]); err != nil {
			return false, 0, 0, err
		}
		b0, b1 := w.hdr[0], w.hdr[1]
		fin, op = b0&0x80 != 0, b0&0x0f
		if b0&0x70 != 0 || b1&0x80 != 0 { // reserved bits, or a masked server frame
			return false, 0, 0, w.fail(closeProtocolError, errProtocol)
		}
		n = uint64(b1 & 0x7f)
		switch n {
		case 126:
			if _, err := io.ReadFull(w.br, w.hdr[:2]); err != nil {
				return false, 0, 0, err
			}
			n = uint64(binary.BigEndian.Uint16(w.hdr[:2]))
		case 127:
			if _, err := io.ReadFull(w.br, w.hdr[:8]); err != nil {
				return false, 0, 0, err
			}
			n = binary.BigEndian.Uint64(w.hdr[:8])
			if n>>63 != 0 { // RFC 6455: the most significant bit must be 0
				return false, 0, 0, w.fail(closeProtocolError, errProtocol)
			}
		}
		if op < opClose {
			return fin, op, n, nil
		}
		if !fin || n > maxControlPayloadLen {
			return false, 0, 0, w.fail(closeProtocolError, errProtocol)
		}
		p := w.ctl[:n]
		if _, err := io.ReadFull(w.br, p); err != nil {
			return false, 0, 0, err
		}
		if err := w.control(op, p); err != nil {
			return false, 0, 0, err
		}
		if w.skip.active && w.skipTimeout > 0 {
			// A pong moved the read deadline: a drop keeps its own.
			_ = w.setReadDeadline(w.skip.by)
		}
	}
}

// absurdLen is the declared message length past which a message is not skipped but
// ends the connection: no JSON-RPC answer is that large, so the upstream is broken or
// hostile, and dropping it (2^62 bytes, say) would hold every call on the socket.
func (w *wireConn) absurdLen() uint64 { return max(absurdFactor*uint64(w.limit), absurdFloor) }

const (
	absurdFactor = 16
	absurdFloor  = 1 << 30
)

// startSkip begins dropping a message found over the limit at a frame of n bytes, after
// total bytes of it, and returns errTooLarge; or fails the connection when the length
// declared so far is absurd.
func (w *wireConn) startSkip(total, n uint64, fin bool) error {
	if total+n > w.absurdLen() {
		return w.fail(closeMessageTooBig, errAbsurdLength)
	}
	w.skip = skipState{active: true, left: n, fin: fin, total: total + n}
	w.busy.Store(true)
	if w.skipTimeout > 0 {
		w.skip.by = time.Now().Add(w.skipTimeout)
		_ = w.setReadDeadline(w.skip.by)
	}
	return errTooLarge
}

// nextSkipFrame reads the header of the next frame of the message being dropped.
func (w *wireConn) nextSkipFrame() error {
	fin, op, n, err := w.nextFrame()
	if err != nil {
		return err
	}
	if op != opContinuation {
		return w.fail(closeProtocolError, errProtocol)
	}
	if w.skip.total+n > w.absurdLen() {
		return w.fail(closeMessageTooBig, errAbsurdLength)
	}
	w.skip.left, w.skip.fin, w.skip.total = n, fin, w.skip.total+n
	return nil
}

// growPrefix appends more of the message being dropped to prefix, with at most one read
// syscall, up to keepPrefix bytes in all. more is false when nothing more will come:
// the prefix is full or the message ended.
func (w *wireConn) growPrefix(prefix []byte) (_ []byte, more bool, err error) {
	for w.skip.active && len(prefix) < keepPrefix {
		if w.skip.left == 0 {
			if w.skip.fin {
				break
			}
			if err := w.nextSkipFrame(); err != nil {
				return prefix, false, err
			}
			continue
		}
		k := int(min(w.skip.left, uint64(keepPrefix-len(prefix))))
		start := len(prefix)
		prefix = slices.Grow(prefix, k)[:start+k]
		got, err := w.br.Read(prefix[start:])
		prefix = prefix[:start+got]
		w.skip.left -= uint64(got)
		if err != nil {
			return prefix, false, err
		}
		return prefix, true, nil
	}
	return prefix, false, nil
}

// skipRest reads and drops what is left of the message being dropped, by its deadline
// (a stalled upstream ends the connection then, not at the keepalive's).
func (w *wireConn) skipRest() error {
	for w.skip.active {
		if err := w.discard(w.skip.left); err != nil {
			return err
		}
		w.skip.left = 0
		if w.skip.fin {
			w.skip = skipState{}
			w.busy.Store(false)
			return nil
		}
		if err := w.nextSkipFrame(); err != nil {
			return err
		}
	}
	return nil
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
