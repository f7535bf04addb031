// Command loadgen is the load driver for the gateway and the fixed node.
//
// Closed loop (VUs sending back to back):
//
//	loadgen -url http://127.0.0.1:8000/blocknumber -vus 64 -duration 10s
//
// Open loop (fixed arrival rate; requests that find no free VU are dropped):
//
//	loadgen -url http://127.0.0.1:8000/gasprice -rate 20000 -vus 256 -duration 10s
//
// Stage profile shared with k6 (ramping VUs):
//
//	loadgen -url http://127.0.0.1:8000/blocknumber -profile k6/profiles/local.json
//
// Websocket request loop, subscriptions, idle sockets:
//
//	loadgen -url ws://127.0.0.1:8000/socket2socket -kind ws-rpc -vus 64
//	loadgen -url ws://127.0.0.1:8000/socket2socket -kind ws-sub -vus 100 -duration 10s
//	loadgen -url ws://127.0.0.1:8000/socket2socket -kind ws-idle -vus 10000 -ramp 5s
//
// Progress goes to stderr once a second; the result is JSON on stdout (or
// -out). The exit status is 1 when any request failed or was dropped.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/infura-gateway/infura-gateway/bench/internal/load"
	"github.com/infura-gateway/infura-gateway/bench/internal/proc"
	"github.com/infura-gateway/infura-gateway/bench/internal/profile"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
}

func run() error {
	var (
		u         = flag.String("url", "", "target URL (http://... or ws://...), loopback only")
		kind      = flag.String("kind", "", "http, ws-rpc, ws-sub or ws-idle (default: http for http://, ws-rpc for ws://)")
		method    = flag.String("method", "", "HTTP method (default GET, or POST with -body)")
		body      = flag.String("body", "", "HTTP request body (JSON)")
		bodyFile  = flag.String("body-file", "", "read the HTTP request body from this file")
		validate  = flag.String("validate", "jsonrpc", "what makes a reply a success: jsonrpc (2xx + result, no error, echoed id) or status (2xx)")
		rpcMethod = flag.String("rpc-method", "eth_blockNumber", "ws-rpc: JSON-RPC method to send")
		rpcParams = flag.String("rpc-params", "[]", "ws-rpc: JSON-RPC params to send")
		vus       = flag.Int("vus", 64, "closed loop: concurrent VUs (one connection each); open loop: most requests in flight")
		duration  = flag.Duration("duration", 10*time.Second, "run length (a profile sets its own)")
		rate      = flag.Float64("rate", 0, "open loop: requests per second (0: closed loop)")
		profPath  = flag.String("profile", "", "stage profile JSON (k6/profiles/*.json): ramp VUs between stage targets")
		startVUs  = flag.Int("start-vus", 1, "profile: VUs at the start (k6 startVUs)")
		ramp      = flag.Duration("ramp", 0, "closed loop: start the VUs evenly over this time instead of at once")
		timeout   = flag.Duration("timeout", 10*time.Second, "per-request (and dial) timeout")
		late      = flag.Duration("late", 10*time.Millisecond, "open loop: a request starting this far behind schedule counts as late")
		out       = flag.String("out", "", "write the JSON result here instead of stdout")
		name      = flag.String("name", "", "label for progress lines and results (default: the URL)")
		noHist    = flag.Bool("no-histogram", false, "omit the latency histogram buckets from the JSON")
		quiet     = flag.Bool("quiet", false, "no progress line")
	)
	flag.Parse()
	if *u == "" {
		flag.Usage()
		return fmt.Errorf("-url is required")
	}
	tgt := load.Target{
		Name: *name, URL: *u, Kind: load.Kind(*kind), Method: strings.ToUpper(*method),
		Validate: load.Validation(*validate), RPCMethod: *rpcMethod, RPCParams: *rpcParams,
	}
	if tgt.Kind == "" {
		tgt.Kind = load.HTTP
		if strings.HasPrefix(*u, "ws://") {
			tgt.Kind = load.WSRPC
		}
	}
	switch {
	case *bodyFile != "":
		b, err := os.ReadFile(*bodyFile)
		if err != nil {
			return err
		}
		tgt.Body = b
	case *body != "":
		tgt.Body = []byte(*body)
	}
	if tgt.Method == "" && len(tgt.Body) > 0 {
		tgt.Method = "POST"
	}
	if tgt.Validate != load.ValidateRPC && tgt.Validate != load.ValidateStatus {
		return fmt.Errorf("-validate: want jsonrpc or status, got %q", *validate)
	}
	if err := load.CheckLoopback(*u); err != nil {
		return err
	}
	cfg := load.Config{
		VUs: *vus, Duration: *duration, Rate: *rate, StartVUs: *startVUs, Ramp: *ramp,
		Timeout: *timeout, Late: *late,
	}
	if !*quiet {
		cfg.Progress = os.Stderr
	}
	if *profPath != "" {
		p, err := profile.Load(*profPath)
		if err != nil {
			return err
		}
		cfg.Profile = p
	}
	r, err := load.New(cfg, tgt)
	if err != nil {
		return err
	}
	maxConns := cfg.VUs
	if cfg.Profile != nil {
		maxConns = cfg.Profile.MaxVUs(cfg.StartVUs)
	}
	// Each VU holds one socket; leave headroom for the runtime and dials
	// that overlap closes.
	if lim, err := proc.RaiseNoFile(uint64(maxConns) + 1024); err != nil || lim < uint64(maxConns)+64 {
		return fmt.Errorf("cannot raise the open-file limit to %d (have %d): %v", maxConns+1024, lim, err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res := r.Run(ctx)
	if *noHist {
		res.Histogram = nil
	}
	doc, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	doc = append(doc, '\n')
	if *out != "" {
		if err := os.WriteFile(*out, doc, 0o644); err != nil {
			return err
		}
	} else {
		os.Stdout.Write(doc)
	}
	fmt.Fprintf(os.Stderr, "[%s] done: %d ok, %.0f/s, p50=%.3fms p99=%.3fms max=%.3fms, errors: %s",
		res.Name, res.OK, res.RateRPS, res.LatencyMS.P50, res.LatencyMS.P99, res.LatencyMS.Max, res.ErrorSummary())
	if res.Dropped > 0 {
		fmt.Fprintf(os.Stderr, ", dropped %d", res.Dropped)
	}
	fmt.Fprintln(os.Stderr)
	if res.Failed() {
		fmt.Fprintln(os.Stderr, "loadgen: FAILED")
		os.Exit(1)
	}
	return nil
}
