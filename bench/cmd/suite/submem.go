package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/bench/internal/load"
)

// targetSubscribedKiB is the most a /socket2socket client subscribed to newHeads may
// add to the gateway's RSS (issue 25: 12 KiB, aim 8).
const targetSubscribedKiB = 12.0

// subMemory is the memory step's second half: clients subscribed to newHeads.
type subMemory struct {
	Clients       int     `json:"clients"`
	Subscribed    uint64  `json:"subscribed"`
	GatewayGauge  float64 `json:"gateway_ws_subscriptions"`
	RSSBeforeKiB  int64   `json:"rss_before_kib"`
	RSSAfterKiB   int64   `json:"rss_after_kib"`
	KiBPerClient  float64 `json:"kib_per_client"`
	TargetKiB     float64 `json:"target_kib"`
	GoroutinesBef float64 `json:"goroutines_before"`
	GoroutinesAft float64 `json:"goroutines_after"`
	// GoroutinesPerClient is (after - before) ÷ subscribed.
	GoroutinesPerClient float64 `json:"goroutines_per_client"`
	// Notifications is how many heads the subscribers received while connected (each
	// must keep receiving them: memory is not bought with lost heads).
	Notifications uint64            `json:"notifications"`
	HeapTop       []string          `json:"heap_top,omitempty"` // go tool pprof -top, inuse_space
	HeapProfile   string            `json:"heap_profile,omitempty"`
	Errors        uint64            `json:"errors"`
	ErrorKinds    map[string]uint64 `json:"error_kinds,omitempty"`
	Status        string            `json:"status"`
	Note          string            `json:"note,omitempty"`
}

// subscribedMemory opens o.idle /socket2socket clients, each subscribed to newHeads,
// on a fresh gateway (pid, serving on gwAddr, its profiles on pprofAddr when not empty)
// and reports its RSS growth and goroutines per client and its heap profile's top
// entries (saved under dir/pprof).
func subscribedMemory(ctx context.Context, pid int, gwAddr, pprofAddr, gwBin, dir string, o *options) (*subMemory, error) {
	sm := &subMemory{Clients: o.idle, TargetKiB: targetSubscribedKiB}
	// The shared upstream subscription is set up by the warm-up subscriber; after the
	// clients subscribed, two more heads go out, so their frames are written and the
	// write buffers back in the pool when RSS is read.
	cr, err := openClients(ctx, "subscribed memory", pid, "ws://"+gwAddr+"/socket2socket", load.WSSub, 1500*time.Millisecond,
		load.WSSub, o.idle, func(l load.Live) bool { return l.OK >= uint64(o.idle) }, 2*o.headInterval+time.Second,
		func() {
			if pm, err := scrape(gwAddr); err == nil {
				sm.GoroutinesBef, _ = pm.sum("go_goroutines")
			}
		},
		func(load.Live) {
			if pm, err := scrape(gwAddr); err == nil {
				sm.GatewayGauge, _ = pm.sum("gateway_ws_subscriptions")
				sm.GoroutinesAft, _ = pm.sum("go_goroutines")
			}
			if pprofAddr != "" {
				var err error
				if sm.HeapProfile, sm.HeapTop, err = heapTop(pprofAddr, gwBin, dir); err != nil {
					sm.Note = "heap profile: " + err.Error()
				}
			}
		})
	if err != nil {
		return nil, err
	}
	sm.RSSBeforeKiB, sm.RSSAfterKiB = cr.rssBefore, cr.rssAfter
	sm.Subscribed, sm.Notifications = cr.live.OK, cr.live.Notifications
	sm.Errors, sm.ErrorKinds = cr.result.ErrorCount, cr.result.Errors
	if sm.Subscribed > 0 {
		sm.KiBPerClient = round2(float64(sm.RSSAfterKiB-sm.RSSBeforeKiB) / float64(sm.Subscribed))
		sm.GoroutinesPerClient = round2((sm.GoroutinesAft - sm.GoroutinesBef) / float64(sm.Subscribed))
	}
	// Every client must subscribe and hear heads in any run; the KiB target is judged on
	// full runs only: with -quick's 1,000 clients the process's fixed growth (heap
	// arenas, the runtime's first stacks) is spread over a tenth of the clients.
	ok := sm.Subscribed == uint64(o.idle) && sm.Errors == 0 && sm.Notifications > 0
	switch {
	case !ok:
		sm.Status = "fail"
	case o.quick:
		sm.Status = "info"
	default:
		sm.Status = statusOf(sm.KiBPerClient <= targetSubscribedKiB, true)
	}
	logf("subscribed memory: %d subscribed, RSS %d -> %d KiB, %.2f KiB per subscriber, %.2f goroutines per subscriber [%s]",
		sm.Subscribed, sm.RSSBeforeKiB, sm.RSSAfterKiB, sm.KiBPerClient, sm.GoroutinesPerClient, sm.Status)
	for _, l := range sm.HeapTop {
		logf("  heap: %s", l)
	}
	return sm, nil
}

// heapTop saves the gateway's heap profile under dir/pprof and returns its path
// (relative to dir) and the top entries of go tool pprof -top (in-use bytes).
func heapTop(pprofAddr, gwBin, dir string) (string, []string, error) {
	code, body, err := fasthttp.GetTimeout(nil, "http://"+pprofAddr+"/debug/pprof/heap", 30*time.Second)
	if err != nil || code != 200 {
		return "", nil, fmt.Errorf("GET /debug/pprof/heap: status %d, %v", code, err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "pprof"), 0o755); err != nil {
		return "", nil, err
	}
	rel := filepath.Join("pprof", "heap-subscribed.pb.gz")
	path := filepath.Join(dir, rel)
	if err := os.WriteFile(path, body, 0o644); err != nil {
		return "", nil, err
	}
	out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=10", "-sample_index=inuse_space", gwBin, path).Output()
	if err != nil {
		return rel, nil, fmt.Errorf("go tool pprof: %w", err)
	}
	var top []string
	header := true
	for _, l := range strings.Split(string(bytes.TrimSpace(out)), "\n") {
		if header {
			header = !strings.Contains(l, "flat%")
			if strings.HasPrefix(l, "Showing nodes") {
				top = append(top, strings.TrimSpace(l))
			}
			continue
		}
		top = append(top, strings.Join(strings.Fields(l), " "))
	}
	return rel, top, nil
}
