package gateway

import (
	"io"
	"testing"
)

// gateway_ws_slow_clients_dropped_total counts the clients the gateway closed as too
// slow (queue overflow, a write past -ws-client-write-timeout), not a client that
// closed the connection itself while an answer was being written to it: the reader's
// end sets the write deadline to now to free the writer, and the write it fails is no
// write that waited -ws-client-write-timeout (5 m here).
func TestSlowClientCounterNotForAClientThatClosed(t *testing.T) {
	const answerBytes = 10 << 20 // more than the socket buffers take: its write blocks
	gw := startLogsGateway(t, answerBytes, "-cache=false", "-ws-client-write-timeout", "5m")
	c, r := dialSlowSocket(t, gw)
	if _, err := c.Write(maskedFrame(`{"jsonrpc":"2.0","id":1,"method":"eth_getLogs","params":[{}]}`)); err != nil {
		t.Fatal(err)
	}
	// The answer's frame has begun: it is being written, and the client reads no further.
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil || h[0] != 0x81 || h[1]&0x7f != 127 {
		t.Fatalf("the answer's frame: % x %v", h, err)
	}
	// The client closes (1000, normal closure): a masked close frame.
	mask := [4]byte{1, 2, 3, 4}
	closeFrame := append([]byte{0x88, 0x80 | 2}, mask[:]...)
	closeFrame = append(closeFrame, 0x03^mask[0], 0xe8^mask[1])
	if _, err := c.Write(closeFrame); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the connection ended", func() bool { return gw.metric(t, "gateway_ws_client_connections") == 0 })
	if n := gw.metric(t, "gateway_ws_slow_clients_dropped_total"); n != 0 {
		t.Fatalf("gateway_ws_slow_clients_dropped_total = %v for a client that closed itself", n)
	}
}
