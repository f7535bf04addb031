package socket

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"slices"
)

// A client holding one subscription more than once (eth_subscribe twice with identical
// params on one connection) gets an id of its own for each extra holding, as geth gives
// every subscription its own id and sends each notification once per subscription. The
// registry shares one group, and one id, among all its holdings (upstream.Subscriptions
// counts a sink's), so the extra ids live here, per client: each notification of the
// group goes out once more under each extra id, and eth_unsubscribe of any of them ends
// one holding. A library keeping one handler per id would otherwise see its second
// handler replace the first. Nearly every client holds nothing twice: its table stays
// nil and Notify checks one pointer.

// heldSub is one subscription group the client holds, under c.aliasMu.
type heldSub struct {
	gw    string   // the group's id, the first holding's
	extra []string // the ids of the holdings past the first, oldest first
	gone  bool     // the first holding (gw) was unsubscribed while extras remain
}

// aliasTable is the published, immutable copy of the groups held with extra ids, for
// Notify to read without a lock.
type aliasTable struct{ subs []heldSub }

// heldIndex is the index of group gw in subs, -1 when it is not there.
func heldIndex(subs []heldSub, gw []byte) int {
	for i := range subs {
		if subs[i].gw == string(gw) {
			return i
		}
	}
	return -1
}

// publishLocked makes the groups held with extra ids (or with the first gone) Notify's.
func (c *wsClient) publishLocked() {
	var t *aliasTable
	for _, h := range c.held {
		if len(h.extra) > 0 || h.gone {
			if t == nil {
				t = new(aliasTable)
			}
			t.subs = append(t.subs, heldSub{gw: h.gw, extra: slices.Clone(h.extra), gone: h.gone})
		}
	}
	c.aliases.Store(t)
}

// holdReply records the holding a successful eth_subscribe answer gives the client and
// returns the answer to send: as it is, or, for a group it holds already, with a new id
// of its own in place of the group's. The registry calls Reply under its lock, before the
// group's next notification: the table is published before that notification.
func (c *wsClient) holdReply(msg []byte) []byte {
	gw, at := resultID(msg)
	if gw == nil {
		return msg
	}
	c.aliasMu.Lock()
	defer c.aliasMu.Unlock()
	i := heldIndex(c.held, gw)
	if i < 0 {
		c.held = append(c.held, heldSub{gw: string(gw)})
		return msg
	}
	h := &c.held[i]
	if h.gone { // held under extra ids only: the group's own id is free again
		h.gone = false
		c.publishLocked()
		return msg
	}
	id := newSubscriptionID()
	h.extra = append(h.extra, id)
	c.publishLocked()
	out := make([]byte, 0, len(msg)+len(id)-len(gw))
	return append(append(append(out, msg[:at]...), id...), msg[at+len(gw):]...)
}

// groupOf is the group id a client's subscription id stands for: the id itself for a
// group's first holding, the group's for an extra id; nil when the client holds nothing
// under id (the first holding of a group it still holds under extra ids included).
func (c *wsClient) groupOf(id []byte) []byte {
	c.aliasMu.Lock()
	defer c.aliasMu.Unlock()
	for _, h := range c.held {
		if h.gw == string(id) {
			if h.gone {
				return nil
			}
			return id
		}
		if slices.Contains(h.extra, string(id)) {
			return []byte(h.gw)
		}
	}
	return id // not recorded (a Mux answer of another shape): the registry decides
}

// released records that the holding under id, of group gw, has ended.
func (c *wsClient) released(id, gw []byte) {
	c.aliasMu.Lock()
	defer c.aliasMu.Unlock()
	c.releasedLocked(id, gw)
}

func (c *wsClient) releasedLocked(id, gw []byte) {
	i := heldIndex(c.held, gw)
	if i < 0 {
		return
	}
	h := &c.held[i]
	aliased := len(h.extra) > 0 || h.gone
	if bytes.Equal(id, gw) {
		h.gone = true
	} else {
		h.extra = slices.DeleteFunc(h.extra, func(x string) bool { return x == string(id) })
	}
	if h.gone && len(h.extra) == 0 { // no holding left
		c.held = slices.Delete(c.held, i, i+1)
	}
	if aliased {
		c.publishLocked()
	}
}

// releaseNewest ends the record of gw's newest holding (the registry ended one) and
// returns the id it was under.
func (c *wsClient) releaseNewest(gw []byte) []byte {
	c.aliasMu.Lock()
	defer c.aliasMu.Unlock()
	id := gw
	if i := heldIndex(c.held, gw); i >= 0 && len(c.held[i].extra) > 0 {
		x := c.held[i].extra
		id = []byte(x[len(x)-1])
	}
	c.releasedLocked(id, gw)
	return id
}

// notifyAliased sends frame, a notification of a group some of whose holdings have
// extra ids, once under each id the client holds it by.
func (c *wsClient) notifyAliased(t *aliasTable, frame []byte) {
	gw, at := notificationID(frame)
	i := heldIndex(t.subs, gw)
	if i < 0 {
		c.enqueue(outMsg{b: frame, note: true})
		return
	}
	h := &t.subs[i]
	if !h.gone {
		c.enqueue(outMsg{b: frame, note: true})
	}
	for _, id := range h.extra {
		buf := getMsgBuf()
		*buf = append(append(append((*buf)[:0], frame[:at]...), id...), frame[at+len(gw):]...)
		c.enqueue(outMsg{b: *buf, buf: buf, note: true})
	}
}

var (
	resultMember       = []byte(`,"result":"`)
	subscriptionMember = []byte(`"subscription":"`)
)

// resultID is the subscription id an eth_subscribe answer carries
// ({"jsonrpc":"2.0","id":…,"result":"<id>"}, the registry's shape) and its offset; nil
// for another shape.
func resultID(msg []byte) ([]byte, int) {
	i := bytes.LastIndex(msg, resultMember)
	if i < 0 || !bytes.HasSuffix(msg, []byte(`"}`)) {
		return nil, 0
	}
	at := i + len(resultMember)
	if at > len(msg)-2 {
		return nil, 0
	}
	id := msg[at : len(msg)-2]
	if bytes.IndexByte(id, '"') >= 0 || bytes.IndexByte(id, '\\') >= 0 {
		return nil, 0
	}
	return id, at
}

// notificationID is the subscription id of a notification frame and its offset; nil
// when the frame names none near its start (the member comes before the result).
func notificationID(frame []byte) ([]byte, int) {
	head := frame[:min(len(frame), 128)]
	i := bytes.Index(head, subscriptionMember)
	if i < 0 {
		return nil, 0
	}
	at := i + len(subscriptionMember)
	n := bytes.IndexByte(frame[at:], '"')
	if n < 0 || bytes.IndexByte(frame[at:at+n], '\\') >= 0 {
		return nil, 0 // not an id of ours: those hold no escapes
	}
	return frame[at : at+n], at
}

// newSubscriptionID is an id for an extra holding, of the registry's ids' shape (0x and
// 32 hex digits), random.
func newSubscriptionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "0x" + hex.EncodeToString(b[:])
}
