package load

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/infura-gateway/infura-gateway/bench/internal/rpcscan"
)

// wsVU holds one websocket. Only the VU's goroutine touches it, so the
// library's one-reader/one-writer rule holds without locks.
type wsVU struct {
	r      *Runner
	c      *websocket.Conn
	id     uint64
	out    []byte
	in     []byte
	idBuf  []byte
	subID  []byte
	notifs uint64
}

func newWSVU(r *Runner) *wsVU { return &wsVU{r: r} }

func (v *wsVU) dial(end time.Time) string {
	if err := CheckLoopback(v.r.tgt.URL); err != nil {
		return "not_loopback"
	}
	d := websocket.Dialer{
		HandshakeTimeout: min(v.r.cfg.Timeout, time.Until(end)),
		ReadBufferSize:   4096,
		WriteBufferSize:  4096,
	}
	c, resp, err := d.Dial(v.r.tgt.URL, nil)
	if err != nil {
		if errors.Is(err, websocket.ErrBadHandshake) {
			if resp != nil {
				return fmt.Sprintf("ws_handshake_%d", resp.StatusCode)
			}
			return "ws_handshake"
		}
		return classify(err)
	}
	c.SetReadLimit(64 << 20)
	v.c = c
	v.r.st.sockets.Store(c, struct{}{})
	if v.r.st.stopped.Load() {
		// Dialled while the run was being cancelled: the wake-up pass
		// may have missed this socket.
		_ = c.SetReadDeadline(time.Now())
	}
	n := v.r.st.conns.Add(1)
	for {
		p := v.r.st.peak.Load()
		if n <= p || v.r.st.peak.CompareAndSwap(p, n) {
			break
		}
	}
	return ""
}

func (v *wsVU) iterate(end time.Time) (time.Duration, string) {
	if !time.Now().Before(end) {
		return 0, ""
	}
	if v.c == nil {
		if kind := v.dial(end); kind != "" {
			return 0, kind
		}
		if v.r.tgt.Kind == WSIdle {
			v.r.st.ok.Add(1)
		}
	}
	switch v.r.tgt.Kind {
	case WSRPC:
		return v.request(end)
	case WSSub:
		return 0, v.subscribe(end)
	default:
		return 0, v.idle(end)
	}
}

// request sends one JSON-RPC request and waits for the reply with its id.
func (v *wsVU) request(end time.Time) (time.Duration, string) {
	v.id++
	v.idBuf = strconv.AppendUint(v.idBuf[:0], v.id, 10)
	v.out = append(v.out[:0], `{"jsonrpc":"2.0","id":`...)
	v.out = append(v.out, v.idBuf...)
	v.out = append(v.out, `,"method":"`...)
	v.out = append(v.out, v.r.tgt.RPCMethod...)
	v.out = append(v.out, `","params":`...)
	v.out = append(v.out, v.r.tgt.RPCParams...)
	v.out = append(v.out, '}')
	deadline := time.Now().Add(v.r.cfg.Timeout)
	if deadline.After(end) {
		deadline = end
	}
	t0 := time.Now()
	_ = v.c.SetWriteDeadline(deadline)
	if err := v.c.WriteMessage(websocket.TextMessage, v.out); err != nil {
		return time.Since(t0), wsErrKind(err)
	}
	_ = v.c.SetReadDeadline(deadline)
	for {
		msg, err := v.read()
		if err != nil {
			return time.Since(t0), wsErrKind(err)
		}
		var m rpcscan.Message
		if rpcscan.ParseObject(msg, 0, &m) < 0 {
			return time.Since(t0), "bad_json"
		}
		if m.ID == nil && m.Method != nil {
			continue // a notification, not our reply
		}
		d := time.Since(t0)
		if !bytes.Equal(m.ID, v.idBuf) {
			return d, "id_mismatch"
		}
		return d, validateRPC(msg, nil)
	}
}

// subscribe sends eth_subscribe newHeads once, then counts notifications
// for that subscription until the end of the run.
func (v *wsVU) subscribe(end time.Time) string {
	if v.subID == nil {
		_ = v.c.SetWriteDeadline(time.Now().Add(v.r.cfg.Timeout))
		if err := v.c.WriteMessage(websocket.TextMessage,
			[]byte(`{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]}`)); err != nil {
			return wsErrKind(err)
		}
		_ = v.c.SetReadDeadline(minTime(time.Now().Add(v.r.cfg.Timeout), end))
		for v.subID == nil {
			msg, err := v.read()
			if err != nil {
				return wsErrKind(err)
			}
			var m rpcscan.Message
			if rpcscan.ParseObject(msg, 0, &m) < 0 {
				return "bad_json"
			}
			if m.ID == nil {
				continue // a notification before our reply cannot be ours
			}
			if string(m.ID) != "1" {
				return "id_mismatch"
			}
			if kind := validateRPC(msg, nil); kind != "" {
				return kind
			}
			if len(m.Result) < 3 || m.Result[0] != '"' {
				return "bad_subscription_id"
			}
			v.subID = append([]byte(nil), m.Result...)
			v.r.st.ok.Add(1)
		}
	}
	_ = v.c.SetReadDeadline(end)
	for {
		t0 := time.Now()
		msg, err := v.read()
		if err != nil {
			return wsErrKind(err)
		}
		var m rpcscan.Message
		if rpcscan.ParseObject(msg, 0, &m) < 0 {
			return "bad_json"
		}
		if string(m.Method) != "eth_subscription" {
			return "unexpected_message"
		}
		if !bytes.Equal(m.Subscription, v.subID) {
			return "subscription_mismatch"
		}
		if rpcscan.Member(m.Params, "result") == nil {
			return "no_result"
		}
		v.notifs++
		v.r.st.notifs.Add(1)
		// The gap between notifications is what a subscriber experiences;
		// record it in the interval histogram only (for the progress line).
		v.r.st.interval.Load().Record(time.Since(t0))
	}
}

// idle holds the socket open without traffic until the end; any message or
// close from the server is an error.
func (v *wsVU) idle(end time.Time) string {
	_ = v.c.SetReadDeadline(end)
	if _, err := v.read(); err != nil {
		return wsErrKind(err)
	}
	return "unexpected_message"
}

func (v *wsVU) read() ([]byte, error) {
	_, r, err := v.c.NextReader()
	if err != nil {
		return nil, err
	}
	v.in = v.in[:0]
	for {
		if len(v.in) == cap(v.in) {
			v.in = append(v.in, 0)[:len(v.in)]
		}
		n, err := r.Read(v.in[len(v.in):cap(v.in)])
		v.in = v.in[:len(v.in)+n]
		if err == io.EOF {
			return v.in, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

func (v *wsVU) notifications() uint64 { return v.notifs }

func (v *wsVU) close() {
	if v.c == nil {
		return
	}
	_ = v.c.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	_ = v.c.Close()
	v.r.st.sockets.Delete(v.c)
	v.c = nil
	v.r.st.conns.Add(-1)
}

func wsErrKind(err error) string {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return fmt.Sprintf("ws_close_%d", ce.Code)
	}
	return classify(err)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
