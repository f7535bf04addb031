package upstream

import (
	"strconv"
	"sync"
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
)

// callKind says who waits for a call's answer.
type callKind uint8

const (
	kindSync  callKind = iota // Do: the caller blocks on done
	kindAsync                 // Send: the answer goes to sink.Reply
	kindSub                   // eth_subscribe issued by the Mux for a subscription group
	kindFire                  // fire and forget (eth_unsubscribe): the answer is dropped
)

// call is one request (a single object or a batch) in flight on one upstream socket.
//
// Ownership: the caller fills it and registers it under slot.mu; from then on exactly
// one of the reader (reply), the timer (deadline) or the writer (connection lost) claims
// it under slot.mu and completes it. A call may return to the pool only when nobody else
// can still hold it: a timed-out call may still sit in the writer's queue, so it is left
// to the garbage collector instead (rare, and never on the hot path).
type call struct {
	kind callKind
	req  []byte // the frame sent upstream, gateway ids spliced in
	resp []byte // the answer with the client's ids restored

	ids   []byte  // the client's ids, concatenated, as raw JSON
	idEnd []int32 // end offset in ids of each registered element's id
	seen  []bool  // batch: which elements were answered
	base  uint64  // first gateway id; element i has base+i
	n     int     // number of registered ids (elements expecting an answer)
	batch bool

	claimed bool // under slot.mu
	slot    *slot
	timer   *time.Timer
	done    chan struct{} // kindSync: signalled once when complete, reused across requests

	err      *proto.Error // set when completed without an upstream answer
	rpcError bool         // the (single) answer carries an error member
	keep     bool         // may be recycled after completion

	sink  Sink   // kindAsync
	group *group // kindSub
}

// callPool is filled in init: a call's timer refers back to the pool through onTimer.
var callPool sync.Pool

func init() {
	callPool.New = func() any {
		c := &call{done: make(chan struct{}, 1)}
		c.timer = time.AfterFunc(time.Hour, c.onTimer)
		c.timer.Stop()
		return c
	}
}

func getCall(kind callKind) *call {
	c := callPool.Get().(*call)
	c.kind = kind
	return c
}

// maxPooledBuf keeps one huge answer from pinning its buffer in the pool forever.
const maxPooledBuf = 1 << 20

func putCall(c *call) {
	if cap(c.req) > maxPooledBuf {
		c.req = nil
	}
	if cap(c.resp) > maxPooledBuf {
		c.resp = nil
	}
	c.req, c.resp, c.ids = c.req[:0], c.resp[:0], c.ids[:0]
	c.idEnd, c.seen = c.idEnd[:0], c.seen[:0]
	c.base, c.n, c.batch, c.claimed, c.slot = 0, 0, false, false, nil
	c.err, c.rpcError, c.keep, c.sink, c.group = nil, false, false, nil, nil
	callPool.Put(c)
}

// id returns the client's id of registered element i.
func (c *call) id(i int) []byte {
	start := int32(0)
	if i > 0 {
		start = c.idEnd[i-1]
	}
	return c.ids[start:c.idEnd[i]]
}

// prepare builds c.req from body with a gateway id spliced in place of every element's
// id, and records the client's ids. local holds comma-separated answers the caller made
// itself for batch elements it did not forward; they open the batch answer. ids is the
// Mux's id counter: the registered elements get one contiguous range.
func (c *call) prepare(body, local []byte, next func(n int) uint64) *proto.Error {
	var spans [maxInlineSpans]proto.Span
	var idSpans [maxInlineSpans]proto.Span
	elems, idsOf := spans[:0], idSpans[:0]
	var msg proto.Message
	switch proto.FirstByte(body) {
	case '{':
		end, err := proto.ScanMessage(body, &msg)
		if err != nil || proto.SkipWS(body, end) != len(body) {
			return proto.ErrParse
		}
		elems = append(elems, proto.Span{Start: 0, End: len(body)})
		idsOf = append(idsOf, msg.ID)
	case '[':
		c.batch = true
		it, err := proto.NewArrayIter(body)
		if err != nil {
			return proto.ErrParse
		}
		for {
			el, ok, err := it.Next()
			if err != nil {
				return proto.ErrParse
			}
			if !ok {
				break
			}
			if body[el.Start] != '{' {
				return proto.ErrInvalidRequest
			}
			if _, err := proto.ScanMessage(body[el.Start:el.End], &msg); err != nil {
				return proto.ErrParse
			}
			id := msg.ID
			if id.Present() {
				id.Start += el.Start
				id.End += el.Start
			}
			elems = append(elems, el)
			idsOf = append(idsOf, id)
		}
		if proto.SkipWS(body, it.Pos()) != len(body) {
			return proto.ErrParse
		}
	default:
		return proto.ErrInvalidRequest
	}
	n := 0
	for _, id := range idsOf {
		if id.Present() {
			n++
		}
	}
	c.n = n
	if n > 0 {
		c.base = next(n)
	}
	// Write the frame: the body with each id span replaced by its gateway id.
	gid := c.base
	prev := 0
	for _, id := range idsOf {
		if !id.Present() {
			continue
		}
		c.req = append(c.req, body[prev:id.Start]...)
		c.req = strconv.AppendUint(c.req, gid, 10)
		prev = id.End
		gid++
		c.ids = append(c.ids, body[id.Start:id.End]...)
		c.idEnd = append(c.idEnd, int32(len(c.ids)))
		if c.batch {
			c.seen = append(c.seen, false)
		}
	}
	c.req = append(c.req, body[prev:]...)
	if c.batch {
		c.resp = append(c.resp, '[')
		if len(local) > 0 {
			c.resp = append(c.resp, local...)
			c.resp = append(c.resp, ',')
		}
	}
	return nil
}

// maxInlineSpans sizes the stack arrays prepare starts with; a larger batch spills to
// the heap, which its size amortizes.
const maxInlineSpans = 16

// appendErrors writes the answer of a call completed without an upstream answer: an
// error carrying each client id (a batch keeps its local answers and gets one error per
// element).
func (c *call) appendErrors(e *proto.Error) {
	if !c.batch {
		c.resp = proto.AppendError(c.resp[:0], c.id(0), e)
		return
	}
	for i := 0; i < c.n; i++ {
		if c.seen[i] {
			continue
		}
		c.resp = proto.AppendError(c.resp, c.id(i), e)
		c.resp = append(c.resp, ',')
	}
	c.closeBatch()
}

// closeBatch ends the batch answer: drops the trailing comma and closes the array.
func (c *call) closeBatch() {
	if n := len(c.resp); n > 1 && c.resp[n-1] == ',' {
		c.resp = c.resp[:n-1]
	}
	c.resp = append(c.resp, ']')
}

// onTimer fires at the call's deadline (on its own goroutine).
func (c *call) onTimer() {
	s := c.slot
	if s == nil {
		return
	}
	s.mu.Lock()
	if c.claimed || c.slot != s {
		s.mu.Unlock()
		return
	}
	s.claimLocked(c)
	s.mu.Unlock()
	// The writer may still hold the call in its queue: never recycle it.
	s.m.complete(c, proto.ErrTimeout, false)
}
