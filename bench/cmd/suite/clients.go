package main

import (
	"context"
	"fmt"
	"time"

	"github.com/infura-gateway/infura-gateway/bench/internal/load"
	"github.com/infura-gateway/infura-gateway/bench/internal/proc"
)

// clientRun is the memory steps' shared measurement: the RSS of the gateway process
// before and after n websocket clients are open, and the clients' run.
type clientRun struct {
	rssBefore, rssAfter int64
	live                load.Live    // at the peak, when rssAfter was read
	result              *load.Result // after the clients closed
}

// openClients runs warm for a moment first, so one-time costs (the first upgrade,
// pools, lazily started parts) are in the baseline, not in the delta; reads pid's RSS;
// calls before (nil: none); opens n clients of kind at url over a ramp; waits until
// ready says they all are (or 30 s past the ramp, or a client failed), then settle;
// reads RSS again and calls peak (nil: none) with the clients still open; closes them.
func openClients(ctx context.Context, label string, pid int, url string, warm load.Kind, warmFor time.Duration,
	kind load.Kind, n int, ready func(load.Live) bool, settle time.Duration, before func(), peak func(load.Live)) (*clientRun, error) {
	w, err := load.New(load.Config{VUs: 1, Duration: warmFor, Timeout: 10 * time.Second}, load.Target{Kind: warm, URL: url})
	if err != nil {
		return nil, err
	}
	if wr := w.Run(ctx); wr.Failed() {
		return nil, fmt.Errorf("%s warm-up on /socket2socket failed: %s", label, wr.ErrorSummary())
	}
	time.Sleep(time.Second) // the warm-up's connection closes and settles
	cr := &clientRun{}
	if cr.rssBefore, err = proc.RSSKiB(pid); err != nil {
		return nil, err
	}
	if before != nil {
		before()
	}
	ramp := max(500*time.Millisecond, time.Duration(n)*time.Second/2000)
	logf("%s: opening %d /socket2socket clients over %s", label, n, ramp)
	// The run lasts long enough to connect everyone and settle; it is cancelled as
	// soon as the peak has been read.
	lr, err := load.New(load.Config{VUs: n, Duration: ramp + 60*time.Second, Ramp: ramp, Timeout: 10 * time.Second},
		load.Target{Kind: kind, URL: url})
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan *load.Result, 1)
	go func() { done <- lr.Run(rctx) }()
	deadline := time.Now().Add(ramp + 30*time.Second)
	for l := lr.Live(); !ready(l) && l.Errors == 0 && time.Now().Before(deadline) && ctx.Err() == nil; l = lr.Live() {
		time.Sleep(100 * time.Millisecond) // polling an external process's progress
	}
	time.Sleep(settle) // per-connection set-up finishes (goroutines, buffers, the first frames)
	cr.live = lr.Live()
	if cr.rssAfter, err = proc.RSSKiB(pid); err != nil {
		return nil, err
	}
	if peak != nil {
		peak(cr.live)
	}
	cancel()
	cr.result = <-done
	return cr, nil
}
