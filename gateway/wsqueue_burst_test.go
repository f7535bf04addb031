package gateway

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
)

// A burst of notifications (the logs of one block: hundreds on mainnet) is bounded by
// the client's byte budget (-ws-client-queue-bytes), not by -ws-client-queue, the
// count of the answers it is owed: a client reading as fast as it can fell behind the
// burst for a moment and was closed with 1008 "client too slow: outbound queue full".
// The audit: one transaction of 1,000 logs on geth --dev, a /socket2socket client
// subscribed to logs closed after 124-310 of them at the default 256, while geth's
// own socket delivered all 1,000. Here the client's writer is held on a large answer
// the client has not read yet while the burst comes, past the count and far under
// the bytes; then the client reads everything, and stays.
func TestNotificationBurstBoundedByBytes(t *testing.T) {
	cases := []struct {
		name  string
		burst int // notifications pushed while the writer is held
		twice bool
	}{
		{"a block's logs past -ws-client-queue", 40, false},
		{"held twice: each log under two ids", 20, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			const answerBytes = 10 << 20 // more than the socket buffers take: its write blocks
			answer := `"` + strings.Repeat("q", answerBytes) + `"`
			fake := startFakeUpstream(t, fakeRespond(func(r fakeRequest) fakeAnswer {
				if r.Method == "eth_getLogs" {
					return fakeAnswer{Result: answer}
				}
				return fakeAnswer{}
			}))
			gw := startGateway(t, fake.args("-cache=false", "-ws-client-queue", "4",
				"-ws-client-queue-bytes", strconv.Itoa(25<<20), "-ws-client-write-timeout", "5m")...)
			gw.waitUpstreams(t)

			// The subscriber: a raw client with a small receive buffer.
			c, r := dialSlowSocket(t, gw)
			holdings := 1
			if tc.twice {
				holdings = 2
			}
			for i := range holdings {
				if _, err := c.Write(maskedFrame(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"eth_subscribe","params":["logs",{}]}`, i+1))); err != nil {
					t.Fatal(err)
				}
				if _, msg, err := readServerMessage(r); err != nil || !strings.Contains(string(msg), `"result":"0x`) {
					t.Fatalf("subscribe: %s %v", msg, err)
				}
			}
			// A witness holding the same subscription, reading as it comes.
			w := dialWS(t, gw.WSURL, nil)
			if got := string(w.call(`{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["logs",{}]}`)); !strings.Contains(got, `"result":"0x`) {
				t.Fatalf("witness subscribe: %s", got)
			}
			// The subscriber's writer is held: a 10 MiB answer has begun, the client
			// reads no further for now.
			if _, err := c.Write(maskedFrame(`{"jsonrpc":"2.0","id":9,"method":"eth_getLogs","params":[{}]}`)); err != nil {
				t.Fatal(err)
			}
			var h [2]byte
			if _, err := io.ReadFull(r, h[:]); err != nil || h[0] != 0x81 || h[1]&0x7f != 127 {
				t.Fatalf("the answer's frame: % x %v", h, err)
			}
			sub := fake.subscriptionFor(`["logs",{}]`)
			logAt := func(i int) string {
				return fmt.Sprintf(`{"address":"0x%040x","topics":[],"data":"0x","blockNumber":"0x10","logIndex":"0x%x","removed":false}`, i, i)
			}
			for i := range tc.burst {
				if !fake.notify(sub, logAt(i)) {
					t.Fatal("no upstream subscription")
				}
			}
			// The witness has the last log: every log was handed to the subscriber before
			// it (one group, its notifications in order).
			for i := 0; i < tc.burst; {
				if m := string(w.next()); strings.Contains(m, `"eth_subscription"`) {
					if !strings.Contains(m, fmt.Sprintf(`"logIndex":"0x%x"`, i)) {
						t.Fatalf("witness: log %d out of order: %s", i, m)
					}
					i++
				}
			}
			if n := gw.metric(t, "gateway_ws_slow_clients_dropped_total"); n != 0 {
				t.Fatalf("%d clients dropped as slow during a burst of %d logs (%d ids) under the byte budget", int(n), tc.burst, holdings)
			}
			// The subscriber reads on: the answer, then every log under each of its ids.
			if err := skipPayload(r, h[1]); err != nil {
				t.Fatalf("the rest of the answer: %v", err)
			}
			for i := range tc.burst {
				for range holdings {
					_, msg, err := readServerMessage(r)
					if err != nil || !strings.Contains(string(msg), fmt.Sprintf(`"logIndex":"0x%x"`, i)) {
						t.Fatalf("log %d: %s %v", i, msg, err)
					}
				}
			}
			if n := gw.metric(t, "gateway_ws_slow_clients_dropped_total"); n != 0 {
				t.Fatalf("%d clients dropped", int(n))
			}
		})
	}
}
