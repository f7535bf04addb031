package upstream

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

// A cordoned upstream takes no new call at any strictness (not even as the last
// resort), moves no served head, shows its cordon on /status and in its gauges, and
// keeps it across a reload that rebuilds it; uncordoned, it takes calls again.
func TestCordonTakesUpstreamOutOfRouting(t *testing.T) {
	r := testRouter(t, Spec{Name: "a", HTTPURL: "http://127.0.0.1:1"}, Spec{Name: "b", HTTPURL: "http://127.0.0.1:1"})
	a, b := byName(r, "a"), byName(r, "b")
	r.observeHead(a, header(10))
	r.observeHead(b, header(10))
	getBalance := request("eth_getBalance", `["0x01","latest"]`)
	since := time.Date(2026, 12, 5, 23, 0, 0, 0, time.UTC)
	if err := r.Cordon("a", Cordon{Reason: "provider bill", By: "ops", Since: since}); err != nil {
		t.Fatal(err)
	}
	if err := r.Cordon("nope", Cordon{Reason: "x"}); !errors.Is(err, ErrUnknownUpstream) {
		t.Fatalf("cordon of an unknown upstream: %v", err)
	}
	for _, c := range []struct {
		name  string
		tried []*Upstream
		banB  bool
	}{
		{"b available", nil, false},
		{"b already tried", []*Upstream{b}, false},
		{"b banned (last resort)", nil, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.banB {
				b.health.Ban("test", time.Now())
			}
			for range 200 {
				if u := r.pick(getBalance, r.needOf(getBalance), TransportHTTP, c.tried); u == a {
					t.Fatal("a call went to the cordoned upstream")
				}
			}
		})
	}
	r.observeHead(a, header(11))
	if got := r.ServedHead(); got != 10 {
		t.Fatalf("a cordoned upstream's head moved the served head to %d", got)
	}
	st := r.Status()
	if got := st.Upstreams[0].Cordoned; got == nil || got.Reason != "provider bill" || !got.Since.Equal(since) {
		t.Fatalf("status of a: cordoned %+v", got)
	}
	if st.Upstreams[1].Cordoned != nil {
		t.Fatal("status of b shows a cordon")
	}
	if v := gauge(t, r, `gateway_upstream_cordoned{upstream="a"}`); v != "1" {
		t.Fatalf("gateway_upstream_cordoned of a: %s", v)
	}

	// A reload that changes a's spec rebuilds it: the cordon stays.
	if err := r.Reload([]Spec{{Name: "a", HTTPURL: "http://127.0.0.1:2"}, {Name: "b", HTTPURL: "http://127.0.0.1:1"}}); err != nil {
		t.Fatal(err)
	}
	a2 := byName(r, "a")
	if a2 == a {
		t.Fatal("the reload did not rebuild a")
	}
	if _, on := a2.Cordoned(); !on {
		t.Fatal("the rebuilt upstream lost its cordon")
	}

	if err := r.Uncordon("a"); err != nil {
		t.Fatal(err)
	}
	if _, on := a2.Cordoned(); on {
		t.Fatal("still cordoned after Uncordon")
	}
	if v := gauge(t, r, `gateway_upstream_cordoned{upstream="a"}`); v != "0" {
		t.Fatalf("gateway_upstream_cordoned of a after uncordon: %s", v)
	}
}

// SetCordons replaces the whole state (a fleet's, read from Redis); draining is 1 only
// while a drained upstream still has calls in flight.
func TestSetCordonsAndDraining(t *testing.T) {
	r := testRouter(t, Spec{Name: "a", HTTPURL: "http://127.0.0.1:1"}, Spec{Name: "b", HTTPURL: "http://127.0.0.1:1"})
	a, b := byName(r, "a"), byName(r, "b")
	r.SetCordons(map[string]Cordon{"a": {Reason: "x", Drain: true}, "gone": {Reason: "elsewhere"}})
	if _, on := a.Cordoned(); !on {
		t.Fatal("a not cordoned")
	}
	if _, on := b.Cordoned(); on {
		t.Fatal("b cordoned")
	}
	if _, ok := r.Cordons()["gone"]; !ok {
		t.Fatal("a cordon for an upstream not configured here was dropped")
	}
	for _, c := range []struct {
		inFlight int32
		want     string
	}{{2, "1"}, {0, "0"}} {
		a.inFlight.Store(c.inFlight)
		if v := gauge(t, r, `gateway_upstream_draining{upstream="a"}`); v != c.want {
			t.Fatalf("draining with %d in flight: %s, want %s", c.inFlight, v, c.want)
		}
	}
	r.SetCordons(map[string]Cordon{"b": {Reason: "y"}})
	if _, on := a.Cordoned(); on {
		t.Fatal("a still cordoned after a state without it")
	}
	if _, on := b.Cordoned(); !on {
		t.Fatal("b not cordoned")
	}
}

// The pick with a cordon check allocates nothing.
func TestCordonedPickAllocatesNothing(t *testing.T) {
	r := testRouter(t, Spec{Name: "a", HTTPURL: "http://127.0.0.1:1"}, Spec{Name: "b", HTTPURL: "http://127.0.0.1:1"},
		Spec{Name: "c", HTTPURL: "http://127.0.0.1:1"})
	for _, u := range r.Upstreams() {
		r.observeHead(u, header(10))
	}
	if err := r.Cordon("a", Cordon{Reason: "x"}); err != nil {
		t.Fatal(err)
	}
	req := request("eth_getBalance", `["0x01","latest"]`)
	n := r.needOf(req)
	if allocs := testing.AllocsPerRun(1000, func() { r.pick(req, n, TransportHTTP, nil) }); allocs != 0 {
		t.Fatalf("pick allocates %.1f times", allocs)
	}
}

// gauge returns the value of one series of r's registry as written.
func gauge(t *testing.T, r *Router, series string) string {
	t.Helper()
	var buf bytes.Buffer
	r.cfg.Registry.WritePrometheus(&buf)
	for _, line := range strings.Split(buf.String(), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	t.Fatalf("no series %s", series)
	return ""
}

// A reload that rebuilds an upstream under its old name (its URL changed) keeps its
// per-upstream gauges: the new upstream's were registered while the old one's still
// were, and the old one's removal took them away.
func TestReloadRebuiltUpstreamKeepsGauges(t *testing.T) {
	r := testRouter(t, Spec{Name: "a", HTTPURL: "http://127.0.0.1:1"}, Spec{Name: "b", HTTPURL: "http://127.0.0.1:1"})
	if err := r.Reload([]Spec{{Name: "a", HTTPURL: "http://127.0.0.1:2"}, {Name: "b", HTTPURL: "http://127.0.0.1:1"}}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`gateway_upstream_state{upstream="a"}`, `gateway_upstream_in_flight{upstream="a"}`} {
		gauge(t, r, s)
	}
}
