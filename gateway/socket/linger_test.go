package socket

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// A connection the gateway closes while the client still has its backlog to read, and
// still sends (pongs, requests): the client reads the whole backlog, then the end of the
// stream, not a reset. Closed outright, data arriving after the close resets the socket
// and what the client's window had not taken yet (the close frame last) is lost.
func TestLingerCloseDeliversTheBacklog(t *testing.T) {
	// A small window on the client's side: most of the backlog waits in the server's
	// send buffer when it closes.
	client, server := tcpPair(t, 64<<10)
	if err := server.(*net.TCPConn).SetWriteBuffer(2 << 20); err != nil {
		t.Fatal(err)
	}
	backlog := bytes.Repeat([]byte("0123456789abcdef"), 32<<10) // 512 KiB
	backlog = append(backlog, "the close frame"...)
	if _, err := server.Write(backlog); err != nil {
		t.Fatal(err)
	}
	closing := make(chan struct{})
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		close(closing)
		lingerClose(server)
	}()
	<-closing
	// The client answers what it has read so far (a pong), as it would mid-backlog.
	if _, err := client.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	_ = client.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, err := io.ReadAll(client)
	if err != nil {
		t.Fatalf("read %d of %d bytes, then %v: want all of them and the end of the stream", len(got), len(backlog), err)
	}
	if !bytes.Equal(got, backlog) {
		t.Fatalf("read %d bytes, want the %d written", len(got), len(backlog))
	}
	// The client leaves: the linger ends with it, well before its bound.
	client.Close()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("lingerClose did not return after the client closed")
	}
	if _, err := server.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("after lingerClose the connection is not closed: write %v", err)
	}
}

// The websocket a client gets (takeOver) half-closes as its TCP connection does: without
// it, lingerClose would close outright.
func TestTakenOverSocketClosesWriteSide(t *testing.T) {
	client, server := tcpPair(t, 0)
	ws, err := takeOver(server)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	cw, ok := ws.NetConn().(interface{ CloseWrite() error })
	if !ok {
		t.Fatalf("%T has no CloseWrite: lingerClose would reset a slow client", ws.NetConn())
	}
	if err := cw.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	_ = client.SetReadDeadline(time.Now().Add(30 * time.Second))
	if n, err := client.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("client read %d bytes, %v: want the end of the stream", n, err)
	}
}

// tcpPair returns both ends of a loopback TCP connection, the client's read buffer set to
// readBuffer when not 0; the client end is closed with the test.
func tcpPair(t *testing.T, readBuffer int) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	if readBuffer > 0 {
		if err := client.(*net.TCPConn).SetReadBuffer(readBuffer); err != nil {
			t.Fatal(err)
		}
	}
	if server, err = ln.Accept(); err != nil {
		t.Fatal(err)
	}
	return client, server
}
