package loadgen

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fasthttp/websocket"
)

// How a worker reaches the gateway: JSON-RPC over HTTP or over its websocket, and the
// failures each can end in.

// failure is a classified error of one request.
type failure struct {
	kind         ErrorKind
	status, code int
	detail       string
}

func (f *failure) Error() string { return string(f.kind) + ": " + f.detail }

type envelope struct {
	ID     json.RawMessage `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// rpc makes one call on the worker's transport and returns its result, or a *failure.
func (w *worker) rpc(method string, params []any) (json.RawMessage, error) {
	w.seq++
	id := uint64(w.id+1)<<40 | w.seq
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": params})
	var out []byte
	var err error
	if w.http != nil {
		out, err = w.post(body)
	} else {
		out, err = w.wsCall(body, id)
	}
	if err != nil {
		return nil, err
	}
	var env envelope
	if err := json.Unmarshal(out, &env); err != nil {
		return nil, &failure{kind: KindBadAnswer, detail: fmt.Sprintf("not a JSON-RPC answer: %.200s", out)}
	}
	if string(env.ID) != strconv.FormatUint(id, 10) {
		return nil, &failure{kind: KindBadAnswer, detail: fmt.Sprintf("answer id %s to request id %d: %.200s", env.ID, id, out)}
	}
	if env.Error != nil {
		return nil, &failure{kind: KindRPC, code: env.Error.Code, detail: env.Error.Message}
	}
	if env.Result == nil {
		return nil, &failure{kind: KindBadAnswer, detail: fmt.Sprintf("no result: %.200s", out)}
	}
	return env.Result, nil
}

func (w *worker) post(body []byte) ([]byte, error) {
	resp, err := w.http.Post(w.l.cfg.URL, "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, transportFailure(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, transportFailure(err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &failure{kind: KindHTTP, status: resp.StatusCode, detail: fmt.Sprintf("%s: %.200s", resp.Status, out)}
	}
	return out, nil
}

func (w *worker) wsCall(body []byte, id uint64) ([]byte, error) {
	deadline := time.Now().Add(w.l.cfg.Timeout)
	if w.ws == nil {
		d := websocket.Dialer{HandshakeTimeout: w.l.cfg.Timeout}
		c, resp, err := d.Dial(w.l.cfg.URL, nil)
		if err != nil {
			if resp != nil {
				return nil, &failure{kind: KindHTTP, status: resp.StatusCode, detail: "websocket handshake: " + err.Error()}
			}
			return nil, transportFailure(fmt.Errorf("websocket dial: %w", err))
		}
		w.ws = c
	}
	fail := func(err error) ([]byte, error) {
		_ = w.ws.Close()
		w.ws = nil // a new socket for the next request
		return nil, transportFailure(err)
	}
	_ = w.ws.SetWriteDeadline(deadline)
	if err := w.ws.WriteMessage(websocket.TextMessage, body); err != nil {
		return fail(err)
	}
	_ = w.ws.SetReadDeadline(deadline)
	want := strconv.FormatUint(id, 10)
	for {
		_, msg, err := w.ws.ReadMessage()
		if err != nil {
			return fail(err)
		}
		var env struct {
			ID json.RawMessage `json:"id"`
		}
		// Anything else (a notification, an answer to an abandoned request) is skipped.
		if json.Unmarshal(msg, &env) == nil && string(env.ID) == want {
			return msg, nil
		}
	}
}

func transportFailure(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) {
		return &failure{kind: KindTimeout, detail: err.Error()}
	}
	kind := KindTransport
	if errors.Is(err, syscall.ECONNREFUSED) {
		kind = KindRefused
	}
	return &failure{kind: kind, detail: err.Error()}
}

func quantity(n uint64) string { return "0x" + strconv.FormatUint(n, 16) }

func isQuantity(s string) bool {
	if !strings.HasPrefix(s, "0x") || len(s) < 3 {
		return false
	}
	for _, c := range s[2:] {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func parseQuantity(s string) (uint64, error) {
	if !strings.HasPrefix(s, "0x") || len(s) < 3 {
		return 0, fmt.Errorf("not a quantity: %q", s)
	}
	return strconv.ParseUint(s[2:], 16, 64)
}
