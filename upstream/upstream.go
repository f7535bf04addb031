// Package upstream talks to an Ethereum node: Pool sends JSON-RPC over pooled HTTP
// connections, Mux multiplexes it over a few shared websocket connections. Both write
// every request themselves from a proto.Request (the fixed envelope, a gateway id, the
// decoded method, the canonical params) and give the answer back with the id the
// caller asked for, so the client's bytes never reach the node outside params.
package upstream

import (
	"sync"

	"github.com/infura-gateway/infura-gateway/proto"
	"github.com/infura-gateway/infura-gateway/tracing"
)

// Batch is a batch of requests sent to one upstream in one exchange, and its answers
// in request order. The caller fills Reqs and IDs (the id each answer must carry, raw
// JSON); CallBatch fills the answers. A Batch is reused with Reset, which must come
// once its answers are used: until then they are counted in the answer budget.
type Batch struct {
	Reqs []*proto.Request
	IDs  [][]byte
	// Trace is the batch's tracing state (its span, request id); nil: none.
	Trace *tracing.Call

	mu   sync.Mutex
	body []byte // every answer, ids already replaced
	// answers is the budget body is counted in while it holds answers (nil: none), held
	// what is counted: the answers filed here stay counted until Reset, as they wait for
	// the batch's other answers and are copied into the client's answer. Without it a
	// batch's answers left the budget as each was filed, and concurrent batches held
	// many times -max-answer-bytes.
	answers *AnswerBudget
	held    int64
	spans   []proto.Span // answer i is body[spans[i]]; zero when there is none
	errs    []*proto.Error
	// refused is the provider's refusal found among the answers (refusals), for the
	// router's gate: class and stated back-off.
	refused note
}

// refusals looks for the provider refusing elements of an answered batch (Alchemy's
// in-body 429, a quota or key error per element): those elements lose the provider's
// answer, which may quote its dashboard URL and key, for the gateway's refusal, and the
// batch's error is that refusal, so the router backs off from the upstream and tries
// the batch on another. Only error answers are classified: a batch of results costs
// one check per element.
func (b *Batch) refusals(cls *Classifier) *proto.Error {
	b.refused = note{}
	var perr *proto.Error
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, sp := range b.spans {
		if !sp.Present() {
			continue
		}
		ans := sp.Bytes(b.body)
		if !proto.IsErrorResponse(ans) {
			continue
		}
		n := cls.classifyBody(0, ans, nil, b.Reqs[i].Name)
		e := providerRefusal(n.class)
		if e == nil {
			continue
		}
		b.spans[i], b.errs[i] = proto.Span{}, e
		if n.class == AnswerMethodRefused {
			// The element's method only: the batch's other answers stand, and the
			// upstream is not backed off for it.
			continue
		}
		if perr == nil || n.backoff > b.refused.backoff {
			perr, b.refused = e, n
		}
	}
	return perr
}

// Reset empties b for reuse, keeping its buffers (the answers' only when small) and
// giving back the bytes its answers held in the budget.
func (b *Batch) Reset() {
	clear(b.Reqs)
	clear(b.IDs)
	b.uncount()
	if cap(b.body) > maxPooledBuf {
		b.body = nil // one huge batch answer must not pin its buffer in a pool
	}
	b.Reqs, b.IDs, b.body, b.Trace = b.Reqs[:0], b.IDs[:0], b.body[:0], nil
	b.spans, b.errs = b.spans[:0], b.errs[:0]
}

// count counts what body holds past the floor. It never refuses: the answers were
// counted as they were read, and are counted here before the read's count ends (the
// Mux reader settles after routing, the pool releases after filing). Under b.mu.
func (b *Batch) count() { b.answers.Recount(&b.held, len(b.body)) }

// uncount gives back what body's answers held. Under b.mu, or with b owned.
func (b *Batch) uncount() {
	b.answers.release(b.held)
	b.held = 0
}

// Add appends a request and the id its answer must carry.
func (b *Batch) Add(r *proto.Request, id []byte) {
	b.Reqs = append(b.Reqs, r)
	b.IDs = append(b.IDs, id)
}

// class is the batch's method class for health: a single request's own; a longer
// batch is judged as an expensive call, since its length is the client's choice.
func (b *Batch) class() proto.Class {
	if len(b.Reqs) == 1 {
		return b.Reqs[0].Class()
	}
	return proto.ClassCall
}

// Len is the number of requests.
func (b *Batch) Len() int { return len(b.Reqs) }

// Answer returns the answer to request i (valid until Reset), or the error that stands
// in for it.
func (b *Batch) Answer(i int) ([]byte, *proto.Error) {
	if i < len(b.spans) && b.spans[i].Present() {
		return b.spans[i].Bytes(b.body), nil
	}
	if i < len(b.errs) && b.errs[i] != nil {
		return nil, b.errs[i]
	}
	return nil, proto.ErrBadUpstream
}

// start sizes the answer slots before a call whose answers are counted in answers.
func (b *Batch) start(answers *AnswerBudget) {
	n := len(b.Reqs)
	b.mu.Lock()
	b.uncount()
	b.answers, b.body, b.refused = answers, b.body[:0], note{}
	b.mu.Unlock()
	b.spans = append(b.spans[:0], make([]proto.Span, n)...)
	b.errs = append(b.errs[:0], make([]*proto.Error, n)...)
}

// setAnswer stores ans, with its id span replaced by the id request i asked for.
func (b *Batch) setAnswer(i int, ans []byte, idSpan proto.Span) {
	b.mu.Lock()
	start := len(b.body)
	b.body = proto.Splice(b.body, ans, idSpan, b.IDs[i])
	b.spans[i] = proto.Span{Start: start, End: len(b.body)}
	b.count()
	b.mu.Unlock()
}

// setError records that request i got no answer.
func (b *Batch) setError(i int, e *proto.Error) {
	b.mu.Lock()
	if !b.spans[i].Present() {
		b.errs[i] = e
	}
	b.mu.Unlock()
}

// Fail records e as the answer of every request that has none yet: an upstream that
// cannot take the batch at all.
func (b *Batch) Fail(e *proto.Error) {
	if len(b.spans) != len(b.Reqs) {
		b.start(b.answers)
	}
	b.failAll(e)
}

// replaceRefusals puts e, the gateway's refusal with its wait, in place of the bare
// throttle and quota refusals elements were answered with (refusals), as a single
// call's attempt that met them is answered: the client learns when to come back.
func (b *Batch) replaceRefusals(e *proto.Error) {
	b.mu.Lock()
	for i, x := range b.errs {
		if x == errThrottled || x == errExhausted {
			b.errs[i] = e
		}
	}
	b.mu.Unlock()
}

// failAll records e for every request that has no answer yet.
func (b *Batch) failAll(e *proto.Error) {
	b.mu.Lock()
	for i := range b.errs {
		if !b.spans[i].Present() && b.errs[i] == nil {
			b.errs[i] = e
		}
	}
	b.mu.Unlock()
}

// gatewayID1 is the id of every single request on HTTP: an exchange carries one
// request, so nothing needs telling apart.
var gatewayID1 = []byte("1")

// answerID checks that ans is a JSON-RPC answer object and returns its id span.
func answerID(ans []byte) (proto.Span, bool) {
	s := proto.FirstMember(ans, "id")
	return s, s.Present()
}

// setAnswerRaw stores ans, which already carries the id request i asked for.
func (b *Batch) setAnswerRaw(i int, ans []byte) {
	b.mu.Lock()
	start := len(b.body)
	b.body = append(b.body, ans...)
	b.spans[i] = proto.Span{Start: start, End: len(b.body)}
	b.count()
	b.mu.Unlock()
}
