package upstream

import (
	"bufio"
	"errors"
	"io"

	"github.com/valyala/fasthttp"
)

// maxInterim bounds the informational (1xx) answers read before the real one, as
// fasthttp's own reader does.
const maxInterim = 16

var errTooManyInterim = errors.New("upstream sent too many informational (1xx) answers")

// readAnswer is fasthttp's Response.ReadLimitBody with one step between the header and
// the body: a declared body is reserved from the answer budget (coarseConn.expect)
// before fasthttp allocates its buffer, whole, from the declared length. pc nil: no
// budget. An answer refused there is left unread (errAnswerBudget): its connection must
// be closed.
func readAnswer(resp *fasthttp.Response, br *bufio.Reader, maxBody int, pc *coarseConn) error {
	resp.ResetBody()
	if err := resp.Header.Read(br); err != nil {
		return err
	}
	for n := 0; informational(resp.Header.StatusCode()); n++ {
		if n >= maxInterim {
			return errTooManyInterim
		}
		if err := resp.Header.Read(br); err != nil {
			return err
		}
	}
	switch resp.Header.StatusCode() {
	case fasthttp.StatusNoContent, fasthttp.StatusNotModified:
		return nil // no body, whatever the header says
	}
	cl := resp.Header.ContentLength()
	if pc != nil && cl > 0 && (maxBody <= 0 || cl <= maxBody) && !pc.expect(cl) {
		return errAnswerBudget
	}
	if cl > maxPooledBuf && (maxBody <= 0 || cl <= maxBody) {
		// A buffer of the body's size: fasthttp would round it up to a power of two
		// (16 MiB for 8 MiB and a byte), memory the budget, which counts the answer's
		// bytes, does not see. A body this large gets a new buffer either way.
		resp.SwapBody(make([]byte, 0, cl))
	}
	if err := resp.ReadBody(br, maxBody); err != nil {
		return err
	}
	if resp.Header.ContentLength() == -1 { // chunked: its trailer follows
		if err := resp.Header.ReadTrailer(br); err != nil {
			if err == io.EOF {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// informational is a 1xx status other than 101, which ends the exchange.
func informational(status int) bool {
	return status >= 100 && status <= 199 && status != fasthttp.StatusSwitchingProtocols
}
