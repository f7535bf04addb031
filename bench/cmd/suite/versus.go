package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/infura-gateway/infura-gateway/bench/internal/load"
)

// Gateway ÷ reference relay (step versus): the gateway's own cost, measured as the
// ratio of its CPU per request to the thinnest relay of its shape (bench/cmd/minrelay)
// on the same path, the same upstream and the same connections. Both servers run at
// once (only one is loaded at a time) and the runs alternate, gateway then relay in
// odd rounds and relay then gateway in even ones, so a machine that gets busier during
// the step moves both sides of each round's ratio alike. The row's figure is the median
// of the per-round ratios.
const (
	// targetVersus bounds gateway ÷ relay CPU per request (issue 25: ≤ 1.10).
	targetVersus = 1.10
	// targetVersusP99 bounds gateway ÷ relay p99 latency at the lowest connection count.
	targetVersusP99 = 1.10
)

type versusRow struct {
	Key        string    `json:"key"`
	Label      string    `json:"label"`
	VUs        int       `json:"vus"`
	GatewayCPU []float64 `json:"gateway_cpu_us_per_req"` // per round
	RelayCPU   []float64 `json:"relay_cpu_us_per_req"`
	Ratios     []float64 `json:"ratios"`
	Ratio      float64   `json:"ratio"` // median of Ratios
	// GatewayUser and RelayUser are the user-space parts (utime) of the CPU figures, and
	// UserRatio the median of their per-round ratios: the two do the same syscalls per
	// request, so the kernel's share, which swings most with the machine, is left out.
	GatewayUser []float64 `json:"gateway_user_cpu_us_per_req"`
	RelayUser   []float64 `json:"relay_user_cpu_us_per_req"`
	UserRatio   float64   `json:"user_ratio"`
	GatewayP99  []float64 `json:"gateway_p99_ms"`
	RelayP99    []float64 `json:"relay_p99_ms"`
	P99Ratio    float64   `json:"p99_ratio"` // median of the per-round p99 ratios
	// P99Judged: the p99 target applies (the lowest connection count only: at 1,000
	// connections on 2 cores, latency is queueing).
	P99Judged bool `json:"p99_judged"`
	// Together: both were loaded at the same moment in each round (-versus-together),
	// each with its own load driver, sharing the machine as they share a round.
	Together bool `json:"together,omitempty"`
	// Baseline: the other side is an earlier gateway build (-versus-baseline), not the
	// reference relay; the Relay fields are its figures, and no target applies.
	Baseline string `json:"baseline,omitempty"`
	Errors   uint64 `json:"errors"`
	Status   string `json:"status"`
}

type versusPath struct {
	key, label, route, method string
	body                      []byte
}

var versusPaths = []versusPath{
	{"http_blocknumber", "GET /blocknumber", "/blocknumber", "", nil},
	{"ws_blocknumber", "GET /ws/blocknumber", "/ws/blocknumber", "", nil},
	{"rpc_post", "POST / eth_blockNumber", "/", "POST", []byte(rpcBlockNumber)},
}

// versus runs the step: for each connection count, o.rounds rounds of every path on
// the passthrough gateway (gwArgs) and on the reference: the relay, or the baseline
// build (-versus-baseline).
func versus(ctx context.Context, m *measurer, gwBin, relayBin, dir, nodeHTTP, nodeWS string, gwArgs []string,
	o *options) ([]*versusRow, error) {
	gw, gwAddr, err := startGateway(ctx, gwBin, dir, "gateway-versus.log", nodeHTTP, nodeWS, gwArgs...)
	if err != nil {
		return nil, err
	}
	defer gw.stop()
	other := "relay"
	var ref *server
	var refAddr string
	if o.versusBaseline != "" {
		// A change measured against the build before it: both gateways, the same
		// arguments, each round's order alternated as against the relay.
		other = "baseline"
		ref, refAddr, err = startGateway(ctx, o.versusBaseline, dir, "baseline-versus.log", nodeHTTP, nodeWS, gwArgs...)
	} else {
		ref, refAddr, err = startRelay(ctx, relayBin, dir, nodeHTTP, nodeWS, "")
	}
	if err != nil {
		return nil, err
	}
	defer ref.stop()
	defer m.oneRunEach()()

	var rows []*versusRow
	for vi, vus := range o.versusVUs {
		for _, p := range versusPaths {
			row := &versusRow{Key: p.key, Label: p.label, VUs: vus, P99Judged: vi == 0, Together: o.versusTogether,
				Baseline: o.versusBaseline}
			rows = append(rows, row)
			for round := range o.rounds {
				type side struct {
					name string
					pid  int
					addr string
					cpu  *[]float64
					user *[]float64
					p99  *[]float64
				}
				sides := []side{{"gateway", gw.pid(), gwAddr, &row.GatewayCPU, &row.GatewayUser, &row.GatewayP99},
					{other, ref.pid(), refAddr, &row.RelayCPU, &row.RelayUser, &row.RelayP99}}
				if round%2 == 1 {
					slices.Reverse(sides)
				}
				runs := make([]*run, len(sides))
				errs := make([]error, len(sides))
				measureSide := func(i int) {
					s := sides[i]
					key := fmt.Sprintf("versus_%s_%s_%d", s.name, p.key, vus)
					label := fmt.Sprintf("%s %s, %d connections, round %d", s.name, p.label, vus, round+1)
					tgt := load.Target{Kind: load.HTTP, URL: "http://" + s.addr + p.route, Method: p.method, Body: p.body}
					runs[i], errs[i] = m.measure(ctx, key, label, s.pid, tgt, vus)
				}
				if o.versusTogether {
					var wg sync.WaitGroup
					for i := range sides {
						wg.Go(func() { measureSide(i) })
					}
					wg.Wait()
				} else {
					for i := range sides {
						if ctx.Err() != nil {
							return rows, ctx.Err()
						}
						if measureSide(i); errs[i] != nil {
							break
						}
					}
				}
				if err := errors.Join(errs...); err != nil {
					return rows, err
				}
				for i, s := range sides {
					r := runs[i]
					row.Errors += r.Errors
					*s.cpu = append(*s.cpu, r.CPUusPerReq)
					*s.user = append(*s.user, r.UserCPUusPerReq)
					*s.p99 = append(*s.p99, r.LatencyMS.P99)
					logf("%s: %.2f µs CPU/request, p99 %.3f ms, errors %d", r.Label, r.CPUusPerReq, r.LatencyMS.P99, r.Errors)
				}
				if g, rl := row.GatewayCPU[round], row.RelayCPU[round]; rl > 0 {
					row.Ratios = append(row.Ratios, round2(g/rl))
				}
			}
			row.Ratio = median(row.Ratios)
			var users []float64
			for i := range row.GatewayUser {
				if row.RelayUser[i] > 0 {
					users = append(users, round2(row.GatewayUser[i]/row.RelayUser[i]))
				}
			}
			row.UserRatio = median(users)
			var p99s []float64
			for i := range row.GatewayP99 {
				if row.RelayP99[i] > 0 {
					p99s = append(p99s, round2(row.GatewayP99[i]/row.RelayP99[i]))
				}
			}
			row.P99Ratio = median(p99s)
			ok := row.Errors == 0 && len(row.Ratios) == o.rounds && row.Ratio <= targetVersus
			if row.P99Judged {
				ok = ok && row.P99Ratio > 0 && row.P99Ratio <= targetVersusP99
			}
			row.Status = statusOf(ok, !o.quick && row.Baseline == "")
			logf("gateway ÷ %s, %s at %d connections: CPU %v = median %.2f, p99 median ratio %.2f [%s]",
				other, p.label, vus, row.Ratios, row.Ratio, row.P99Ratio, row.Status)
		}
	}
	return rows, nil
}

// median of xs (the mean of the middle two for an even count); 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	if n := len(s); n%2 == 1 {
		return s[n/2]
	} else {
		return round2((s[n/2-1] + s[n/2]) / 2)
	}
}

// versusChecks adds a check per row.
func (r *results) versusChecks(add func(name, status, detail string)) {
	for _, v := range r.Versus {
		if v.Baseline != "" {
			add(fmt.Sprintf("gateway ÷ baseline %s at %d connections", v.Label, v.VUs), v.Status,
				fmt.Sprintf("CPU median %.2f× the baseline build (rounds %v), p99 median %.2f×, errors %d", v.Ratio, v.Ratios, v.P99Ratio, v.Errors))
			continue
		}
		d := fmt.Sprintf("CPU median %.2f× the relay (rounds %v, target ≤ %.2f)", v.Ratio, v.Ratios, targetVersus)
		if v.P99Judged {
			d += fmt.Sprintf(", p99 median %.2f× (target ≤ %.2f)", v.P99Ratio, targetVersusP99)
		}
		add(fmt.Sprintf("gateway ÷ relay %s at %d connections", v.Label, v.VUs), v.Status, d+", errors "+fmt.Sprint(v.Errors))
	}
}

// versusMarkdown renders the step's table.
func (r *results) versusMarkdown(w func(format string, args ...any)) {
	if len(r.Versus) == 0 {
		return
	}
	how := "each round measures both on the path, alternating which goes first"
	if r.Versus[0].Together {
		how = "each round loads both on the path at the same moment, one load driver each (-versus-together)"
	}
	other, target := "relay", fmt.Sprintf("≤ %.2f", targetVersus)
	who := "The passthrough gateway (`-cache=false`) and bench/cmd/minrelay run"
	if b := r.Versus[0].Baseline; b != "" {
		other, target = "baseline", "–"
		who = "The passthrough gateway (`-cache=false`) and an earlier build of it (`" + b + "`, the same arguments) run"
		w("\n## Gateway ÷ baseline build\n\n")
	} else {
		w("\n## Gateway ÷ reference relay\n\n")
	}
	w(who+" side by side against the same fixed node; "+
		how+". CPU µs/request per round; "+
		"the ratio is the median of the per-round ratios; p99 from the same runs. The user-space columns are the utime part "+
		"of the same runs (both do the same syscalls per request; the kernel's share is what swings most with the machine), "+
		"reported, not judged. The floor is %.2f µs.\n\n", r.FloorCPUusPerReq)
	w("| path | connections | gateway µs/req | %[1]s µs/req | gateway ÷ %[1]s | median | target | user-space µs/req, gateway / %[1]s | user-space ratio | gateway p99 ms | %[1]s p99 ms | p99 ratio | result |\n", other)
	w("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n")
	list := func(xs []float64, f string) string {
		parts := make([]string, len(xs))
		for i, x := range xs {
			parts[i] = fmt.Sprintf(f, x)
		}
		return strings.Join(parts, ", ")
	}
	for _, v := range r.Versus {
		p99 := fmt.Sprintf("%.2f", v.P99Ratio)
		if v.P99Judged && v.Baseline == "" {
			p99 += fmt.Sprintf(" (≤ %.2f)", targetVersusP99)
		}
		w("| %s | %d | %s | %s | %s | **%.2f** | %s | %s / %s | %.2f | %s | %s | %s | %s |\n", v.Label, v.VUs,
			list(v.GatewayCPU, "%.2f"), list(v.RelayCPU, "%.2f"), list(v.Ratios, "%.2f"), v.Ratio, target,
			list(v.GatewayUser, "%.2f"), list(v.RelayUser, "%.2f"), v.UserRatio,
			list(v.GatewayP99, "%.3f"), list(v.RelayP99, "%.3f"), p99, v.Status)
	}
}
