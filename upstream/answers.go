package upstream

import (
	"errors"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"
)

// AnswerBudget bounds the bytes of upstream answers the gateway holds at once, every
// pool and Mux of a process together (-max-answer-bytes). Each answer is bounded by
// -max-response-body alone; without a bound on their sum, forty clients asking for
// 30 MB answers at once drove the gateway to 1.9 GB. An answer's bytes are reserved as
// they are read from the upstream (HTTP: every read of its connection, from the
// header on, and the body the header declares before it is read; websocket: every
// frame, from its header's length) and given back when
// the upstream layer hands the answer over (Pool.call, Pool.callBatch) or has routed
// it to its call (Mux reader); the gateway counts it again with Hold while it writes
// it to a client, until the last byte is written. Answers that wait on others are
// counted while they wait: a batch's until its Reset (Batch.count), an eth_getLogs
// chunk's until its query's answer is assembled (gateway/logs). What is left out is
// the hand-over from one count to the next, which waits on neither the network nor a
// client. An answer that does not fit fails with proto.ErrAnswerBudget
// (503): the gateway's limit, not the upstream's fault.
//
// The first AnswerFloor bytes of every answer always fit and are not counted, so small
// answers still get through while a few huge ones hold the budget, and touch no shared
// counter (one every request wrote would pass its cache line between the cores on
// every request); the memory held may pass the limit by that much per answer being
// read. A larger answer costs one atomic add per read past its floor (two on a
// refusal): no lock, no allocation, no clock. A nil budget bounds nothing.
type AnswerBudget struct {
	limit int64
	held  atomic.Int64
	// refused counts the answers refused, by transport.
	refused [numTransports]*metrics.Counter
}

// AnswerFloor is what every answer may hold whatever the budget: more than almost
// every cheap call's answer (a block header, a receipt, a balance). Answers up to it
// are never counted, read or written (the gateway's held bodies start past it).
const AnswerFloor = 64 << 10

// errAnswerBudget is how a read refused by the budget ends: the connection it was
// read from is closed, never reused with the rest of the answer unread.
var errAnswerBudget = errors.New("upstream answer refused: the gateway holds its answer byte budget (-max-answer-bytes)")

// NewAnswerBudget returns a budget of limit bytes, its metrics in reg (nil: none).
func NewAnswerBudget(limit int64, reg *Registry) *AnswerBudget {
	b := &AnswerBudget{limit: limit}
	for t := range b.refused {
		b.refused[t] = new(metrics.Counter)
	}
	if reg == nil {
		return b
	}
	reg.Gauge("gateway_upstream_answer_bytes_held", "Bytes of upstream answers being read, not yet handed over or being written to a client, every upstream together, past each answer's first 64 KiB (bounded by -max-answer-bytes).",
		func() float64 { return float64(b.held.Load()) })
	reg.Gauge("gateway_upstream_answer_bytes_limit", "The bound of gateway_upstream_answer_bytes_held (-max-answer-bytes).",
		func() float64 { return float64(b.limit) })
	for t := range b.refused {
		b.refused[t] = reg.Counter(`gateway_upstream_answer_budget_refusals_total{transport="`+Transport(t).String()+`"}`,
			"Upstream answers refused (503) because the gateway held -max-answer-bytes of answers, by transport.")
	}
	return b
}

// Held is the bytes reserved now.
func (b *AnswerBudget) Held() int64 { return b.held.Load() }

// Limit is the budget's bound.
func (b *AnswerBudget) Limit() int64 { return b.limit }

// grow reserves n more bytes for an answer that holds had already, read over t: the
// part past the answer's floor. On false nothing was reserved and the refusal is
// counted: the caller stops reading the answer.
func (b *AnswerBudget) grow(had, n int64, t Transport) bool {
	over := had + n - AnswerFloor
	if b == nil || over <= 0 {
		return true
	}
	add := min(n, over)
	if b.held.Add(add) <= b.limit {
		return true
	}
	b.held.Add(-add)
	b.refused[t].Inc()
	return false
}

// Hold counts an answer of size bytes (past its floor) that the gateway is writing to
// a client, until Release with what it returned. An answer handed over is still in
// memory until its last byte is written, which a slow client may stretch to
// -write-timeout; counted, it makes the reads of other large answers refuse meanwhile.
// Unlike grow it never refuses: the bytes are held already.
func (b *AnswerBudget) Hold(size int) int64 {
	n := reserved(int64(size))
	if b == nil || n == 0 {
		return 0
	}
	b.held.Add(n)
	return n
}

// Recount makes what an answer being gathered from parts holds (*held, counted here)
// the reservation of its total bytes so far. Like Hold it never refuses: each part was
// counted as it was read, and is counted here before that count ends.
func (b *AnswerBudget) Recount(held *int64, total int) {
	if n := reserved(int64(total)); b != nil && n > *held {
		b.held.Add(n - *held)
		*held = n
	}
}

// Release gives back what Hold returned.
func (b *AnswerBudget) Release(n int64) { b.release(n) }

// reserved is what grow reserved in all for an answer of total bytes.
func reserved(total int64) int64 { return max(0, total-AnswerFloor) }

// release gives back n bytes reserved with grow (reserved of the answers' totals).
func (b *AnswerBudget) release(n int64) {
	if b != nil && n != 0 {
		b.held.Add(-n)
	}
}
