package pipeline

import (
	"bytes"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// An answer in the call's own buffer reaches the response without being lost or
// copied twice, and the buffers end where the next request wants them: a small buffer
// with the response (its connection keeps it), a large one with the call (lent, and
// given back once written), never a large one with the response.
func TestWriteAnswerBuffers(t *testing.T) {
	small := []byte(`{"jsonrpc":"2.0","id":1,"result":"0x1"}`)
	large := []byte(`{"jsonrpc":"2.0","id":1,"result":"0x` + strings.Repeat("ab", KeptBody) + `"}`)
	for _, tc := range []struct {
		name     string
		ans      []byte
		ownCap   int
		stream   bool // the answer is lent to the response as a body stream
		ownAfter int  // the call's buffer after, at least this large (0: at most KeptBody)
	}{
		{"small answer, small buffer", small, 64, false, 0},
		{"small answer, large buffer", small, 64 << 10, false, 64 << 10},
		{"large answer, large buffer", large, 64 << 10, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ctx fasthttp.RequestCtx
			c := &Call{Own: append(make([]byte, 0, tc.ownCap), tc.ans...)}
			c.Ans = c.Own
			new(Pipeline).WriteAnswer(&ctx, c)
			if got := ctx.Response.IsBodyStream(); got != tc.stream {
				t.Fatalf("body stream %v, want %v", got, tc.stream)
			}
			if got := ctx.Response.Body(); !bytes.Equal(got, tc.ans) {
				t.Fatalf("the response's body is %.60q, want %.60q", got, tc.ans)
			}
			if !tc.stream && cap(ctx.Response.Body()) > KeptBody {
				t.Errorf("the response holds a %d-byte buffer: dropped once written, not kept", cap(ctx.Response.Body()))
			}
			switch {
			case tc.ownAfter > 0 && cap(c.Own) < tc.ownAfter:
				t.Errorf("the call's buffer is %d bytes after, want its %d back", cap(c.Own), tc.ownAfter)
			case tc.ownAfter == 0 && cap(c.Own) > KeptBody:
				t.Errorf("the call kept a %d-byte buffer the response holds", cap(c.Own))
			}
		})
	}
}
