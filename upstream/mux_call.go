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
	kindSync  callKind = iota // Call: the caller blocks on done
	kindBatch                 // an element of CallBatch
	kindSub                   // eth_subscribe issued by the Mux for a subscription group
	kindFire                  // fire and forget (eth_unsubscribe): the answer is dropped
)

// call is one request in flight on one upstream socket.
//
// Ownership: the caller fills it and registers it under slot.mu; from then on exactly
// one of the reader (answer), the slot's deadline timer (expire) or the writer's sweep
// (connection lost) claims it under slot.mu and completes it. A call may return to the
// pool only when nobody else can still hold it: a timed-out call may still sit in the
// writer's queue, so it is left to the garbage collector instead (rare, never the hot
// path).
type call struct {
	kind callKind
	gid  uint64 // the gateway id the envelope carries
	req  []byte // the envelope sent upstream
	resp []byte // the answer, id replaced by id
	id   []byte // the id the answer must carry (raw JSON)

	claimed  bool  // under slot.mu
	deadline int64 // monoNs; under slot.mu while pending
	slot     *slot
	done     chan struct{} // kindSync: signalled once when complete, reused across requests
	// at is when the answer was read (the read syscall that brought it): the end of
	// the call's latency, so the caller need not read the clock again.
	at time.Time

	err      *proto.Error // set when completed without an upstream answer
	rpcError bool         // the answer carries an error member
	keep     bool         // may be recycled after completion

	batch *Batch     // kindBatch
	wait  *batchWait // kindBatch
	idx   int        // kindBatch: the request's index in batch
	group *group     // kindSub
}

var callPool = sync.Pool{New: func() any { return &call{done: make(chan struct{}, 1)} }}

func getCall(kind callKind) *call {
	c := callPool.Get().(*call)
	c.kind = kind
	return c
}

// maxPooledBuf is the largest buffer the upstream layer pools (the Mux's calls and
// reads, the HTTP pool's responses). It is over nearly every answer (a full block with
// its transactions is a few hundred KiB), so the hot paths keep reusing theirs; a larger
// buffer is allocated for its answer, a cost small beside reading that many bytes, and
// dropped after, instead of pinning up to -max-response-body in a pool, uncounted.
const maxPooledBuf = 1 << 20

func putCall(c *call) {
	if cap(c.req) > maxPooledBuf {
		c.req = nil
	}
	if cap(c.resp) > maxPooledBuf {
		c.resp = nil
	}
	c.req, c.resp, c.id = c.req[:0], c.resp[:0], c.id[:0]
	c.gid, c.claimed, c.slot, c.deadline, c.at = 0, false, nil, 0, time.Time{}
	c.err, c.rpcError, c.keep = nil, false, false
	c.batch, c.wait, c.idx, c.group = nil, nil, 0, nil
	callPool.Put(c)
}

// prepare writes the envelope of r with gateway id gid, and records the id the answer
// must carry.
func (c *call) prepare(r *proto.Request, id []byte, gid uint64) {
	var idBuf [20]byte
	c.gid = gid
	c.req = proto.AppendEnvelope(c.req[:0], strconv.AppendUint(idBuf[:0], gid, 10), r)
	c.id = append(c.id[:0], id...)
}
