package upstream

import (
	"bytes"
	"strings"
	"testing"
)

// A view's series looked up again and again (a counter fetched by name on every
// broadcast send) are remembered once: the view's memory does not grow with the
// lookups, and Close still takes every series out.
func TestRegistryViewRemembersASeriesOnce(t *testing.T) {
	reg := NewRegistry()
	v := reg.With(`network="beta"`)
	for i := range 10_000 {
		v.Counter(`gateway_broadcast_targets_total{upstream="a",result="accepted"}`, "help").Inc()
		if i%2 == 0 {
			v.Counter(`gateway_broadcast_targets_total{upstream="b",result="failed"}`, "help").Inc()
		}
	}
	if n := len(*v.owned); n != 2 {
		t.Fatalf("the view remembers %d names for 2 series", n)
	}
	var out bytes.Buffer
	reg.WritePrometheus(&out)
	if !strings.Contains(out.String(), `gateway_broadcast_targets_total{network="beta",upstream="a",result="accepted"} 10000`) {
		t.Fatalf("the counter is not counted in the view's labels:\n%s", out.String())
	}
	v.Close()
	out.Reset()
	reg.WritePrometheus(&out)
	if strings.Contains(out.String(), `network="beta"`) {
		t.Fatalf("series left after Close:\n%s", out.String())
	}
}
