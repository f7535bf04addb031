//go:build !race

package upstream

import (
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/internal/pooltest"
)

// TestPoolKeepsBodyBuffersOnceCalibrated: a call whose envelope is over 64 bytes
// allocates nothing once fasthttp's body pools are calibrated as a busy process's are
// (every answer leaves by SwapBody, so the response pool sees only empty bodies and
// keeps no buffer over 64 bytes). Through fasthttp's own response pool such a call
// allocated its response's body buffer again each time: the guards, which run fewer
// calls than calibration takes, did not see it.
func TestPoolKeepsBodyBuffersOnceCalibrated(t *testing.T) {
	p := newBufferPool(t)
	req := request("eth_getBlockByNumber", `["0xc6af55",true]`)
	var buf []byte
	do := func() {
		var err error
		if buf, err = p.Call(buf, req, []byte("1"), time.Now().Add(10*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	for range 100 {
		do()
	}
	pooltest.CalibrateBodyPools()
	if n := testing.AllocsPerRun(1000, do); n != 0 {
		t.Errorf("a call allocates %v times with fasthttp's body pools calibrated, want 0", n)
	}
}
