package admin

import (
	"bytes"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/upstream"
)

// series is the value line of one series in reg's Prometheus text, "" when absent.
func series(reg *upstream.Registry, name string) string {
	var b bytes.Buffer
	reg.WritePrometheus(&b)
	for _, line := range strings.Split(b.String(), "\n") {
		if strings.HasPrefix(line, name+" ") {
			return line
		}
	}
	return ""
}

// TestWrapCountsInFlight: a client route's request is in flight while its handler
// runs and not after, also when the handler panics (a bug): that request is answered
// 500 by the panic handler and counted under its route. The admin listener's routes
// (a scrape reading the gauge) are never in flight: an idle gateway read 1.
func TestWrapCountsInFlight(t *testing.T) {
	reg := upstream.NewRegistry()
	var recovered any
	inst := NewInstrumenter(reg, slog.New(slog.NewTextHandler(io.Discard, nil)), true,
		func(ctx *fasthttp.RequestCtx, v any) {
			recovered = v
			ctx.SetStatusCode(fasthttp.StatusInternalServerError)
		})
	var during int64 = -1
	for _, tc := range []struct {
		name, route string
		inst        *Instrumenter
		h           fasthttp.RequestHandler
		during      int64 // in flight seen by the handler
		code        string
	}{
		{"client route", "rpc", inst, func(ctx *fasthttp.RequestCtx) { during = inst.InFlight() }, 1, "200"},
		{"panic", "blocknumber", inst, func(ctx *fasthttp.RequestCtx) { during = inst.InFlight(); panic("a bug") }, 1, "500"},
		{"scrape", "metrics", inst.Operator(), func(ctx *fasthttp.RequestCtx) { during = inst.InFlight() }, 0, "200"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recovered, during = nil, -1
			h := tc.inst.Wrap(tc.route, tc.h)
			var ctx fasthttp.RequestCtx
			h(&ctx)
			if during != tc.during {
				t.Errorf("in flight during the request: %d, want %d", during, tc.during)
			}
			if n := inst.InFlight(); n != 0 {
				t.Errorf("in flight after the request: %d, want 0", n)
			}
			if (tc.code == "500") != (recovered != nil) {
				t.Errorf("panic handler ran: %v", recovered)
			}
			want := `gateway_requests_total{route="` + tc.route + `",code="` + tc.code + `"} 1`
			if got := series(reg, `gateway_requests_total{route="`+tc.route+`",code="`+tc.code+`"}`); got != want {
				t.Errorf("counted %q, want %q", got, want)
			}
		})
	}
}
