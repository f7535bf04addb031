package fixednode

import (
	"io"
	"sync"
	"time"

	"github.com/fasthttp/websocket"
)

// wsWriteTimeout bounds a write to one websocket so a stalled peer cannot
// hold the head ticker: the peer is dropped instead.
const wsWriteTimeout = 5 * time.Second

// wsConn is one websocket peer. The read loop owns reading; writes (replies
// and head notifications) are serialized by mu, as the library allows one
// writer at a time.
type wsConn struct {
	c    *websocket.Conn
	mu   sync.Mutex // guards writes on c and subs
	subs []uint64
}

func (w *wsConn) write(msg []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	_ = w.c.SetWriteDeadline(time.Now().Add(wsWriteTimeout))
	return w.c.WriteMessage(websocket.TextMessage, msg)
}

func (w *wsConn) subCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.subs)
}

// unsubscribe removes the subscription whose quoted hex id is p.
func (w *wsConn) unsubscribe(p []byte) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	var buf [24]byte
	for i, id := range w.subs {
		if string(appendSubID(buf[:0], id)) == string(p) {
			w.subs = append(w.subs[:i], w.subs[i+1:]...)
			return true
		}
	}
	return false
}

// serveWS runs the read loop of one upgraded connection until it fails.
func (n *Node) serveWS(c *websocket.Conn) {
	c.SetReadLimit(32 << 20)
	wc := &wsConn{c: c}
	n.mu.Lock()
	n.conns[wc] = struct{}{}
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		delete(n.conns, wc)
		n.mu.Unlock()
		_ = c.Close()
	}()

	s := &session{c: wc}
	var in, out []byte
	for {
		mt, r, err := c.NextReader()
		if err != nil {
			return
		}
		if mt != websocket.TextMessage && mt != websocket.BinaryMessage {
			continue
		}
		// Read into a buffer reused across messages: ReadMessage would
		// allocate a new slice per frame.
		in = in[:0]
		for {
			if len(in) == cap(in) {
				in = append(in, 0)[:len(in)]
			}
			k, err := r.Read(in[len(in):cap(in)])
			in = in[:len(in)+k]
			if err == io.EOF {
				break
			}
			if err != nil {
				return
			}
		}
		out = n.Process(out[:0], in, s)
		if len(out) > 0 {
			if err := wc.write(out); err != nil {
				return
			}
		}
		if len(s.newSubs) > 0 {
			wc.mu.Lock()
			wc.subs = append(wc.subs, s.newSubs...)
			wc.mu.Unlock()
			s.newSubs = s.newSubs[:0]
		}
	}
}

// notifyHeads sends the newHeads notification for h to every subscription.
// Writes happen one connection at a time from the ticker goroutine; a peer
// that cannot take a write within wsWriteTimeout is closed.
func (n *Node) notifyHeads(h *head) {
	n.mu.Lock()
	conns := make([]*wsConn, 0, len(n.conns))
	for wc := range n.conns {
		conns = append(conns, wc)
	}
	n.mu.Unlock()

	var msg []byte
	for _, wc := range conns {
		wc.mu.Lock()
		var failed bool
		for _, id := range wc.subs {
			msg = append(msg[:0], `{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":`...)
			msg = appendSubID(msg, id)
			msg = append(msg, `,"result":`...)
			msg = append(msg, h.header...)
			msg = append(msg, "}}"...)
			_ = wc.c.SetWriteDeadline(time.Now().Add(wsWriteTimeout))
			if err := wc.c.WriteMessage(websocket.TextMessage, msg); err != nil {
				failed = true
				break
			}
		}
		wc.mu.Unlock()
		if failed {
			_ = wc.c.Close()
		}
	}
}
