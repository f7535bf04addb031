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
)

// A request body over maxPooledBody leaves no buffer behind: the next request on its
// connection gets a buffer of its own size. fasthttp keeps a connection's body buffer
// for its next request, and pools it with the request when the connection ends; the
// body budget counts a large body only while it is read, so 100 idle connections that
// had each sent one 4 MiB request held 800 MB, uncounted. A smaller body's buffer is
// still kept for the next request, which reuses it.
func TestLargeRequestBodyBuffersDropped(t *testing.T) {
	caps := make(chan int, 8) // each request's body buffer capacity, as its handler gets it
	fake := startFakeUpstream(t)
	gw := startGatewayBefore(t, nil, func(s *Server) {
		serve := s.srv.Handler
		s.srv.Handler = func(ctx *fasthttp.RequestCtx) {
			caps <- cap(ctx.Request.Body())
			serve(ctx)
		}
	}, "-upstream-http", fake.HTTPURL, "-upstream-ws", "off", "-cache=false")
	call := func(data int) string {
		return `{"jsonrpc":"2.0","id":1,"method":"eth_call","params":[{"to":"0x0000000000000000000000000000000000000001","data":"0x` +
			strings.Repeat("ab", data/2) + `"},"latest"]}`
	}
	for _, tc := range []struct {
		name  string
		first int // the first request's data bytes
		// wantKept: the second request reads into the first one's buffer; else into
		// one of at most maxPooledBody.
		wantKept bool
	}{
		{name: "large body", first: 2 << 20},
		{name: "body under the bound", first: 200 << 10, wantKept: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", strings.TrimPrefix(gw.URL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			r := bufio.NewReader(c)
			var got [2]int
			for i, body := range []string{call(tc.first), call(2)} {
				if _, err := fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
					len(body), body); err != nil {
					t.Fatal(err)
				}
				resp, err := http.ReadResponse(r, nil)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("request %d: %d", i, resp.StatusCode)
				}
				got[i] = <-caps
			}
			switch {
			case tc.wantKept && got[1] < tc.first:
				t.Errorf("the second request read into a %d-byte buffer: the first's (%d bytes) was dropped", got[1], got[0])
			case !tc.wantKept && got[1] > maxPooledBody:
				t.Errorf("the second request read into a %d-byte buffer: the first's large one stayed with the connection", got[1])
			}
		})
	}
}
