package pipeline

import (
	"io"
	"sync"

	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/upstream"
)

// heldBody is a large answer written to a client as a body stream, so that its bytes
// stay counted in the process's answer budget (-max-answer-bytes) until fasthttp has
// written its last byte or dropped it: Close, which fasthttp calls exactly once either
// way (the write ends, fails, or the response is reset). Without it a client reading
// slowly held an answer of up to -max-response-body for up to -write-timeout outside
// the bound, and enough of them took the gateway past its memory.
type heldBody struct {
	bodyReader
	answers *upstream.AnswerBudget
	n       int64 // what Hold returned
}

// bodyReader reads an answer's bytes out of the buffer it keeps (b, from off), for
// fasthttp to write as a body stream.
type bodyReader struct {
	b   []byte
	off int
}

func (r *bodyReader) Read(p []byte) (int, error) {
	if r.off >= len(r.b) {
		return 0, io.EOF
	}
	n := copy(p, r.b[r.off:])
	r.off += n
	return n, nil
}

// WriteTo writes the answer in one call: fasthttp's buffered writer passes a large
// write to the connection without copying it.
func (r *bodyReader) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(r.b[r.off:])
	r.off += n
	return int64(n), err
}

func (h *heldBody) Close() error {
	h.answers.Release(h.n)
	h.n, h.b = 0, nil
	return nil
}

// Answers is the budget the answers written to clients are counted in: the websocket
// transport holds its large queued answers there too (socket/client.go).
func (p *Pipeline) Answers() *upstream.AnswerBudget { return p.answers }

// setBody makes body the response's. A large one is written as a held body and is
// the response's from then on: the caller must not reuse it.
func (p *Pipeline) setBody(resp *fasthttp.Response, body []byte) {
	n := p.answers.Hold(len(body))
	resp.SetBodyStream(&heldBody{bodyReader: bodyReader{b: body}, answers: p.answers, n: n}, len(body))
}

// KeptBody is the largest body buffer fasthttp keeps with a client connection between
// its requests, request or response (the gateway sets it, fasthttp.SetBodySizePoolLimit):
// a connection keeps both while idle, uncounted, so a larger one is dropped once the
// response is written.
const KeptBody = 4 << 10

// lentBody is an answer in a buffer over KeptBody written to a client as a body stream:
// swapped into the response's own buffer, it would be dropped once written and the
// next answer of that size allocate another; lent, it comes back to lentBodies when
// fasthttp has written it (Close, called exactly once), for a later call to take in
// exchange, as SwapBody exchanges buffers.
type lentBody struct{ bodyReader }

var lentBodies = sync.Pool{New: func() any { return new(lentBody) }}

func (l *lentBody) Close() error {
	if cap(l.b) > maxPooledAnswer {
		l.b = nil
	}
	l.b, l.off = l.b[:0], 0
	lentBodies.Put(l)
	return nil
}

// lendBody makes ans the response's body, its buffer with it, and returns a buffer the
// caller gets in exchange.
func lendBody(resp *fasthttp.Response, ans []byte) []byte {
	l := lentBodies.Get().(*lentBody)
	back := l.b[:0]
	l.b = ans
	resp.SetBodyStream(l, len(ans))
	return back
}
