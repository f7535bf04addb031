package gateway

import (
	"strconv"
	"strings"
	"testing"
)

// A batch refused for a known wait tells it in Retry-After on HTTP, as a single call's
// refusal does: refused whole, by the provider's throttle or by the gateway's own
// refusal once every upstream's gate is closed, it is 429 as the call is; with an
// element answered beside the refusals it stays 200 and still says when to come back.
// A plan's limit refusing the batch is unchanged.
func TestBatchRefusalCarriesRetryAfter(t *testing.T) {
	const balance = `{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["0x00000000000000000000000000000000000000aa","latest"]}`
	for _, c := range []struct {
		name   string
		first  bool // the exchange that meets the throttle, else one after the gate closed
		body   string
		status int
	}{
		{"a single call meeting the throttle", true, balance, 429},
		{"a batch meeting the throttle", true, `[` + balance + `,` + balance + `]`, 429},
		{"a single call after", false, balance, 429},
		{"a batch refused whole after", false, `[` + balance + `,` + balance + `]`, 429},
		{"a batch with an element answered beside", false, `[` + balance + `,{"id":2,"method":"eth_chainId"}]`, 200},
	} {
		t.Run(c.name, func(t *testing.T) {
			up := startFakeUpstream(t, fakeRespond(func(r fakeRequest) fakeAnswer {
				if r.Method == "eth_getBalance" { // Infura's throttle, stating its back-off
					return fakeAnswer{Body: `{"jsonrpc":"2.0","id":` + string(r.ID) +
						`,"error":{"code":-32005,"message":"project ID request rate exceeded","data":{"backoff_seconds":30}}}`}
				}
				return fakeAnswer{}
			}))
			gw := startGateway(t, up.args("-cache=false")...)
			gw.waitUpstreams(t)
			if !c.first {
				if code, _, b := post(t, gw.URL+"/", balance, nil); code != 429 {
					t.Fatalf("the call that meets the throttle: %d %s", code, b)
				}
			}
			code, h, b := post(t, gw.URL+"/", c.body, nil)
			if code != c.status || !strings.Contains(b, "retry after") {
				t.Fatalf("%d %s, want %d and the gateway's refusal", code, b, c.status)
			}
			if ra, err := strconv.Atoi(h.Get("Retry-After")); err != nil || ra < 1 || ra > 30 {
				t.Fatalf("Retry-After %q, want the throttle's back-off left (1-30 s)", h.Get("Retry-After"))
			}
		})
	}
	t.Run("a batch over a plan's limit", func(t *testing.T) {
		_, kgw, _ := startKeyed(t, accessConfig("{requests_per_second: 1, burst: 2}"))
		batch := `[` + blockNumberCall + `,` + blockNumberCall + `]`
		post(t, kgw.URL+"/v3/"+keyAlice, batch, nil)
		code, h, b := post(t, kgw.URL+"/v3/"+keyAlice, batch, nil)
		if ra, err := strconv.Atoi(h.Get("Retry-After")); code != 429 || err != nil || ra < 1 {
			t.Fatalf("%d Retry-After %q %s, want 429 with Retry-After", code, h.Get("Retry-After"), b)
		}
	})
}
