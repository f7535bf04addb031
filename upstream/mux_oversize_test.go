package upstream

import (
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
)

// rawFrame is an unmasked server text frame header declaring n bytes (fin: the
// message's last), followed by payload, which may be shorter than n.
func rawFrame(op byte, fin bool, n uint64, payload string) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	b := binary.BigEndian.AppendUint64([]byte{b0, 127}, n)
	return append(b, payload...)
}

// A message whose header says it passes the read limit fails its call at once, never at
// the call's deadline, and the calls after it are answered without waiting for one:
// the call is failed from the id in its first bytes (-32005) and the rest dropped, or,
// when the length is absurd, the id cannot be found in those bytes, or the drop stalls
// past RequestTimeout, the socket is given up and dialed again (its calls fail over
// with "upstream unavailable").
func TestMuxOversizedFrameFailsPromptly(t *testing.T) {
	const limit = 64 << 10
	answer := func(id string) string { return `{"jsonrpc":"2.0","id":` + id + `,"result":"0x` }
	pad := strings.Repeat("ab", 100<<10) // 200 KiB: over the limit
	cases := []struct {
		name   string
		frames func(id string) []byte
		want   *proto.Error
		redial bool // the socket must be replaced
	}{
		{"absurd length 2^62, a short payload", func(id string) []byte {
			return rawFrame(opText, true, 1<<62, answer(id)+`1"}`)
		}, proto.ErrUnavailable, true},
		{"length with the top bit set", func(id string) []byte {
			return rawFrame(opText, true, 1<<63|5, answer(id)+`1"}`)
		}, proto.ErrUnavailable, true},
		{"absurd length in a continuation frame", func(id string) []byte {
			b := rawFrame(opText, false, uint64(len(answer(id))), answer(id))
			return append(b, rawFrame(opContinuation, true, 1<<40, "1234")...)
		}, proto.ErrUnavailable, true},
		{"over the limit, the upstream stalls after the id", func(id string) []byte {
			return rawFrame(opText, true, 1<<20, answer(id)+"12")
		}, proto.ErrResponseTooLarge, true},
		{"over the limit, sent whole", func(id string) []byte {
			msg := answer(id) + pad + `"}`
			return rawFrame(opText, true, uint64(len(msg)), msg)
		}, proto.ErrResponseTooLarge, false},
		{"over the limit, the id after the first bytes", func(id string) []byte {
			msg := `{"jsonrpc":"2.0","result":"0x` + pad + `","id":` + id + `}`
			return rawFrame(opText, true, uint64(len(msg)), msg)
		}, proto.ErrUnavailable, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeUpstream(t, false)
			frames := tc.frames
			f.raw.Store(&frames)
			m := startMux(t, f, func(c *MuxConfig) {
				c.Conns, c.ReadLimit = 1, limit
				c.RequestTimeout = time.Second // bounds a stalled drop
			})
			// The deadline is far: an error before it is the prompt failure asked for.
			_, err := callBody(m, `{"jsonrpc":"2.0","id":1,"method":"raw","params":[]}`, time.Now().Add(20*time.Second))
			if err != tc.want {
				t.Fatalf("the call that met the frame: %v, want %v", err, tc.want)
			}
			if tc.redial {
				waitFor(t, "the socket replaced", func() bool { return f.dialed.Load() >= 2 && m.slots[0].isUp.Load() })
			}
			if got := mustCall(t, m, `{"jsonrpc":"2.0","id":2,"method":"echo","params":[2]}`); got != `{"jsonrpc":"2.0","id":2,"result":[2]}` {
				t.Fatalf("the next call: %s", got)
			}
			if n := f.dialed.Load(); !tc.redial && n != 1 {
				t.Fatalf("the socket was replaced (%d dials)", n)
			}
		})
	}
}
