package main

import (
	"fmt"
	"math"
	"strings"
)

// results is results.json.
type results struct {
	Timestamp string  `json:"timestamp"`
	Machine   machine `json:"machine"`
	Config    config  `json:"config"`
	Floor     *run    `json:"floor"`
	// FloorRepeat is the floor measured again after the gateway runs (full
	// runs only); FloorCPUusPerReq is what the ratios divide by: the mean
	// of both floor runs, or the first alone.
	FloorRepeat      *run         `json:"floor_repeat,omitempty"`
	FloorCPUusPerReq float64      `json:"floor_cpu_us_per_req"`
	Paths            []*run       `json:"paths"`
	Frames           *frames      `json:"ws_frames,omitempty"`
	Coalescing       *coalesce    `json:"coalescing,omitempty"`
	Subscriptions    *subs        `json:"subscriptions,omitempty"`
	Conns            []*run       `json:"connection_runs"`
	Memory           *memory      `json:"idle_memory,omitempty"`
	SubMemory        *subMemory   `json:"subscribed_memory,omitempty"`
	Versus           []*versusRow `json:"versus,omitempty"`
	Checks           []check      `json:"checks"`
	Pass             bool         `json:"pass"`

	finished bool
}

type machine struct {
	NProc      int    `json:"nproc"`
	CPUModel   string `json:"cpu_model"`
	Memory     string `json:"memory"`
	Kernel     string `json:"kernel"`
	GoVersion  string `json:"go_version"`
	GOOS       string `json:"goos"`
	GOARCH     string `json:"goarch"`
	Wrk        string `json:"wrk,omitempty"`
	ClockTicks int64  `json:"clock_ticks_per_s"`
}

type config struct {
	Quick             bool     `json:"quick"`
	Driver            string   `json:"driver"`
	VUs               int      `json:"vus"`
	Repeat            int      `json:"repeat"`
	DurationS         float64  `json:"duration_s"`
	WarmupS           float64  `json:"warmup_s"`
	Conns             []int    `json:"conns"`
	ConnDurationS     float64  `json:"conn_duration_s"`
	Idle              int      `json:"idle_clients"`
	CoalesceClients   int      `json:"coalesce_clients"`
	CoalesceDurationS float64  `json:"coalesce_duration_s"`
	HeadIntervalS     float64  `json:"head_interval_s"`
	Only              []string `json:"only,omitempty"`
	Rounds            int      `json:"rounds"`
	VersusVUs         []int    `json:"versus_vus"`
}

type frames struct {
	Writes          float64 `json:"writes"`
	FramesWritten   float64 `json:"frames_written"`
	Reads           float64 `json:"reads"`
	MessagesIn      float64 `json:"messages_in"`
	FramesPerWrite  float64 `json:"frames_per_write"`
	MessagesPerRead float64 `json:"messages_per_read"`
	Note            string  `json:"note,omitempty"`
}

type coalesce struct {
	Clients          int     `json:"clients"`
	DurationS        float64 `json:"duration_s"`
	Requests         uint64  `json:"requests"`
	Errors           uint64  `json:"errors"`
	RPS              float64 `json:"rate_rps"`
	Heads            uint64  `json:"heads"`
	UpstreamGasPrice uint64  `json:"upstream_eth_gasPrice"`
	Allowed          uint64  `json:"allowed"`
	// PerHead is eth_gasPrice calls fixednode received in each head
	// interval that ended during the run (the first may begin before it).
	PerHead    []uint64 `json:"upstream_eth_gasPrice_per_head"`
	MaxPerHead uint64   `json:"max_per_head"`
	Status     string   `json:"status"`
}

type subs struct {
	Subscribers        int               `json:"subscribers"`
	Subscribed         uint64            `json:"subscribed"`
	DurationS          float64           `json:"duration_s"`
	Errors             uint64            `json:"errors"`
	ErrorKinds         map[string]uint64 `json:"error_kinds,omitempty"`
	Heads              uint64            `json:"heads"`
	Notifications      uint64            `json:"notifications"`
	MinPerSubscriber   uint64            `json:"min_notifications_per_subscriber"`
	Owed               uint64            `json:"owed_per_subscriber"`
	UpstreamSubscribes uint64            `json:"upstream_eth_subscribe"`
	Status             string            `json:"status"`
}

type memory struct {
	Clients      int               `json:"clients"`
	Connected    int64             `json:"connected"`
	GatewayGauge float64           `json:"gateway_ws_client_connections"`
	RSSBeforeKiB int64             `json:"rss_before_kib"`
	RSSAfterKiB  int64             `json:"rss_after_kib"`
	KiBPerClient float64           `json:"kib_per_client"`
	TargetKiB    float64           `json:"target_kib"`
	Errors       uint64            `json:"errors"`
	ErrorKinds   map[string]uint64 `json:"error_kinds,omitempty"`
	Status       string            `json:"status"`
	Note         string            `json:"note,omitempty"`
}

type check struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Detail string `json:"detail"`
}

// finish collects every judged figure into Checks and sets Pass: true only
// when every check passed (info and n/a rows do not fail a run; a missing
// section does).
func (r *results) finish() {
	r.finished = true
	r.Checks = nil
	add := func(name, status, detail string) { r.Checks = append(r.Checks, check{name, status, detail}) }
	if r.Floor == nil {
		add("floor", "fail", "not measured")
	} else {
		add("floor", r.Floor.Status, fmt.Sprintf("%.2f µs CPU/request, %s errors", r.Floor.CPUusPerReq, errText(r.Floor)))
	}
	if f := r.FloorRepeat; f != nil {
		add("floor (repeat)", f.Status, fmt.Sprintf("%.2f µs CPU/request, %s errors; ratios use %.2f µs",
			f.CPUusPerReq, errText(f), r.FloorCPUusPerReq))
	}
	for _, p := range r.Paths {
		d := fmt.Sprintf("%.2f µs CPU/request, %.2f× floor", p.CPUusPerReq, p.Ratio)
		if n := len(p.FloorRoundRatios); n > 0 {
			d = fmt.Sprintf("%.2f µs CPU/request; %.2f× floor, the median of %d rounds beside it %v", p.CPUusPerReq, p.Ratio, n, p.FloorRoundRatios)
		}
		if p.Target > 0 {
			d += fmt.Sprintf(" (target ≤ %.2f×)", p.Target)
		}
		if p.Status == "n/a" {
			d = p.Note
		}
		add("cpu "+p.Label, p.Status, d+", errors "+errText(p))
	}
	if len(r.Paths) == 0 {
		add("paths", "fail", "not measured")
	}
	r.versusChecks(add)
	for _, c := range r.Conns {
		add(fmt.Sprintf("%d connections %s", c.VUs, c.Label), c.Status, "errors "+errText(c))
	}
	if len(r.Conns) == 0 && len(r.Config.Conns) > 0 {
		add("connection runs", "fail", "not run")
	}
	if c := r.Coalescing; c != nil {
		add("coalescing", c.Status, fmt.Sprintf("%d upstream eth_gasPrice for %d heads (allowed %d), %d errors",
			c.UpstreamGasPrice, c.Heads, c.Allowed, c.Errors))
	} else {
		add("coalescing", "fail", "not run")
	}
	if sb := r.Subscriptions; sb != nil {
		add("subscriptions", sb.Status, fmt.Sprintf("%d/%d subscribed, fewest notifications per subscriber %d (owed %d of %d heads), %d errors",
			sb.Subscribed, sb.Subscribers, sb.MinPerSubscriber, sb.Owed, sb.Heads, sb.Errors))
	} else {
		add("subscriptions", "fail", "not run")
	}
	if m := r.Memory; m != nil {
		d := fmt.Sprintf("%.2f KiB per idle client (target ≤ %.0f), %d/%d connected, %d errors",
			m.KiBPerClient, m.TargetKiB, m.Connected, m.Clients, m.Errors)
		if m.Note != "" {
			d = m.Note
		}
		add("idle memory", m.Status, d)
	} else {
		add("idle memory", "fail", "not run")
	}
	if m := r.SubMemory; m != nil {
		d := fmt.Sprintf("%.2f KiB per newHeads subscriber (target ≤ %.0f), %.2f goroutines each, %d/%d subscribed, %d errors",
			m.KiBPerClient, m.TargetKiB, m.GoroutinesPerClient, m.Subscribed, m.Clients, m.Errors)
		if m.Status == "fail" && m.Note != "" && m.Subscribed == 0 {
			d = m.Note
		}
		add("subscribed memory", m.Status, d)
	} else {
		add("subscribed memory", "fail", "not run")
	}
	if len(r.Config.Only) > 0 {
		// A partial run (-only): sections that were not selected are
		// skipped, not failed.
		for i := range r.Checks {
			if r.Checks[i].Status == "fail" && (r.Checks[i].Detail == "not run" || r.Checks[i].Detail == "not measured") {
				r.Checks[i].Status, r.Checks[i].Detail = "skipped", "not selected by -only"
			}
		}
	}
	r.Pass = true
	for _, c := range r.Checks {
		if c.Status == "fail" {
			r.Pass = false
		}
	}
}

func errText(r *run) string {
	if r.Errors == 0 {
		return "0"
	}
	var parts []string
	for k, v := range r.ErrorKinds {
		parts = append(parts, fmt.Sprintf("%s=%d", k, v))
	}
	return fmt.Sprintf("%d (%s)", r.Errors, strings.Join(parts, ", "))
}

// markdown renders report.md.
func (r *results) markdown() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# infura-gateway performance run %s\n\n", r.Timestamp)
	m := r.Machine
	w("Machine: %d × %s, %s RAM, Linux %s, %s; wrk: %s. CPU from /proc/<pid>/stat at %d ticks/s.\n\n",
		m.NProc, m.CPUModel, m.Memory, m.Kernel, m.GoVersion, orNone(m.Wrk), m.ClockTicks)
	c := r.Config
	mode := "full run"
	if c.Quick {
		mode = "quick smoke run (CPU ratios not judged)"
	}
	w("Mode: %s. CPU runs: %d connections, %.0f s each after a %.1f s warm-up, HTTP driven by %s, websocket by loadgen. "+
		"Fixed node head every %.0f s.\n\n", mode, c.VUs, c.DurationS, c.WarmupS, c.Driver, c.HeadIntervalS)

	w("## CPU per request\n\n")
	w("Rows marked passthrough, Mux and socket2socket run against the gateway with `-cache=false`, so every request "+
		"reaches fixednode; cache rows run against the default configuration (cache on, a head every %.0f s). "+
		"upstream req/req is what fixednode answered per gateway request; syscalls/req counts the process's "+
		"read and write syscalls (/proc/<pid>/io), which a loaded machine does not move as it moves CPU time.\n\n", c.HeadIntervalS)
	w("| path | driver | req/s | CPU µs/req | ratio to floor | target | result | p50 ms | p99 ms | upstream req/req | syscalls/req | errors |\n")
	w("|---|---|--:|--:|--:|--:|---|--:|--:|--:|--:|--:|\n")
	row := func(p *run) {
		if p.Status == "n/a" {
			w("| %s | | | | | | n/a | | | | | %s |\n", p.Label, p.Note)
			return
		}
		target, ratio := "–", "1.00×"
		if p.Target > 0 {
			target = fmt.Sprintf("≤ %.2f×", p.Target)
		}
		isFloor := strings.HasPrefix(p.Key, "floor")
		if !isFloor {
			ratio = fmt.Sprintf("%.2f×", p.Ratio)
		}
		up := "–"
		if !isFloor {
			up = fmt.Sprintf("%.3f", p.UpstreamPerReq)
		}
		sys := "–"
		if p.SyscallsPerReq > 0 {
			sys = fmt.Sprintf("%.2f", p.SyscallsPerReq)
		}
		w("| %s | %s | %.0f | %.2f | %s | %s | %s | %.3f | %.3f | %s | %s | %s |\n", p.Label, p.Driver, p.RPS,
			p.CPUusPerReq, ratio, target, p.Status, p.LatencyMS.P50, p.LatencyMS.P99, up, sys, errText(p))
	}
	if r.Floor != nil {
		row(r.Floor)
	}
	if r.FloorRepeat != nil {
		row(r.FloorRepeat)
	}
	for _, p := range r.Paths {
		row(p)
	}
	for _, p := range r.Paths {
		if n := len(p.FloorRoundRatios); n > 0 {
			w("\n%s: its ratio is the median of %d rounds, each the floor and this path one after the other "+
				"(order alternated): %v.\n", p.Label, n, p.FloorRoundRatios)
		}
	}
	if r.FloorRepeat != nil {
		w("\nRatios divide by %.2f µs, the mean of the two floor runs (rows judged round by round aside).", r.FloorCPUusPerReq)
		if a, b := r.Floor.CPUusPerReq, r.FloorRepeat.CPUusPerReq; a > 0 && b > 0 && math.Abs(a-b)/math.Min(a, b) > 0.15 {
			w(" The two differ by more than 15 %%: the machine's load changed during the run; rerun before trusting the ratios.")
		}
		w("\n")
	}
	if f := r.Frames; f != nil {
		w("\nWebsocket Mux during the /ws/blocknumber run: %.2f frames per upstream write (%.0f frames in %.0f writes), "+
			"%.2f messages per upstream read (%.0f messages in %.0f reads).", f.FramesPerWrite, f.FramesWritten, f.Writes,
			f.MessagesPerRead, f.MessagesIn, f.Reads)
		if f.Note != "" {
			w(" Note: %s.", f.Note)
		}
		w("\n")
	}
	r.versusMarkdown(w)
	if len(r.Conns) > 0 {
		w("\n## Many connections (loadgen, every reply validated)\n\n")
		w("| path | connections | requests | req/s | p50 ms | p99 ms | max ms | errors | result |\n")
		w("|---|--:|--:|--:|--:|--:|--:|--:|---|\n")
		for _, p := range r.Conns {
			w("| %s | %d | %d | %.0f | %.3f | %.3f | %.3f | %s | %s |\n", p.Label, p.VUs, p.Requests, p.RPS,
				p.LatencyMS.P50, p.LatencyMS.P99, p.LatencyMS.Max, errText(p), p.Status)
		}
	}
	if co := r.Coalescing; co != nil {
		w("\n## Coalescing\n\n%d clients on /gasprice for %.1f s: %d requests (%.0f/s), %d errors. "+
			"The fixed node produced %d heads and answered %d eth_gasPrice calls (allowed: heads + %d = %d): **%s**. "+
			"Calls per head interval: %v.\n",
			co.Clients, co.DurationS, co.Requests, co.RPS, co.Errors, co.Heads, co.UpstreamGasPrice, coalesceSlack, co.Allowed, co.Status,
			co.PerHead)
	}
	if sb := r.Subscriptions; sb != nil {
		w("\n## Subscriptions\n\n%d /socket2socket clients subscribed to newHeads (%d subscribed, %d errors) for %.1f s: "+
			"%d heads, %d notifications delivered, the fewest to one subscriber %d (owed at least %d); "+
			"the gateway opened %d upstream eth_subscribe: **%s**.\n",
			sb.Subscribers, sb.Subscribed, sb.Errors, sb.DurationS, sb.Heads, sb.Notifications, sb.MinPerSubscriber, sb.Owed,
			sb.UpstreamSubscribes, sb.Status)
	}
	if mem := r.Memory; mem != nil && mem.Note != "" {
		w("\n## Idle websocket clients\n\nNot measured: %s.\n", mem.Note)
	} else if mem != nil {
		w("\n## Idle websocket clients\n\n%d of %d idle /socket2socket clients connected (gateway gauge %.0f); "+
			"gateway VmRSS %d KiB → %d KiB: **%.2f KiB per client** (target ≤ %.0f KiB): **%s**.\n",
			mem.Connected, mem.Clients, mem.GatewayGauge, mem.RSSBeforeKiB, mem.RSSAfterKiB, mem.KiBPerClient, mem.TargetKiB, mem.Status)
	}
	if sm := r.SubMemory; sm != nil && sm.Subscribed == 0 {
		w("\n## Subscribed websocket clients\n\nNot measured: %s.\n", sm.Note)
	} else if sm != nil {
		w("\n## Subscribed websocket clients\n\n%d of %d /socket2socket clients subscribed to newHeads (gateway gauge %.0f), "+
			"%d notifications received meanwhile; gateway VmRSS %d KiB → %d KiB: **%.2f KiB per subscriber** (target ≤ %.0f KiB); "+
			"goroutines %.0f → %.0f: **%.2f per subscriber**: **%s**.\n",
			sm.Subscribed, sm.Clients, sm.GatewayGauge, sm.Notifications, sm.RSSBeforeKiB, sm.RSSAfterKiB, sm.KiBPerClient,
			sm.TargetKiB, sm.GoroutinesBef, sm.GoroutinesAft, sm.GoroutinesPerClient, sm.Status)
		if len(sm.HeapTop) > 0 {
			w("\nHeap profile (`%s`, in-use bytes, `go tool pprof -top`):\n\n```\n%s\n```\n", sm.HeapProfile, strings.Join(sm.HeapTop, "\n"))
		}
		if sm.Note != "" {
			w("\n%s\n", sm.Note)
		}
	}
	w("\n## Checks\n\n")
	for _, ch := range r.Checks {
		w("- %s: **%s** — %s\n", ch.Name, ch.Status, ch.Detail)
	}
	verdict := "PASS"
	if !r.Pass {
		verdict = "FAIL"
	}
	w("\nOverall: **%s**\n", verdict)
	return b.String()
}

func orNone(s string) string {
	if s == "" {
		return "not installed"
	}
	return s
}
