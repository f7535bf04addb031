package socket

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/fasthttp/websocket"
)

// Memory per client. fasthttp hands a hijacked connection over with its request reader
// (-read-buffer-size, 8 KiB) and keeps its request context until the hijack handler
// returns; a websocket made by FastHTTPUpgrader reads through both for as long as the
// client stays. So the socket takes the raw connection instead: once fasthttp has
// written the 101 (the handshake checked and answered exactly as FastHTTPUpgrader does),
// the hijack handler builds the websocket on the raw net.Conn, starts the client on a
// goroutine of its own and returns, and fasthttp (KeepHijackedConns) drops its reader,
// context and hijack goroutine. An idle client then holds its websocket's 512-byte read
// buffer, no write buffer (pooled, taken per frame) and one goroutine.

// takeOver returns a websocket on hijacked's raw connection. hijacked is what fasthttp's
// hijack handler got: its reads go through fasthttp's reader, which may hold bytes a
// client sent before it saw the 101 (RFC 6455 forbids it; they are kept all the same).
func takeOver(hijacked net.Conn) (*websocket.Conn, error) {
	raw := hijacked
	if u, ok := hijacked.(interface{ UnsafeConn() net.Conn }); ok {
		raw = u.UnsafeConn()
	}
	rc := &rawConn{Conn: raw}
	if raw != hijacked {
		early, err := buffered(hijacked, raw)
		if err != nil {
			return nil, err
		}
		rc.early = early
	}
	hj := &rawHijacker{conn: rc, rw: bufio.NewReadWriter(noBuffered, bufio.NewWriterSize(io.Discard, 16))}
	return rawUpgrader.Upgrade(hj, rawRequest, nil)
}

// buffered returns what fasthttp's reader holds beyond the request: reads through it
// with the connection's read deadline in the past return its buffered bytes and never
// wait for (or consume) the network's.
func buffered(hijacked, raw net.Conn) ([]byte, error) {
	if err := raw.SetReadDeadline(time.Unix(1, 0)); err != nil {
		return nil, err
	}
	var early []byte
	var b [512]byte
	for {
		n, err := hijacked.Read(b[:])
		early = append(early, b[:n]...)
		if err != nil || n == 0 {
			break
		}
	}
	return early, raw.SetReadDeadline(time.Time{})
}

// rawUpgrader makes the server side of a websocket on a connection whose handshake is
// already answered: its own 101 is what rawConn drops. The checks it repeats pass on
// rawRequest; FastHTTPUpgrader made the real ones.
var rawUpgrader = websocket.Upgrader{
	// Small buffers: idle clients cost memory, busy ones read large messages
	// straight into pooled buffers anyway.
	ReadBufferSize:  512,
	WriteBufferSize: 4096,
	WriteBufferPool: &writeBufferPool,
	CheckOrigin:     func(*http.Request) bool { return true },
}

// rawRequest is a valid upgrade request, read (never written) by every rawUpgrader.Upgrade.
var rawRequest = &http.Request{Method: http.MethodGet, Header: http.Header{
	"Connection":            {"Upgrade"},
	"Upgrade":               {"websocket"},
	"Sec-Websocket-Version": {"13"},
	"Sec-Websocket-Key":     {"dGhlIHNhbXBsZSBub25jZQ=="},
}}

// noBuffered is a reader with nothing buffered: rawUpgrader only asks it how much.
var noBuffered = bufio.NewReaderSize(strings.NewReader(""), 16)

var errNoResponse = errors.New("socket: the handshake was answered already")

// rawHijacker hands rawUpgrader the connection. Upgrade answers refusals through it;
// none happen on rawRequest.
type rawHijacker struct {
	conn net.Conn
	rw   *bufio.ReadWriter
}

func (h *rawHijacker) Header() http.Header                          { return http.Header{} }
func (h *rawHijacker) Write([]byte) (int, error)                    { return 0, errNoResponse }
func (h *rawHijacker) WriteHeader(int)                              {}
func (h *rawHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) { return h.conn, h.rw, nil }

// rawConn is the websocket's connection: the raw one, less the second 101 rawUpgrader
// writes (fasthttp wrote the one the client reads), with any early bytes read first.
type rawConn struct {
	net.Conn
	answered bool   // the upgrader's 101 was dropped; set before the client's goroutines start
	early    []byte // sent by the client before the 101 (not allowed, but not lost)
}

func (c *rawConn) Write(p []byte) (int, error) {
	if !c.answered && bytes.HasPrefix(p, []byte("HTTP/1.1 101 ")) {
		c.answered = true
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// CloseWrite half-closes the connection when the one it wraps can (lingerClose): the
// client still reads what was written, close frame included.
func (c *rawConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

func (c *rawConn) Read(p []byte) (int, error) {
	if c.early != nil {
		return c.readEarly(p)
	}
	return c.Conn.Read(p)
}

//go:noinline
func (c *rawConn) readEarly(p []byte) (int, error) {
	n := copy(p, c.early)
	c.early = c.early[n:]
	if len(c.early) == 0 {
		c.early = nil
	}
	return n, nil
}
