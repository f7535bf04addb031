package socket

import (
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/infura-gateway/infura-gateway/proto"
)

// A drain closes each client only once the calls it has in flight are answered: the
// answers go out, then the close frame (1001, DrainReason) behind them. Calls the
// client sends meanwhile are refused (errDraining), so a busy client cannot hold the
// drain open. Closing at once, as before, cut the answers of the calls under way: the
// client never learned whether its eth_sendRawTransaction went out.

// drainState is a client's part in a drain (embedded in wsClient).
type drainState struct {
	draining atomic.Bool
	idle     chan struct{} // made before draining is set; a token when inFlight reaches 0
	// bye is closed once the drain's close frame is written, or will never be (the
	// queue dropped: closed otherwise). Under mu; nil when no drain close is queued.
	bye chan struct{}
}

// byeLocked closes bye, if a drain waits on it. Called with c.mu held.
func (c *wsClient) byeLocked() {
	if c.bye != nil {
		close(c.bye)
		c.bye = nil
	}
}

// drainQuit is the server's part: quit, closed by Close, ends every wait.
type drainQuit struct {
	made, ended sync.Once
	quit        chan struct{}
	waiting     sync.WaitGroup // one per drainClose under way
}

func (q *drainQuit) quitCh() chan struct{} {
	q.made.Do(func() { q.quit = make(chan struct{}) })
	return q.quit
}

// endDrains closes quit (once: Close may run more than once).
func (q *drainQuit) endDrains() {
	ch := q.quitCh()
	q.ended.Do(func() { close(ch) })
}

var errDraining = proto.NewError(proto.CodeServer, http.StatusServiceUnavailable,
	"gateway draining: this connection closes once its calls in flight are answered; reconnect")

// leave gives back n calls of inFlight and wakes a drain waiting for the last.
func (c *wsClient) leave(n int32) {
	left := c.inFlight.Add(-n)
	c.roomy()
	if left == 0 && c.draining.Load() {
		select {
		case c.idle <- struct{}{}:
		default:
		}
	}
}

// drainClose closes c for a drain once its calls in flight are answered, or at once
// when stop or quit closes first.
func (c *wsClient) drainClose(stop, quit <-chan struct{}) {
	c.idle = make(chan struct{}, 1)
	c.draining.Store(true) // admit counts a call in before it reads this: none is missed
	for c.inFlight.Load() > 0 {
		select {
		case <-c.idle:
		case <-stop:
			c.shutdown(websocket.CloseGoingAway, DrainReason)
			return
		case <-quit:
			c.shutdown(websocket.CloseGoingAway, DrainReason)
			return
		}
	}
	c.mu.Lock()
	if c.closed || c.closing {
		c.mu.Unlock()
		return
	}
	bye := make(chan struct{})
	c.bye = bye
	c.mu.Unlock()
	// Through the queue: the answers queued before it are written first. The drain
	// ends once it is written: the server's Close, which follows, would otherwise cut
	// the queue and say "server shutting down" instead.
	c.enqueue(outMsg{b: []byte(DrainReason), close: websocket.CloseGoingAway})
	select {
	case <-bye:
	case <-stop:
		c.shutdown(websocket.CloseGoingAway, DrainReason)
	case <-quit:
		c.shutdown(websocket.CloseGoingAway, DrainReason)
	}
}

// Drain refuses new clients and closes the current ones (1001, with a reconnect hint)
// spread evenly over window, rather than all at once: clients of a pod that goes away
// reconnect a few at a time onto the pods that stay, instead of in one burst that
// resubscribes everything at the same moment. Each is closed once its calls in flight
// are answered (drainClose). Drain returns when every client was closed, or when stop
// closes or Close runs: the clients still waiting on calls are closed at once then.
func (h *Server) Drain(window time.Duration, stop <-chan struct{}) {
	clients := h.stop()
	quit := h.quitCh()
	defer h.waiting.Wait()
	if len(clients) == 0 {
		return
	}
	step := window / time.Duration(len(clients))
	t := time.NewTimer(0)
	defer t.Stop()
	for _, c := range clients {
		select {
		case <-stop:
			return
		case <-quit:
			return
		case <-t.C:
		}
		h.waiting.Add(1)
		go func() { defer h.waiting.Done(); c.drainClose(stop, quit) }()
		t.Reset(step)
	}
}
