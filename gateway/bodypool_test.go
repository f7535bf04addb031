package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/gateway/pipeline"
)

// A connection keeps no body buffer over pipeline.KeptBody between its requests, request or
// response: the next request on it finds buffers of at most that size. fasthttp keeps a
// connection's buffers for its next request, idle or not, and pools them with its
// context when it ends; the budgets count a body only while it is read or written, so
// 100 idle connections that had each sent one 4 MiB request held 800 MB, and 500 that
// had each sent 600 KB, 600 MB. A small body's buffer is still kept for the next
// request, which reuses it.
func TestIdleConnectionsKeepNoLargeBodyBuffers(t *testing.T) {
	type caps struct{ req, resp int } // buffer capacities as a request's handler finds them
	seen := make(chan caps, 8)
	const bigAnswer = 60 << 10 // under upstream.AnswerFloor: the answer's buffer is the response's
	fake := startFakeUpstream(t, fakeRespond(func(r fakeRequest) fakeAnswer {
		if strings.Contains(r.Raw, "0x0000000000000000000000000000000000000002") {
			return fakeAnswer{Result: `"0x` + strings.Repeat("ab", bigAnswer/2) + `"`}
		}
		return fakeAnswer{}
	}))
	gw := startGatewayBefore(t, nil, func(s *Server) {
		serve := s.srv.Handler
		s.srv.Handler = func(ctx *fasthttp.RequestCtx) {
			seen <- caps{cap(ctx.Request.Body()), cap(ctx.Response.Body())}
			serve(ctx)
		}
	}, "-upstream-http", fake.HTTPURL, "-upstream-ws", "off", "-cache=false")
	call := func(to, data int) string {
		return fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"eth_call","params":[{"to":"0x%040x","data":"0x%s"},"latest"]}`,
			to, strings.Repeat("ab", data/2))
	}
	for _, tc := range []struct {
		name  string
		first string // the first request; the second is a small one
		// keptReq, keptResp: the second request finds the first's buffer, at least this
		// large; else one of at most pipeline.KeptBody.
		keptReq, keptResp int
	}{
		{name: "large request body", first: call(1, 2<<20)},
		{name: "request body over the bound", first: call(1, 200<<10)},
		{name: "answer over the bound", first: call(2, 2)},
		{name: "request and answer under the bound", first: call(1, 2<<10), keptReq: 2 << 10, keptResp: 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", strings.TrimPrefix(gw.URL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			r := bufio.NewReader(c)
			var got [2]caps
			for i, body := range []string{tc.first, call(1, 2)} {
				if _, err := fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
					len(body), body); err != nil {
					t.Fatal(err)
				}
				resp, err := http.ReadResponse(r, nil)
				if err != nil {
					t.Fatal(err)
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("request %d: %d", i, resp.StatusCode)
				}
				if i == 0 && tc.first == call(2, 2) && n < bigAnswer {
					t.Fatalf("the large answer came as %d bytes", n)
				}
				got[i] = <-seen
			}
			for _, b := range []struct {
				what      string
				got, kept int
			}{{"request", got[1].req, tc.keptReq}, {"response", got[1].resp, tc.keptResp}} {
				switch {
				case b.kept > 0 && b.got < b.kept:
					t.Errorf("the second request found a %d-byte %s buffer: the first's was dropped", b.got, b.what)
				case b.kept == 0 && b.got > pipeline.KeptBody:
					t.Errorf("the second request found a %d-byte %s buffer: the first's stayed with the idle connection", b.got, b.what)
				}
			}
		})
	}
}
