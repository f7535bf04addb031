package main

import (
	"strings"
	"testing"
)

// A callgrind profile as --dump-instr=yes --compress-pos=no --compress-strings=no writes
// it: 10 requests through footprintOne, which calls handler; handler has a rare branch.
const profile = `# callgrind format
version: 1
positions: instr line
events: Ir

ob=/tmp/gateway.test
fl=/work/gateway/overhead_bench_test.go
fn=github.com/infura-gateway/infura-gateway/gateway.footprintOne
0x401000 10 10
0x401004 10 10
calls=10 0x402000 20
0x401008 10 500
0x40100d 11 10

fl=/work/gateway/handler.go
fn=github.com/infura-gateway/infura-gateway/gateway.handler
0x402000 20 10
0x402003 21 10
0x402040 22 10
0x403000 23 2
`

func TestParse(t *testing.T) {
	f, err := parse(strings.NewReader(profile))
	if err != nil {
		t.Fatal(err)
	}
	if f.requests != 10 {
		t.Errorf("requests %d, want 10 (footprintOne's entry count)", f.requests)
	}
	// 3 footprintOne + 3 handler hot instructions a request, and the rare one 2 in 10;
	// the call's inclusive cost (500) is not counted again.
	if want := (10.0*6 + 2) / 10; f.irPerReq != want {
		t.Errorf("Ir/req %v, want %v", f.irPerReq, want)
	}
	// Lines: 0x401000 (footprintOne), 0x402000, 0x402040; 0x403000 is rare.
	if len(f.lines) != 3 || len(f.pages) != 2 || len(f.fns) != 2 {
		t.Errorf("lines %d pages %d fns %d, want 3 2 2", len(f.lines), len(f.pages), len(f.fns))
	}
	top := f.topFns(1)
	if len(top) != 1 || !strings.HasSuffix(top[0].name, ".handler") || top[0].lines != 2 {
		t.Errorf("topFns(1) = %+v, want handler with 2 lines", top)
	}
}

func TestParseRefuses(t *testing.T) {
	for _, c := range []struct{ name, profile, want string }{
		{"relative positions", "fn=x.footprintOne\n+3 1 2\n", "absolute positions"},
		{"no entry", "fn=other\n0x401000 1 5\n", "no instruction of .footprintOne"},
		{"bad count", "fn=x.footprintOne\n0x401000 1 x\n", "cost line"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := parse(strings.NewReader(c.profile))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want one saying %q", err, c.want)
			}
		})
	}
}
