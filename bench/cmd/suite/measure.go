package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/bench/internal/load"
	"github.com/infura-gateway/infura-gateway/bench/internal/proc"
)

// run is one measured load run: what was sent, what came back, and what it
// cost the server process.
type run struct {
	Key        string            `json:"key"`
	Label      string            `json:"label"`
	Driver     string            `json:"driver"`
	URL        string            `json:"url"`
	VUs        int               `json:"vus"`
	Requests   uint64            `json:"requests"`
	Errors     uint64            `json:"errors"`
	ErrorKinds map[string]uint64 `json:"error_kinds,omitempty"`
	DurationS  float64           `json:"duration_s"`
	RPS        float64           `json:"rate_rps"`
	LatencyMS  load.Latency      `json:"latency_ms"`
	// CPU of the process under test (the gateway, or the fixed node for
	// the floor) over the run.
	CPUTicks    int64   `json:"cpu_ticks"`
	CPUusPerReq float64 `json:"cpu_us_per_req"`
	// UserCPUusPerReq is the user-space part (utime): the process's own code, without
	// the kernel's time in its syscalls.
	UserCPUusPerReq float64 `json:"user_cpu_us_per_req,omitempty"`
	// CPUSamples are the CPU per request of every run with -repeat; the
	// row reports the median run.
	CPUSamples []float64 `json:"cpu_us_per_req_runs,omitempty"`
	// Ratio is CPUusPerReq over the floor's; Target the bar it must meet
	// (0: no target, reported for information).
	Ratio float64 `json:"ratio_to_floor,omitempty"`
	// FloorRoundRatios are the per-round ratios against the floor measured beside the
	// path (floorRounds); when there are any, Ratio is their median.
	FloorRoundRatios []float64 `json:"floor_round_ratios,omitempty"`
	Target           float64   `json:"target_ratio,omitempty"`
	Status           string    `json:"status"` // pass, fail, info, n/a
	// Upstream cost seen at the fixed node: requests it answered per
	// gateway request, and its CPU per gateway request.
	UpstreamPerReq  float64 `json:"upstream_requests_per_req,omitempty"`
	NodeCPUusPerReq float64 `json:"node_cpu_us_per_req,omitempty"`
	// SyscallsPerReq is the process's read and write syscalls per request
	// (/proc/<pid>/io): a figure that another process loading the machine does not move.
	SyscallsPerReq float64 `json:"syscalls_per_req,omitempty"`
	Note           string  `json:"note,omitempty"`
}

// measurer holds what every measurement needs.
type measurer struct {
	dir      string
	hz       int64
	driver   string // wrk or loadgen, for HTTP paths
	warmup   time.Duration
	duration time.Duration
	timeout  time.Duration
	nodeHTTP string
	nodePID  int
	progress bool
	// afterWarmup, when set, runs between the warm-up and the measured run
	// (to snapshot the gateway's counters).
	afterWarmup func()
	// pprofAddr is the pprof listener of the gateway under test (-pprof),
	// empty when not profiling.
	pprofAddr string
	// repeat is how many measured runs each path gets (-repeat).
	repeat int
}

// oneRunEach makes each measure one unprofiled run, for steps whose rounds are the
// repetition (versus, floorRounds), until the returned func puts -repeat and the
// profiler back.
func (m *measurer) oneRunEach() (restore func()) {
	repeat, pprofAddr := m.repeat, m.pprofAddr
	m.repeat, m.pprofAddr = 1, ""
	return func() { m.repeat, m.pprofAddr = repeat, pprofAddr }
}

// measure warms up, then runs tgt for m.duration with vus connections,
// sampling the CPU ticks of pid (and of the fixed node) around the run.
func (m *measurer) measure(ctx context.Context, key, label string, pid int, tgt load.Target, vus int) (*run, error) {
	driver := "loadgen"
	if tgt.Kind == load.HTTP && m.driver == "wrk" {
		driver = "wrk"
	}
	drive := func(d time.Duration) (*run, error) {
		if driver == "wrk" {
			return m.wrk(ctx, tgt, vus, d)
		}
		return m.loadgen(ctx, tgt, vus, d, 0)
	}
	if m.warmup > 0 {
		if _, err := drive(m.warmup); err != nil {
			return nil, fmt.Errorf("%s warm-up: %w", label, err)
		}
	}
	if m.afterWarmup != nil {
		m.afterWarmup()
	}
	var profiled chan error
	if m.pprofAddr != "" && pid != m.nodePID {
		profiled = make(chan error, 1)
		go func() { profiled <- m.cpuProfile(key) }()
	}
	// once is one measured run with its CPU and upstream accounting.
	once := func() (*run, error) {
		c0, err := nodeCounts(m.nodeHTTP)
		if err != nil {
			return nil, err
		}
		u0, s0, err := proc.CPUTimes(pid)
		if err != nil {
			return nil, fmt.Errorf("cannot read CPU time of pid %d: %w", pid, err)
		}
		n0, _ := proc.CPUTicks(m.nodePID)
		sr0, sw0, _ := proc.Syscalls(pid)
		r, err := drive(m.duration)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", label, err)
		}
		u1, s1, err := proc.CPUTimes(pid)
		if err != nil {
			return nil, fmt.Errorf("cannot read CPU time of pid %d (did it exit?): %w", pid, err)
		}
		n1, _ := proc.CPUTicks(m.nodePID)
		sr1, sw1, serr := proc.Syscalls(pid)
		c1, err := nodeCounts(m.nodeHTTP)
		if err != nil {
			return nil, err
		}
		r.Key, r.Label, r.Driver, r.VUs = key, label, driver, vus
		r.CPUTicks = u1 + s1 - u0 - s0
		if r.Requests > 0 {
			r.CPUusPerReq = round2(float64(r.CPUTicks) * 1e6 / float64(m.hz) / float64(r.Requests))
			r.UserCPUusPerReq = round2(float64(u1-u0) * 1e6 / float64(m.hz) / float64(r.Requests))
			if serr == nil {
				r.SyscallsPerReq = round2(float64(sr1-sr0+sw1-sw0) / float64(r.Requests))
			}
			if pid != m.nodePID {
				r.UpstreamPerReq = round4(float64(c1.Requests-c0.Requests) / float64(r.Requests))
				r.NodeCPUusPerReq = round2(float64(n1-n0) * 1e6 / float64(m.hz) / float64(r.Requests))
			}
		}
		return r, nil
	}
	// With -repeat, the run with the median CPU per request stands for the
	// path: one run disturbed by another process on the machine moves the
	// median much less than the mean. Errors of every run count.
	var runs []*run
	var errs uint64
	for i := 0; i < max(1, m.repeat); i++ {
		r, err := once()
		if err != nil {
			return nil, err
		}
		errs += r.Errors
		runs = append(runs, r)
	}
	samples := make([]float64, len(runs))
	for i, r := range runs {
		samples[i] = r.CPUusPerReq
	}
	slices.SortFunc(runs, func(a, b *run) int { return cmp.Compare(a.CPUusPerReq, b.CPUusPerReq) })
	r := runs[len(runs)/2]
	if len(runs) > 1 {
		r.CPUSamples = samples
		if errs != r.Errors {
			r.Errors = errs
			r.ErrorKinds = map[string]uint64{}
			for _, o := range runs {
				for k, v := range o.ErrorKinds {
					r.ErrorKinds[k] += v
				}
			}
		}
	}
	if profiled != nil {
		if err := <-profiled; err != nil {
			logf("%s: no CPU profile: %v", label, err)
		} else {
			r.Note = strings.TrimSpace(r.Note + " profiled during the run: pprof/" + key + ".pb.gz")
		}
	}
	return r, nil
}

// cpuProfile fetches a CPU profile of the gateway covering the measured
// run (whole seconds, as pprof takes them) into <dir>/pprof/<key>.pb.gz.
func (m *measurer) cpuProfile(key string) error {
	secs := max(1, int(m.duration.Seconds()))
	var req fasthttp.Request
	var resp fasthttp.Response
	req.SetRequestURI(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", m.pprofAddr, secs))
	if err := fasthttp.DoTimeout(&req, &resp, time.Duration(secs+10)*time.Second); err != nil {
		return err
	}
	if resp.StatusCode() != 200 {
		return fmt.Errorf("status %d", resp.StatusCode())
	}
	if err := os.MkdirAll(filepath.Join(m.dir, "pprof"), 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(m.dir, "pprof", key+".pb.gz"), resp.Body(), 0o644)
}

// loadgen drives tgt with the in-process load driver.
func (m *measurer) loadgen(ctx context.Context, tgt load.Target, vus int, d, ramp time.Duration) (*run, error) {
	cfg := load.Config{VUs: vus, Duration: d, Timeout: m.timeout, Ramp: ramp}
	if m.progress {
		cfg.Progress = os.Stderr
	}
	lr, err := load.New(cfg, tgt)
	if err != nil {
		return nil, err
	}
	res := lr.Run(ctx)
	return fromLoad(res), nil
}

func fromLoad(res *load.Result) *run {
	return &run{
		URL: res.URL, Requests: res.OK + res.ErrorCount, Errors: res.ErrorCount + res.Dropped,
		ErrorKinds: res.Errors, DurationS: res.DurationS, RPS: res.RateRPS, LatencyMS: res.LatencyMS,
	}
}

// wrkScript sets the request and prints the summary as one JSON line, so
// the suite does not parse wrk's human output.
const wrkScript = `
wrk.method = %q
wrk.body = %s
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%%d,"duration_us":%%d,"connect":%%d,"read":%%d,"write":%%d,"status":%%d,"timeout":%%d,"mean":%%f,"p50":%%d,"p90":%%d,"p95":%%d,"p99":%%d,"max":%%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(95),
    latency:percentile(99), latency.max))
end
`

type wrkSummary struct {
	Requests   uint64  `json:"requests"`
	DurationUS float64 `json:"duration_us"`
	Connect    uint64  `json:"connect"`
	Read       uint64  `json:"read"`
	Write      uint64  `json:"write"`
	Status     uint64  `json:"status"`
	Timeout    uint64  `json:"timeout"`
	Mean       float64 `json:"mean"`
	P50        float64 `json:"p50"`
	P90        float64 `json:"p90"`
	P95        float64 `json:"p95"`
	P99        float64 `json:"p99"`
	Max        float64 `json:"max"`
}

// wrk drives tgt with wrk: one thread, vus connections, whole seconds.
// wrk checks status codes (non-2xx/3xx count as errors) but not bodies; the
// suite's connection runs use loadgen, which validates every reply.
func (m *measurer) wrk(ctx context.Context, tgt load.Target, vus int, d time.Duration) (*run, error) {
	method := tgt.Method
	if method == "" {
		method = "GET"
	}
	body := "nil"
	if len(tgt.Body) > 0 {
		body = luaString(string(tgt.Body))
	}
	// A script per run: the versus step's together mode runs two wrk at once.
	f, err := os.CreateTemp(m.dir, "wrk-*.lua")
	if err != nil {
		return nil, err
	}
	script := f.Name()
	defer os.Remove(script)
	_, err = f.WriteString(fmt.Sprintf(wrkScript, method, body))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	secs := max(1, int(math.Round(d.Seconds())))
	cmd := exec.CommandContext(ctx, "wrk", "-t1", "-c"+strconv.Itoa(vus), "-d"+strconv.Itoa(secs)+"s",
		"--timeout", strconv.Itoa(max(1, int(m.timeout.Seconds())))+"s", "-s", script, tgt.URL)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if err != nil {
		return nil, fmt.Errorf("wrk: %w: %s", err, out)
	}
	var s *wrkSummary
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "WRKJSON "); ok {
			s = &wrkSummary{}
			if err := json.Unmarshal([]byte(rest), s); err != nil {
				return nil, fmt.Errorf("cannot parse wrk summary %q: %w", rest, err)
			}
		}
	}
	if s == nil {
		return nil, fmt.Errorf("wrk printed no summary: %s", out)
	}
	r := &run{
		URL: tgt.URL, Requests: s.Requests, DurationS: round2(s.DurationUS / 1e6),
		ErrorKinds: map[string]uint64{},
		LatencyMS: load.Latency{Mean: round3(s.Mean / 1e3), P50: s.P50 / 1e3, P90: s.P90 / 1e3,
			P95: s.P95 / 1e3, P99: s.P99 / 1e3, Max: s.Max / 1e3},
	}
	for k, v := range map[string]uint64{"connect": s.Connect, "read": s.Read, "write": s.Write, "http_non2xx": s.Status, "timeout": s.Timeout} {
		if v > 0 {
			r.ErrorKinds[k] = v
			r.Errors += v
		}
	}
	if s.DurationUS > 0 {
		r.RPS = round1(float64(s.Requests-s.Status) / (s.DurationUS / 1e6))
	}
	return r, nil
}

// luaString quotes s as a Lua long-bracket-free string literal.
func luaString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, c := range []byte(s) {
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c > 0x7e:
			fmt.Fprintf(&b, "\\%03d", c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// counts is the fixed node's GET /counts document.
type counts struct {
	Heads      uint64            `json:"heads"`
	HeadNumber uint64            `json:"head_number"`
	Requests   uint64            `json:"requests"`
	Methods    map[string]uint64 `json:"methods"`
	// GasPricePerHead is eth_gasPrice calls per completed head interval.
	GasPricePerHead []uint64 `json:"gas_price_per_head"`
}

func nodeCounts(addr string) (*counts, error) {
	code, body, err := fasthttp.GetTimeout(nil, "http://"+addr+"/counts", 5*time.Second)
	if err != nil || code != 200 {
		return nil, fmt.Errorf("cannot read fixed node counts (status %d): %v", code, err)
	}
	var c counts
	if err := json.Unmarshal(body, &c); err != nil {
		return nil, fmt.Errorf("cannot parse fixed node counts: %w", err)
	}
	return &c, nil
}

// promMetrics is a scrape of a Prometheus text exposition: series (name
// with labels, as printed) to value.
type promMetrics map[string]float64

func scrape(addr string) (promMetrics, error) {
	code, body, err := fasthttp.GetTimeout(nil, "http://"+metricsAddr(addr)+"/metrics", 5*time.Second)
	if err != nil || code != 200 {
		return nil, fmt.Errorf("cannot scrape gateway /metrics (status %d): %v", code, err)
	}
	pm := promMetrics{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		pm[line[:i]] = v
	}
	return pm, nil
}

// sum adds every series of metric name whose labels contain all of
// labels (e.g. `direction="in"`); ok is false when no series matched.
func (pm promMetrics) sum(name string, labels ...string) (float64, bool) {
	var total float64
	found := false
	for series, v := range pm {
		base, rest, _ := strings.Cut(series, "{")
		if base != name {
			continue
		}
		match := true
		for _, l := range labels {
			if !strings.Contains(rest, l) {
				match = false
			}
		}
		if match {
			total += v
			found = true
		}
	}
	return total, found
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }
func round2(v float64) float64 { return math.Round(v*100) / 100 }
func round3(v float64) float64 { return math.Round(v*1000) / 1000 }
func round4(v float64) float64 { return math.Round(v*1e4) / 1e4 }
