package gateway

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
)

// The answers owed to eth_subscribe calls count in the reader's backpressure as the
// answers of calls in flight do: a client that sends subscribes faster than it reads is
// read no further until they fit its queue. Before, a subscribe was not in flight (its
// answer comes later from the subscription), the reader read on, and the answers
// overflowed the queue: the client was closed with 1008 (the review: 10 subscribes
// behind an answer being written, -ws-client-queue 4).
func TestSubscribeAnswersHoldTheReader(t *testing.T) {
	const answerBytes = 10 << 20 // more than the socket buffers take: its write blocks
	gw := startLogsGateway(t, answerBytes, "-cache=false", "-ws-client-queue", "4",
		"-ws-client-queue-bytes", strconv.Itoa(25<<20), "-ws-client-write-timeout", "5m")
	c, r := dialSlowSocket(t, gw)
	if _, err := c.Write(maskedFrame(`{"jsonrpc":"2.0","id":1,"method":"eth_getLogs","params":[{}]}`)); err != nil {
		t.Fatal(err)
	}
	// The answer's frame has begun: it is being written, and the client reads no further.
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil || h[0]&0x0f != 1 {
		t.Fatalf("the answer's frame: % x %v", h, err)
	}
	const subs = 10
	var batch []byte
	for i := range subs {
		batch = append(batch, maskedFrame(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"eth_subscribe","params":["logs",{"address":"0x%040x"}]}`, 10+i, i+1))...)
	}
	if _, err := c.Write(batch); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the reader paused, or the client dropped", func() bool {
		return gw.metric(t, "gateway_ws_client_reads_paused_total") >= 1 || gw.metric(t, "gateway_ws_slow_clients_dropped_total") >= 1
	})
	// Read on: the rest of the answer, then every subscribe's answer, the connection open.
	if err := skipPayload(r, h[1]); err != nil {
		t.Fatalf("the rest of the answer: %v", err)
	}
	for range subs {
		op, msg, err := readServerMessage(r)
		if err != nil || op != 1 || !strings.Contains(string(msg), `"result":"0x`) {
			t.Fatalf("a subscribe's answer: op %d %s %v (slow clients dropped: %v)", op, msg, err,
				gw.metric(t, "gateway_ws_slow_clients_dropped_total"))
		}
	}
	if n := gw.metric(t, "gateway_ws_slow_clients_dropped_total"); n != 0 {
		t.Fatalf("%v clients dropped", n)
	}
}

// skipPayload reads past the payload of a server frame whose second header byte is b1
// (unmasked; the gateway writes an answer as one frame).
func skipPayload(r *bufio.Reader, b1 byte) error {
	n, err := payloadLen(r, b1)
	if err != nil {
		return err
	}
	_, err = r.Discard(int(n))
	return err
}

// readServerMessage reads one whole message (its frames) the server sent.
func readServerMessage(r *bufio.Reader) (op byte, msg []byte, err error) {
	for {
		var h [2]byte
		if _, err := io.ReadFull(r, h[:]); err != nil {
			return 0, nil, err
		}
		n, err := payloadLen(r, h[1])
		if err != nil {
			return 0, nil, err
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(r, p); err != nil {
			return 0, nil, err
		}
		if op == 0 {
			op = h[0] & 0x0f
		}
		msg = append(msg, p...)
		if h[0]&0x80 != 0 {
			return op, msg, nil
		}
	}
}

func payloadLen(r *bufio.Reader, b1 byte) (uint64, error) {
	switch n := uint64(b1 & 0x7f); n {
	case 126:
		var b [2]byte
		_, err := io.ReadFull(r, b[:])
		return uint64(binary.BigEndian.Uint16(b[:])), err
	case 127:
		var b [8]byte
		_, err := io.ReadFull(r, b[:])
		return binary.BigEndian.Uint64(b[:]), err
	default:
		return n, nil
	}
}
