package upstream

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// An upstream whose handshake answer never ends its header (one endless line) is
// refused once the answer passes 64 KiB: net/http's reader grows a header line without
// bound, which until the dial's deadline was memory the upstream chose.
func TestHandshakeAnswerBounded(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop); _ = ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		_, _ = c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nX-Endless: "))
		line := []byte(strings.Repeat("a", 64<<10))
		for range 16 { // 1 MiB of one header line, never ended
			if _, err := c.Write(line); err != nil {
				return
			}
		}
		<-stop
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	w, err := dialWire(ctx, "ws://"+ln.Addr().String()+"/", nil, nil, 20*time.Second, 1<<20, NewMetrics(NewRegistry(), "test"))
	if err == nil {
		_ = w.mc.Close()
		t.Fatal("a handshake answer with an endless header was accepted")
	}
	if !errors.Is(err, errHandshakeTooLarge) {
		t.Fatalf("dial: %v, want %v", err, errHandshakeTooLarge)
	}
}
