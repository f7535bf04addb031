// Command suite is the one-command performance suite of infura-gateway.
//
// It builds the gateway and the fixed node, measures the CPU floor (the fixed
// node answering eth_blockNumber), then the gateway's CPU per request on each
// path relative to that floor, zero-error runs at 1,000 and 10,000
// connections, request coalescing, the memory of idle websocket clients and
// the frames per upstream websocket write. It writes results.json, report.md
// and chart.png under bench/results/<timestamp>/ and exits 1 when a check
// fails.
//
//	./task perf:suite                   (from the repo root)
//	./task perf:quick                   (CI smoke: every path, a few seconds)
//	go -C bench run ./cmd/suite -h      (every flag)
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/infura-gateway/infura-gateway/bench/internal/load"
	"github.com/infura-gateway/infura-gateway/bench/internal/proc"
)

// Targets: the gateway's CPU per request over the floor's (bench/README.md).
const (
	targetHTTP     = 2.0
	targetWSMux    = 1.5
	targetCacheHit = 1.05
	// Idle /socket2socket client: at most this much gateway RSS.
	targetIdleKiB = 24.0
	// Coalescing: upstream eth_gasPrice calls allowed beyond one per head.
	coalesceSlack = 3
)

const rpcBlockNumber = `{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}`

type options struct {
	repo, outDir, driver, gatewayBin string
	duration, warmup, connDuration   time.Duration
	coalesceDuration, headInterval   time.Duration
	vus, idle, coalesceClients       int
	subscribers, repeat              int
	// rounds and versusVUs shape the versus step (gateway ÷ reference relay).
	rounds                          int
	versusVUs                       []int
	versusTogether                  bool
	versusBaseline                  string
	conns                           []int
	quick, progress, noBuild, pprof bool
	// gatewayArgs are appended to every gateway's command line; key, when set, goes in
	// the path of the JSON-RPC routes (/v3/<key>, /ws/v3/<key>).
	gatewayArgs []string
	key         string
	// only lists the steps to run (empty: all); see stepNames.
	only map[string]bool
}

// stepNames are the values -only accepts: path keys select CPU runs (and,
// with conns, which paths the many-connection runs cover).
var stepNames = []string{
	"http_blocknumber", "ws_blocknumber", "rpc_post", "socket2socket", "gasprice_cache", "blocknumber_cached",
	"socket2socket_per_client", "relay", "versus", "conns", "coalescing", "subscriptions", "memory",
}

func (o *options) want(step string) bool { return len(o.only) == 0 || o.only[step] }

// countList parses a comma-separated list of positive counts, or exits naming the flag.
func countList(flagName, list string) []int {
	var out []int
	for _, f := range strings.Split(list, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			fatal(fmt.Errorf("%s: bad count %q", flagName, f))
		}
		out = append(out, n)
	}
	return out
}

func main() {
	o := options{}
	flag.StringVar(&o.repo, "repo", "", "gateway repository root (default: found above the working directory)")
	flag.StringVar(&o.outDir, "out", "", "results directory (default <repo>/bench/results)")
	flag.StringVar(&o.driver, "driver", "auto", "load driver for the HTTP CPU runs: wrk, loadgen, or auto (wrk when installed)")
	flag.StringVar(&o.gatewayBin, "gateway-bin", "", "use this gateway binary instead of building one")
	flag.BoolVar(&o.noBuild, "no-build", false, "reuse the binaries in bench/results/bin")
	flag.DurationVar(&o.duration, "duration", 8*time.Second, "measured run per path")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "warm-up before each measured run")
	flag.DurationVar(&o.connDuration, "conn-duration", 4*time.Second, "each 1k/10k-connection run, after its ramp")
	flag.IntVar(&o.repeat, "repeat", 1, "measured runs per CPU path; the run with the median CPU per request is reported")
	flag.IntVar(&o.vus, "vus", 64, "connections for the CPU runs (the bar: wrk 1 thread 64 connections)")
	conns := flag.String("conns", "1000,10000", "connection counts for the zero-error runs")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds of the versus step (gateway and reference relay alternated on each path)")
	versusVUs := flag.String("versus-vus", "64,1000", "connection counts of the versus step")
	flag.BoolVar(&o.versusTogether, "versus-together", false,
		"versus step: load the gateway and the relay at the same moment in each round (one load driver each), rather than one after the other")
	flag.StringVar(&o.versusBaseline, "versus-baseline", "",
		"versus step: compare the gateway with this gateway binary (an earlier build, same arguments) in place of the reference relay; rows report gateway ÷ baseline, not judged")
	flag.IntVar(&o.idle, "idle", 10000, "idle /socket2socket clients for the memory test (and as many subscribed to newHeads)")
	flag.IntVar(&o.coalesceClients, "coalesce-clients", 500, "concurrent /gasprice clients for the coalescing test")
	flag.IntVar(&o.subscribers, "subscribers", 1000, "/socket2socket newHeads subscribers for the fan-out test")
	flag.DurationVar(&o.coalesceDuration, "coalesce-duration", 10*time.Second, "coalescing test length")
	flag.DurationVar(&o.headInterval, "head-interval", time.Second, "fixed node head interval")
	flag.BoolVar(&o.quick, "quick", false, "CI smoke run: every path for ~1 s, 1,000 connections, 1,000 idle clients; CPU ratios reported, not judged")
	flag.BoolVar(&o.progress, "progress", false, "print the load driver's per-second progress lines")
	flag.BoolVar(&o.pprof, "pprof", false, "save a CPU profile of the gateway for each CPU run under <results>/pprof/ (profiling costs a few % CPU: figures are marked)")
	gwArgs := flag.String("gateway-args", "", "extra gateway arguments for every run, space-separated (e.g. \"-config keys.yaml -redis-addr 127.0.0.1:6379\")")
	flag.StringVar(&o.key, "key", "", "an API key for POST /v3/<key> and /ws/v3/<key> in place of POST / and /socket2socket")
	rerender := flag.String("render", "", "only re-render report.md and chart.png of an earlier run from DIR/results.json, then exit")
	only := flag.String("only", "", "run only these steps (comma-separated; the floor always runs): "+strings.Join(stepNames, ", "))
	flag.Parse()
	o.gatewayArgs = strings.Fields(*gwArgs)
	if *rerender != "" {
		if err := render(*rerender); err != nil {
			fatal(err)
		}
		return
	}
	if *only != "" {
		o.only = map[string]bool{}
		for _, f := range strings.Split(*only, ",") {
			f = strings.TrimSpace(f)
			if !slices.Contains(stepNames, f) {
				fatal(fmt.Errorf("-only: unknown step %q (want %s)", f, strings.Join(stepNames, ", ")))
			}
			o.only[f] = true
		}
	}
	if o.quick {
		// Quick defaults; flags given explicitly still win.
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		quick := map[string]func(){
			"duration":          func() { o.duration = time.Second },
			"warmup":            func() { o.warmup = 300 * time.Millisecond },
			"conn-duration":     func() { o.connDuration = time.Second },
			"idle":              func() { o.idle = 1000 },
			"coalesce-clients":  func() { o.coalesceClients = 100 },
			"coalesce-duration": func() { o.coalesceDuration = 3 * time.Second },
			"subscribers":       func() { o.subscribers = 200 },
			"conns":             func() { *conns = "1000" },
			"rounds":            func() { o.rounds = 1 },
			"versus-vus":        func() { *versusVUs = "64" },
		}
		for name, apply := range quick {
			if !set[name] {
				apply()
			}
		}
	}
	o.conns = countList("-conns", *conns)
	o.versusVUs = countList("-versus-vus", *versusVUs)
	if o.rounds < 1 {
		fatal(fmt.Errorf("-rounds: %d, want at least 1", o.rounds))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, err := runSuite(ctx, &o)
	if err != nil {
		fatal(err)
	}
	if !res.Pass {
		fmt.Fprintln(os.Stderr, "suite: FAILED (see the checks above)")
		os.Exit(1)
	}
}

// render rewrites report.md and chart.png of the run in dir from its
// results.json.
func render(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		return err
	}
	var res results
	if err := json.Unmarshal(b, &res); err != nil {
		return fmt.Errorf("cannot parse %s/results.json: %w", dir, err)
	}
	if err := res.write(dir); err != nil {
		return err
	}
	logf("re-rendered %s", dir)
	return nil
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "suite:", err)
	os.Exit(2)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "suite: "+format+"\n", args...)
}

func runSuite(ctx context.Context, o *options) (*results, error) {
	if o.repo == "" {
		r, err := findRepo()
		if err != nil {
			return nil, err
		}
		o.repo = r
	}
	if o.outDir == "" {
		o.outDir = filepath.Join(o.repo, "bench", "results")
	}
	binDir := filepath.Join(o.outDir, "bin")
	dir := filepath.Join(o.outDir, time.Now().UTC().Format("20060102T150405Z"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	maxConns := o.idle
	for _, n := range o.conns {
		maxConns = max(maxConns, n)
	}
	// The suite holds every client socket; the gateway and the fixed node
	// inherit the raised limit. Only this process tree is affected.
	lim, err := proc.RaiseNoFile(uint64(maxConns)*2 + 4096)
	if err != nil || lim < uint64(maxConns)+1024 {
		return nil, fmt.Errorf("cannot raise RLIMIT_NOFILE for %d connections (got %d): %v", maxConns, lim, err)
	}

	switch o.driver {
	case "auto":
		o.driver = "loadgen"
		if _, err := exec.LookPath("wrk"); err == nil {
			o.driver = "wrk"
		}
	case "wrk":
		if _, err := exec.LookPath("wrk"); err != nil {
			return nil, errors.New("-driver wrk: wrk is not installed (apt-get install -y wrk, or task perf:wrk)")
		}
	case "loadgen":
	default:
		return nil, fmt.Errorf("-driver: want wrk, loadgen or auto, got %q", o.driver)
	}

	gwBin, nodeBin, relayBin := o.gatewayBin, filepath.Join(binDir, "fixednode"), filepath.Join(binDir, "minrelay")
	if gwBin == "" {
		gwBin = filepath.Join(binDir, "infura-gateway")
	}
	if !o.noBuild {
		logf("building the gateway and the fixed node into %s", binDir)
		if o.gatewayBin == "" {
			if err := build(o.repo, gwBin, ".", os.Stderr); err != nil {
				return nil, err
			}
		}
		if err := build(filepath.Join(o.repo, "bench"), nodeBin, "./cmd/fixednode", os.Stderr); err != nil {
			return nil, err
		}
		if err := build(filepath.Join(o.repo, "bench"), relayBin, "./cmd/minrelay", os.Stderr); err != nil {
			return nil, err
		}
	}

	res := &results{
		Timestamp: time.Now().UTC().Format(time.RFC3339),
		Machine:   describeMachine(),
		Config: config{
			Quick: o.quick, Driver: o.driver, VUs: o.vus, Repeat: max(1, o.repeat), DurationS: o.duration.Seconds(), WarmupS: o.warmup.Seconds(),
			Conns: o.conns, ConnDurationS: o.connDuration.Seconds(), Idle: o.idle,
			CoalesceClients: o.coalesceClients, CoalesceDurationS: o.coalesceDuration.Seconds(),
			HeadIntervalS: o.headInterval.Seconds(), Only: slices.Sorted(maps.Keys(o.only)),
			Rounds: o.rounds, VersusVUs: o.versusVUs,
		},
	}
	defer func() {
		if err := res.write(dir); err != nil {
			logf("cannot write results: %v", err)
		} else {
			logf("results in %s", dir)
		}
	}()

	node, nodeHTTP, nodeWS, err := startFixedNode(nodeBin, dir, o.headInterval)
	if err != nil {
		return res, err
	}
	defer node.stop()
	m := &measurer{
		dir: dir, hz: proc.ClockTicks(), driver: o.driver, warmup: o.warmup, duration: o.duration,
		timeout: 10 * time.Second, nodeHTTP: nodeHTTP, nodePID: node.pid(), progress: o.progress, repeat: o.repeat,
	}
	res.Machine.ClockTicks = m.hz

	// 1. The floor: the fixed node itself answering eth_blockNumber.
	logf("floor: %s POST / eth_blockNumber, %d connections, %s", o.driver, o.vus, o.duration)
	floor, err := m.measure(ctx, "floor", "floor: fixed node POST / eth_blockNumber", node.pid(),
		floorTarget(nodeHTTP), o.vus)
	if err != nil {
		return res, err
	}
	floor.Status = statusOf(floor.Errors == 0, true)
	res.Floor = floor
	res.FloorCPUusPerReq = floor.CPUusPerReq
	logf("floor: %.0f req/s, %.2f µs CPU/request", floor.RPS, floor.CPUusPerReq)
	if floor.CPUusPerReq == 0 {
		return res, errors.New("the floor measured no CPU: the run was too short for the 10 ms clock tick")
	}

	gwFlags := gatewayFlags(gwBin)
	// gw is the gateway under test; cpuRuns and connRuns measure it, and
	// the deferred stop ends whichever is running when the suite returns.
	var gw *server
	var gwAddr string
	defer func() { gw.stop() }()

	// Two gateway configurations. Passthrough (-cache=false) makes every
	// request reach the upstream, through the HTTP pool or the websocket
	// Mux: that is what the passthrough and Mux targets are about (with the
	// cache on, the head tracker answers eth_blockNumber itself). The
	// default configuration, cache on, is measured for the cache hit,
	// coalescing and memory.
	passArgs := []string{"-cache=false"}
	passNote := ""
	if !gwFlags["cache"] {
		passArgs, passNote = nil, "the gateway has no -cache flag: measured with its default configuration"
	}
	type pathSpec struct {
		key, label, route string
		kind              load.Kind
		method            string
		body              []byte
		target            float64
	}
	passPaths := []pathSpec{
		{"http_blocknumber", "HTTP /blocknumber (passthrough)", "/blocknumber", load.HTTP, "", nil, targetHTTP},
		{"ws_blocknumber", "/ws/blocknumber (websocket Mux)", "/ws/blocknumber", load.HTTP, "", nil, targetWSMux},
		{"rpc_post", "POST / eth_blockNumber (passthrough)", "/", load.HTTP, "POST", []byte(rpcBlockNumber), 0},
		{"socket2socket", "/socket2socket request loop (Mux)", "/socket2socket", load.WSRPC, "", nil, 0},
	}
	relayPaths := []pathSpec{
		{"relay_http_blocknumber", "reference relay: HTTP /blocknumber (fasthttp server + HostClient)", "/blocknumber", load.HTTP, "", nil, 0},
		{"relay_ws_blocknumber", "reference relay: /ws/blocknumber (minimal shared-socket mux)", "/ws/blocknumber", load.HTTP, "", nil, 0},
		{"relay_rpc_post", "reference relay: POST / eth_blockNumber (the body forwarded as it is)", "/", load.HTTP, "POST", []byte(rpcBlockNumber), 0},
	}
	cachePaths := []pathSpec{
		{"gasprice_cache", "/gasprice (cache hit)", "/gasprice", load.HTTP, "", nil, targetCacheHit},
		{"blocknumber_cached", "HTTP /blocknumber (cache on)", "/blocknumber", load.HTTP, "", nil, 0},
	}
	targetFor := func(p pathSpec, addr string) load.Target {
		if o.key != "" && p.route == "/" {
			p.route = "/v3/" + o.key
		}
		if o.key != "" && p.route == "/socket2socket" {
			p.route = "/ws/v3/" + o.key
		}
		if p.kind == load.WSRPC {
			return load.Target{Kind: p.kind, URL: "ws://" + addr + p.route}
		}
		return load.Target{Kind: p.kind, URL: "http://" + addr + p.route, Method: p.method, Body: p.body}
	}
	// cpuRuns measures CPU per request on each path of one gateway.
	cpuRuns := func(gwAddr string, specs []pathSpec, note string) error {
		for _, p := range specs {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var before promMetrics
			m.afterWarmup = nil
			if p.key == "ws_blocknumber" {
				m.afterWarmup = func() { before, _ = scrape(gwAddr) }
			}
			logf("%s: %d connections, %s", p.label, o.vus, o.duration)
			r, err := m.measure(ctx, p.key, p.label, gw.pid(), targetFor(p, gwAddr), o.vus)
			m.afterWarmup = nil
			if err != nil {
				return err
			}
			judge(r, floor, p.target, o.quick)
			r.Note = note
			res.Paths = append(res.Paths, r)
			logf("%s: %.0f req/s, %.2f µs CPU/request = %.2f× floor [%s], upstream %.3f req/req, errors %d",
				p.label, r.RPS, r.CPUusPerReq, r.Ratio, r.Status, r.UpstreamPerReq, r.Errors)
			if p.key == "ws_blocknumber" {
				after, _ := scrape(gwAddr)
				res.Frames = framesPerWrite(before, after)
			}
		}
		return nil
	}
	// connRuns checks zero errors at each connection count.
	connRuns := func(gwAddr string, specs []pathSpec) error {
		for _, n := range o.conns {
			for _, p := range specs {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				ramp := max(200*time.Millisecond, time.Duration(n)*time.Second/5000)
				logf("%s: %d connections (ramp %s, then %s)", p.label, n, ramp, o.connDuration)
				r, err := m.loadgen(ctx, targetFor(p, gwAddr), n, ramp+o.connDuration, ramp)
				if err != nil {
					return err
				}
				r.Key, r.Label, r.Driver, r.VUs = fmt.Sprintf("%s_%d", p.key, n), p.label, "loadgen", n
				r.Status = statusOf(r.Errors == 0 && r.Requests > 0, true)
				res.Conns = append(res.Conns, r)
				logf("%s at %d connections: %d requests, %.0f req/s, errors %s [%s]",
					p.label, n, r.Requests, r.RPS, errText(r), r.Status)
			}
		}
		if !gw.alive() {
			return errors.New("the gateway exited during the load runs; see its log")
		}
		return nil
	}

	// withPprof turns on a gateway's profiler when -pprof asks for profiles, and
	// points the measurer at it: on the admin listener, or the separate pprof listener
	// of older gateways.
	withPprof := func(args []string) []string {
		args = append(slices.Clone(args), o.gatewayArgs...)
		m.pprofAddr = ""
		if !o.pprof {
			return args
		}
		addr, err := freePort()
		if err != nil {
			return args
		}
		switch {
		case gwFlags["pprof"] && gwFlags["admin-listen"]:
			m.pprofAddr = addr
			return append(slices.Clone(args), "-admin-listen", addr, "-pprof")
		case gwFlags["pprof-listen"]:
			m.pprofAddr = addr
			return append(slices.Clone(args), "-pprof-listen", addr)
		}
		return args
	}
	if o.pprof && !gwFlags["pprof"] && !gwFlags["pprof-listen"] {
		logf("-pprof: the gateway has no profiler flag; no profiles")
	}

	// -only: CPU runs for the selected path keys; connection runs for the
	// selected paths when any is selected, else for every path.
	pathSelected := false
	for _, p := range append(slices.Clone(passPaths), cachePaths...) {
		pathSelected = pathSelected || o.only[p.key]
	}
	cpuSel := func(specs []pathSpec) []pathSpec {
		return slices.DeleteFunc(slices.Clone(specs), func(p pathSpec) bool { return !o.want(p.key) })
	}
	connSel := func(specs []pathSpec) []pathSpec {
		switch {
		case !o.want("conns"):
			return nil
		case pathSelected:
			return cpuSel(specs)
		}
		return specs
	}

	// 2. Passthrough: CPU per request, frames per write, many connections.
	if len(cpuSel(passPaths)) > 0 || len(connSel(passPaths)) > 0 {
		gw, gwAddr, err = startGateway(ctx, gwBin, dir, "gateway-passthrough.log", nodeHTTP, nodeWS, withPprof(passArgs)...)
		if err != nil {
			return res, err
		}
		if err := cpuRuns(gwAddr, cpuSel(passPaths), passNote); err != nil {
			return res, err
		}
		if err := connRuns(gwAddr, connSel(passPaths)); err != nil {
			return res, err
		}
		gw.stop()
	}

	// 3. Cache on (the default): cache hit, coalescing, many connections.
	if len(cpuSel(cachePaths)) > 0 || len(connSel(cachePaths[:1])) > 0 || o.want("coalescing") || o.want("subscriptions") {
		gw, gwAddr, err = startGateway(ctx, gwBin, dir, "gateway.log", nodeHTTP, nodeWS, withPprof(nil)...)
		if err != nil {
			return res, err
		}
		if err := cpuRuns(gwAddr, cpuSel(cachePaths), ""); err != nil {
			return res, err
		}
		// The cache hit's target is judged against the floor measured round by round
		// beside it (floorRounds); a quick run keeps the single ratio.
		if i := slices.IndexFunc(res.Paths, func(p *run) bool { return p.Key == cachePaths[0].key }); i >= 0 && !o.quick {
			r := res.Paths[i]
			logf("%s beside the floor: %d rounds, %d connections, %s", r.Label, o.rounds, o.vus, o.duration)
			if err := floorRounds(ctx, m, r, gw.pid(), targetFor(cachePaths[0], gwAddr), o.vus, o.rounds); err != nil {
				return res, err
			}
			judge(r, floor, r.Target, o.quick)
			logf("%s: %v beside the floor = median %.2f× [%s]", r.Label, r.FloorRoundRatios, r.Ratio, r.Status)
		}
		if o.want("coalescing") && ctx.Err() == nil {
			c, err := coalescing(ctx, m, "http://"+gwAddr, o)
			if err != nil {
				return res, err
			}
			res.Coalescing = c
		}
		if err := connRuns(gwAddr, connSel(cachePaths[:1])); err != nil {
			return res, err
		}
		if o.want("subscriptions") && ctx.Err() == nil {
			sub, err := subscriptions(ctx, m, gwAddr, o)
			if err != nil {
				return res, err
			}
			res.Subscriptions = sub
		}
		gw.stop()
	}

	// Reference: the thinnest relay of the gateway's shape on the same two paths, what
	// any relay built this way costs here before a line of gateway logic.
	if o.want("relay") && ctx.Err() == nil {
		m.pprofAddr = ""
		if o.pprof {
			// The relay's profiles sit beside the gateway's (pprof/relay_<path>.pb.gz):
			// where the two differ is the gateway's own work.
			if addr, err := freePort(); err == nil {
				m.pprofAddr = addr
			}
		}
		gw, gwAddr, err = startRelay(ctx, relayBin, dir, nodeHTTP, nodeWS, m.pprofAddr)
		if err != nil {
			return res, err
		}
		if err := cpuRuns(gwAddr, relayPaths, "bench/cmd/minrelay: no parsing, checks, metrics or timeouts"); err != nil {
			return res, err
		}
		gw.stop()
	}

	// Gateway ÷ relay, round by round (issue 25's targets). A quick run leaves it out
	// unless -only names it: its rounds are what make the ratios worth reading.
	if o.want("versus") && (!o.quick || o.only["versus"]) && ctx.Err() == nil {
		rows, err := versus(ctx, m, gwBin, relayBin, dir, nodeHTTP, nodeWS, append(slices.Clone(passArgs), o.gatewayArgs...), o)
		res.Versus = rows
		if err != nil {
			return res, err
		}
	}

	// 4. /socket2socket with an upstream socket per client, for contrast.
	perClient := &run{Key: "socket2socket_per_client", Label: "/socket2socket request loop (socket per client)", Status: "n/a"}
	switch {
	case !o.want(perClient.Key):
		// Left out by -only: no row at all.
	case !gwFlags["ws-per-client"]:
		perClient.Note = "the gateway has no -ws-per-client flag"
		res.Paths = append(res.Paths, perClient)
	default:
		gw, gwAddr, err = startGateway(ctx, gwBin, dir, "gateway-per-client.log", nodeHTTP, nodeWS,
			withPprof(append([]string{"-ws-per-client"}, passArgs...))...)
		if err != nil {
			return res, err
		}
		spec := pathSpec{perClient.Key, perClient.Label, "/socket2socket", load.WSRPC, "", nil, 0}
		if err := cpuRuns(gwAddr, []pathSpec{spec}, passNote); err != nil {
			return res, err
		}
		gw.stop()
	}

	// The floor again, after the gateway runs: ratios use the mean of both
	// floor runs, so a machine that got busier or quieter during the suite
	// moves the floor with the paths rather than skewing the ratios.
	if !o.quick && len(res.Paths) > 0 && ctx.Err() == nil {
		logf("floor (repeat): %s POST / eth_blockNumber, %d connections, %s", o.driver, o.vus, o.duration)
		again, err := m.measure(ctx, "floor_repeat", "floor (repeat, after the gateway runs)", node.pid(),
			floorTarget(nodeHTTP), o.vus)
		if err != nil {
			return res, err
		}
		again.Status = statusOf(again.Errors == 0, true)
		res.FloorRepeat = again
		if again.CPUusPerReq > 0 && again.Errors == 0 {
			res.FloorCPUusPerReq = round2((floor.CPUusPerReq + again.CPUusPerReq) / 2)
		}
		logf("floor (repeat): %.0f req/s, %.2f µs CPU/request; ratios use %.2f µs", again.RPS, again.CPUusPerReq, res.FloorCPUusPerReq)
		mean := &run{CPUusPerReq: res.FloorCPUusPerReq}
		for _, p := range res.Paths {
			if p.Status != "n/a" {
				judge(p, mean, p.Target, o.quick)
			}
		}
	}

	// 5. Memory of idle /socket2socket clients, on a fresh gateway.
	if o.want("memory") && ctx.Err() == nil {
		gw, gwAddr, err = startGateway(ctx, gwBin, dir, "gateway-idle.log", nodeHTTP, nodeWS)
		if err != nil {
			return res, err
		}
		mem, err := idleMemory(ctx, gw.pid(), gwAddr, o)
		if err != nil {
			// Recorded as a failed check rather than aborting: the rest
			// of the report is still worth writing.
			logf("idle memory: %v", err)
			mem = &memory{Clients: o.idle, TargetKiB: targetIdleKiB, Status: "fail", Note: err.Error()}
		}
		res.Memory = mem
		gw.stop()

		// The same with every client subscribed to newHeads, on another fresh gateway
		// with its profiler on: RSS, goroutines and the heap's top entries.
		var args []string
		pprofAddr := ""
		if gwFlags["pprof"] && gwFlags["admin-listen"] {
			if pprofAddr, err = freePort(); err != nil {
				return res, err
			}
			args = []string{"-admin-listen", pprofAddr, "-pprof"}
		}
		gw, gwAddr, err = startGateway(ctx, gwBin, dir, "gateway-subscribed.log", nodeHTTP, nodeWS, args...)
		if err != nil {
			return res, err
		}
		sm, err := subscribedMemory(ctx, gw.pid(), gwAddr, pprofAddr, gwBin, dir, o)
		if err != nil {
			logf("subscribed memory: %v", err)
			sm = &subMemory{Clients: o.idle, TargetKiB: targetSubscribedKiB, Status: "fail", Note: err.Error()}
		}
		res.SubMemory = sm
		gw.stop()
	}
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	res.finish()
	fmt.Print(res.markdown())
	return res, nil
}

// judge sets the ratio and status of a path run.
func judge(r, floor *run, target float64, quick bool) {
	switch {
	case len(r.FloorRoundRatios) > 0:
		r.Ratio = median(r.FloorRoundRatios)
	case floor.CPUusPerReq > 0:
		r.Ratio = round2(r.CPUusPerReq / floor.CPUusPerReq)
	}
	r.Target = target
	switch {
	case r.Errors > 0 || r.Requests == 0:
		r.Status = "fail"
	case target == 0 || quick:
		// Quick runs last about a second: 10 ms clock ticks and a cold
		// process make ratios too coarse to judge.
		r.Status = "info"
	default:
		r.Status = statusOf(r.Ratio <= target, true)
	}
}

func statusOf(ok, judged bool) string {
	switch {
	case !judged:
		return "info"
	case ok:
		return "pass"
	}
	return "fail"
}

// framesPerWrite reports how well the Mux batches frames into writes (and
// how many messages one read brings in), from the gateway's counters over
// the /ws/blocknumber run.
func framesPerWrite(before, after promMetrics) *frames {
	f := &frames{}
	if before == nil || after == nil {
		f.Note = "could not scrape /metrics"
		return f
	}
	delta := func(name string, labels ...string) (float64, bool) {
		a, ok1 := after.sum(name, labels...)
		b, ok2 := before.sum(name, labels...)
		return a - b, ok1 && ok2
	}
	var ok [4]bool
	f.Writes, ok[0] = delta("gateway_upstream_ws_writes_total")
	f.FramesWritten, ok[1] = delta("gateway_upstream_ws_frames_written_total")
	f.Reads, ok[2] = delta("gateway_upstream_ws_reads_total")
	f.MessagesIn, ok[3] = delta("gateway_upstream_ws_messages_total", `direction="in"`)
	if f.Writes > 0 {
		f.FramesPerWrite = round2(f.FramesWritten / f.Writes)
	}
	if f.Reads > 0 {
		f.MessagesPerRead = round2(f.MessagesIn / f.Reads)
	}
	var missing []string
	for i, name := range []string{"gateway_upstream_ws_writes_total", "gateway_upstream_ws_frames_written_total",
		"gateway_upstream_ws_reads_total", "gateway_upstream_ws_messages_total"} {
		if !ok[i] {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		f.Note = "missing metrics: " + strings.Join(missing, ", ")
	}
	return f
}

// subscriptions opens many /socket2socket clients subscribed to newHeads
// and checks that each receives every head produced once all are
// subscribed, and how many upstream eth_subscribe calls that took (one
// shared upstream subscription is the Mux's design).
func subscriptions(ctx context.Context, m *measurer, gwAddr string, o *options) (*subs, error) {
	ramp := max(500*time.Millisecond, time.Duration(o.subscribers)*time.Second/1000)
	d := ramp + 5*time.Second
	if o.quick {
		d = ramp + 3*time.Second
	}
	logf("subscriptions: %d newHeads subscribers on /socket2socket for %s", o.subscribers, d)
	c0, err := nodeCounts(m.nodeHTTP)
	if err != nil {
		return nil, err
	}
	cfg := load.Config{VUs: o.subscribers, Duration: d, Ramp: ramp, Timeout: m.timeout}
	if m.progress {
		cfg.Progress = os.Stderr
	}
	lr, err := load.New(cfg, load.Target{Kind: load.WSSub, URL: "ws://" + gwAddr + "/socket2socket"})
	if err != nil {
		return nil, err
	}
	r := lr.Run(ctx)
	c1, err := nodeCounts(m.nodeHTTP)
	if err != nil {
		return nil, err
	}
	sb := &subs{
		Subscribers: o.subscribers, Subscribed: r.OK, DurationS: r.DurationS, Errors: r.ErrorCount, ErrorKinds: r.Errors,
		Heads: c1.Heads - c0.Heads, Notifications: r.Notifications, MinPerSubscriber: r.MinNotifs,
		UpstreamSubscribes: c1.Methods["eth_subscribe"] - c0.Methods["eth_subscribe"],
	}
	// The last subscriber joins at the end of the ramp and the run may stop
	// just before or after a head: it is owed every head after the ramp,
	// less one at each end.
	owed := int64(sb.Heads) - int64(ramp/o.headInterval) - 2
	sb.Owed = uint64(max(owed, 1))
	sb.Status = statusOf(sb.Errors == 0 && sb.Subscribed == uint64(o.subscribers) && sb.MinPerSubscriber >= sb.Owed, true)
	logf("subscriptions: %d/%d subscribed, %d heads, %d notifications, fewest per subscriber %d (owed %d), %d upstream eth_subscribe [%s]",
		sb.Subscribed, sb.Subscribers, sb.Heads, sb.Notifications, sb.MinPerSubscriber, sb.Owed, sb.UpstreamSubscribes, sb.Status)
	return sb, nil
}

// coalescing runs many clients on /gasprice and counts, at the fixed node,
// the eth_gasPrice calls that reached it against the heads produced.
func coalescing(ctx context.Context, m *measurer, base string, o *options) (*coalesce, error) {
	logf("coalescing: %d clients on /gasprice for %s", o.coalesceClients, o.coalesceDuration)
	c0, err := nodeCounts(m.nodeHTTP)
	if err != nil {
		return nil, err
	}
	r, err := m.loadgen(ctx, load.Target{Kind: load.HTTP, URL: base + "/gasprice"}, o.coalesceClients,
		o.coalesceDuration, 0)
	if err != nil {
		return nil, err
	}
	c1, err := nodeCounts(m.nodeHTTP)
	if err != nil {
		return nil, err
	}
	c := &coalesce{
		Clients: o.coalesceClients, DurationS: r.DurationS, Requests: r.Requests, Errors: r.Errors, RPS: r.RPS,
		Heads:            c1.Heads - c0.Heads,
		UpstreamGasPrice: c1.Methods["eth_gasPrice"] - c0.Methods["eth_gasPrice"],
	}
	// Head intervals that ended inside the run: the last c.Heads entries.
	if k := int(c.Heads); k > 0 && k <= len(c1.GasPricePerHead) {
		c.PerHead = c1.GasPricePerHead[len(c1.GasPricePerHead)-k:]
		for _, v := range c.PerHead {
			c.MaxPerHead = max(c.MaxPerHead, v)
		}
	}
	c.Allowed = c.Heads + coalesceSlack
	c.Status = statusOf(c.Errors == 0 && r.Requests > 0 && c.UpstreamGasPrice <= c.Allowed, true)
	logf("coalescing: %d requests, %d heads, %d upstream eth_gasPrice (allowed %d; per head interval %v) [%s]",
		c.Requests, c.Heads, c.UpstreamGasPrice, c.Allowed, c.PerHead, c.Status)
	return c, nil
}

// idleMemory opens o.idle idle /socket2socket clients and reports the
// gateway's RSS growth per client.
func idleMemory(ctx context.Context, pid int, gwAddr string, o *options) (*memory, error) {
	var gauge float64
	cr, err := openClients(ctx, "idle memory", pid, "ws://"+gwAddr+"/socket2socket", load.WSRPC, 500*time.Millisecond,
		load.WSIdle, o.idle, func(l load.Live) bool { return l.Connections >= int64(o.idle) }, 2*time.Second, nil,
		func(load.Live) {
			if pm, err := scrape(gwAddr); err == nil {
				gauge, _ = pm.sum("gateway_ws_client_connections")
			}
		})
	if err != nil {
		return nil, err
	}
	connected := cr.live.Connections
	mem := &memory{
		Clients: o.idle, Connected: connected, GatewayGauge: gauge, RSSBeforeKiB: cr.rssBefore, RSSAfterKiB: cr.rssAfter,
		TargetKiB: targetIdleKiB, Errors: cr.result.ErrorCount, ErrorKinds: cr.result.Errors,
	}
	if connected > 0 {
		mem.KiBPerClient = round2(float64(cr.rssAfter-cr.rssBefore) / float64(connected))
	}
	mem.Status = statusOf(connected == int64(o.idle) && mem.Errors == 0 && mem.KiBPerClient <= targetIdleKiB, true)
	logf("idle memory: %d connected, RSS %d -> %d KiB, %.2f KiB per client [%s]",
		connected, cr.rssBefore, cr.rssAfter, mem.KiBPerClient, mem.Status)
	return mem, nil
}

func describeMachine() machine {
	mc := machine{NProc: runtime.NumCPU(), GoVersion: runtime.Version(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				mc.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		mc.Kernel = strings.TrimSpace(string(b))
	}
	// wrk -v exits 1 after printing "wrk <version> [epoll] Copyright ...".
	if out, _ := exec.Command("wrk", "-v").CombinedOutput(); len(out) > 0 {
		if f := strings.Fields(string(out)); len(f) >= 2 && f[0] == "wrk" {
			mc.Wrk = "wrk " + f[1]
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0]) // MemTotal: N kB
		if len(f) == 3 {
			if kb, err := strconv.ParseFloat(f[1], 64); err == nil {
				mc.Memory = fmt.Sprintf("%.1f GiB", kb/(1<<20))
			}
		}
	}
	return mc
}

// write stores results.json, report.md and chart.png in dir.
func (r *results) write(dir string) error {
	if !r.finished {
		r.finish()
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "report.md"), []byte(r.markdown()), 0o644); err != nil {
		return err
	}
	if r.Floor != nil {
		if err := r.chart(filepath.Join(dir, "chart.png")); err != nil {
			return fmt.Errorf("chart: %w", err)
		}
	}
	return nil
}
