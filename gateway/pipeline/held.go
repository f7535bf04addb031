package pipeline

import (
	"io"

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
	b       []byte
	answers *upstream.AnswerBudget
	n       int64 // what Hold returned
}

func (h *heldBody) Read(p []byte) (int, error) {
	if len(h.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, h.b)
	h.b = h.b[n:]
	return n, nil
}

// WriteTo writes the answer in one call: fasthttp's buffered writer passes a large
// write to the connection without copying it.
func (h *heldBody) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(h.b)
	h.b = h.b[n:]
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
	resp.SetBodyStream(&heldBody{b: body, answers: p.answers, n: n}, len(body))
}
