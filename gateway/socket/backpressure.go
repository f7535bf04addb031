// Backpressure: a client that sends requests faster than it reads their answers is
// read no further until its queue has room, the way a node's own socket stops reading.
// Before, its reader ran on, each request refused for the in-flight limit was one more
// queued answer, and a client reading as fast as it could on loopback (ethers'
// Promise.all over many calls) was closed with 1008 "outbound queue full" with its
// subscriptions. What still overflows the queue (notifications to a client that does
// not read them) drops the client as before.

package socket

// waitRoom returns once the answers the client can be sent next fit its queue: the
// messages queued (notifications aside: they count in the bytes), the calls in flight
// and the eth_subscribe answers owed (each queues its answer) below -ws-client-queue,
// and under half of -ws-client-queue-bytes queued; at once when the client is closing.
// A client that stops reading is ended by the writer's timeout (drain), which wakes it.
// It reports whether it waited for a client still served: its pongs were not read
// meanwhile, and the read deadline its last message set is no measure of its silence.
func (c *wsClient) waitRoom() (paused bool) {
	cfg := c.h.cfg
	for waited := false; ; waited = true {
		c.mu.Lock()
		// Every Join is answered once (upstream.Sink) while the client lives: the
		// subscribe answers owed come as surely as a call's.
		owed := int(c.owed.Load())
		full := len(c.queue)-c.notes+int(c.inFlight.Load())+owed >= cfg.WSClientQueue || 2*c.queuedBytes >= cfg.WSClientQueueBytes
		done := c.closed || c.closing
		c.mu.Unlock()
		if !full || done {
			return waited && !done
		}
		if !waited { // once a pause, not once a wake-up
			c.h.calls.paused.Inc()
		}
		<-c.room
	}
}

// roomy tells a reader waiting in waitRoom to look again.
func (c *wsClient) roomy() {
	select {
	case c.room <- struct{}{}:
	default:
	}
}
