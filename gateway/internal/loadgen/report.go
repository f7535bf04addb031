package loadgen

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// ErrorKind classifies a failed request.
type ErrorKind string

const (
	// KindRefused: the connection was refused (nothing listening).
	KindRefused ErrorKind = "refused"
	// KindTransport: the connection failed or broke (reset, EOF, closed websocket).
	KindTransport ErrorKind = "transport"
	// KindTimeout: no answer within Config.Timeout.
	KindTimeout ErrorKind = "timeout"
	// KindHTTP: an HTTP status other than 200 (Error.Status), or a refused websocket
	// handshake.
	KindHTTP ErrorKind = "http"
	// KindRPC: a JSON-RPC error object (Error.Code).
	KindRPC ErrorKind = "rpc"
	// KindBadAnswer: not a JSON-RPC answer, the wrong id, or a result of the wrong shape.
	KindBadAnswer ErrorKind = "bad-answer"
	// KindNullBlock: null for "latest", or for an old block below a head already seen.
	KindNullBlock ErrorKind = "null-block"
	// KindMismatch: a block number with two hashes, or a second chain id.
	KindMismatch ErrorKind = "mismatch"
)

// Error is one failed request.
type Error struct {
	At      time.Time     // when it was sent
	Took    time.Duration // until the failure
	Worker  int
	Request string // ReqBlockNumber, ...
	Kind    ErrorKind
	Status  int // HTTP status, for KindHTTP
	Code    int // JSON-RPC error code, for KindRPC
	Detail  string
}

func (e Error) String() string {
	s := fmt.Sprintf("%s +%v worker %d %s: %s", e.At.Format("15:04:05.000"), e.Took.Round(time.Millisecond), e.Worker, e.Request, e.Kind)
	if e.Status != 0 {
		s += fmt.Sprintf(" %d", e.Status)
	}
	if e.Code != 0 {
		s += fmt.Sprintf(" %d", e.Code)
	}
	return s + ": " + e.Detail
}

// Source is where a head observation comes from.
type Source string

const (
	// SourceBlockNumber: eth_blockNumber answers.
	SourceBlockNumber Source = "eth_blockNumber"
	// SourceLatestBlock: the number of eth_getBlockByNumber("latest") answers.
	SourceLatestBlock Source = "latest block"
	// SourceAny: both, as one sequence (Regressions only).
	SourceAny Source = "any"
)

// Head is one head a client was told.
type Head struct {
	Sent, Received time.Time
	Number         uint64
	Worker         int
	Source         Source
}

// Regression is a head that went backwards: After was sent once Before had been
// received, yet carries a lower number.
type Regression struct{ Before, After Head }

func (g Regression) String() string {
	return fmt.Sprintf("%s %d received %s by worker %d, then %s %d asked %s by worker %d",
		g.Before.Source, g.Before.Number, g.Before.Received.Format("15:04:05.000"), g.Before.Worker,
		g.After.Source, g.After.Number, g.After.Sent.Format("15:04:05.000"), g.After.Worker)
}

// Latency summarises answer times (failures included: a client waited for them too).
type Latency struct {
	Count              int
	P50, P90, P99, Max time.Duration
}

func (l Latency) String() string {
	return fmt.Sprintf("n=%d p50=%v p90=%v p99=%v max=%v", l.Count, l.P50.Round(time.Microsecond),
		l.P90.Round(time.Microsecond), l.P99.Round(time.Microsecond), l.Max.Round(time.Microsecond))
}

func summarise(d []time.Duration) Latency {
	if len(d) == 0 {
		return Latency{}
	}
	slices.Sort(d)
	q := func(p float64) time.Duration { return d[int(p*float64(len(d)-1)+0.5)] }
	return Latency{Count: len(d), P50: q(0.50), P90: q(0.90), P99: q(0.99), Max: d[len(d)-1]}
}

// Report is everything a load saw.
type Report struct {
	URL        string
	Start, End time.Time
	Requests   int
	// Missed counts the pacing slots workers skipped because answers were slower than
	// their share of Rate: a sign of latency, not an error.
	Missed int
	All    Latency
	ByKind map[string]Latency
	// Errors are the failed requests, in the order they were sent.
	Errors []Error
	// Heads are the heads the clients were told, in the order they were asked.
	Heads []Head
}

func (l *Load) buildReport(end time.Time) *Report {
	r := &Report{URL: l.cfg.URL, Start: l.started, End: end, ByKind: map[string]Latency{}}
	byKind := map[string][]time.Duration{}
	var all []time.Duration
	for _, w := range l.workers {
		r.Missed += w.missed
		r.Errors = append(r.Errors, w.errors...)
		r.Heads = append(r.Heads, w.heads...)
		for _, s := range w.samples {
			byKind[s.kind] = append(byKind[s.kind], s.took)
			all = append(all, s.took)
		}
	}
	r.Requests = len(all)
	r.All = summarise(all)
	for k, d := range byKind {
		r.ByKind[k] = summarise(d)
	}
	sort.SliceStable(r.Errors, func(i, j int) bool { return r.Errors[i].At.Before(r.Errors[j].At) })
	sort.SliceStable(r.Heads, func(i, j int) bool { return r.Heads[i].Sent.Before(r.Heads[j].Sent) })
	return r
}

// Regressions returns every head of src that went backwards in real time: a request
// sent after another one's answer was received must not see a lower head. (Requests
// that overlap in time may be answered in either order.) With SourceAny, eth_blockNumber
// and latest-block answers form one sequence.
func (r *Report) Regressions(src Source) []Regression {
	var hs []Head
	for _, h := range r.Heads {
		if src == SourceAny || h.Source == src {
			hs = append(hs, h)
		}
	}
	byRecv := slices.Clone(hs)
	sort.SliceStable(byRecv, func(i, j int) bool { return byRecv[i].Received.Before(byRecv[j].Received) })
	sort.SliceStable(hs, func(i, j int) bool { return hs[i].Sent.Before(hs[j].Sent) })
	var out []Regression
	var best *Head
	j := 0
	for _, h := range hs {
		for ; j < len(byRecv) && byRecv[j].Received.Before(h.Sent); j++ {
			if best == nil || byRecv[j].Number > best.Number {
				best = &byRecv[j]
			}
		}
		if best != nil && h.Number < best.Number {
			out = append(out, Regression{Before: *best, After: h})
		}
	}
	return out
}

// HeadRange returns the lowest and highest head of src seen (0, 0 without any).
func (r *Report) HeadRange(src Source) (lo, hi uint64) {
	first := true
	for _, h := range r.Heads {
		if src != SourceAny && h.Source != src {
			continue
		}
		if first || h.Number < lo {
			lo = h.Number
		}
		hi = max(hi, h.Number)
		first = false
	}
	return lo, hi
}

// ErrorsBetween returns the errors of requests sent in [from, to).
func (r *Report) ErrorsBetween(from, to time.Time) []Error {
	var out []Error
	for _, e := range r.Errors {
		if !e.At.Before(from) && e.At.Before(to) {
			out = append(out, e)
		}
	}
	return out
}

// ErrorsByKind counts the errors of each kind.
func (r *Report) ErrorsByKind() map[ErrorKind]int {
	m := map[ErrorKind]int{}
	for _, e := range r.Errors {
		m[e.Kind]++
	}
	return m
}

// Check is the failover tests' bar: no failed request, and neither eth_blockNumber nor
// the latest block ever went backwards (each on its own; Regressions(SourceAny) is
// stricter).
func (r *Report) Check() error {
	var errs []error
	if len(r.Errors) > 0 {
		errs = append(errs, fmt.Errorf("%d of %d requests failed (%v), first: %s", len(r.Errors), r.Requests, r.ErrorsByKind(), r.Errors[0]))
	}
	for _, src := range []Source{SourceBlockNumber, SourceLatestBlock} {
		if g := r.Regressions(src); len(g) > 0 {
			errs = append(errs, fmt.Errorf("%s went backwards %d times, first: %s", src, len(g), g[0]))
		}
	}
	return errors.Join(errs...)
}

// String summarises the report: rates, latencies per kind, heads, and the first errors.
func (r *Report) String() string {
	var b strings.Builder
	d := r.End.Sub(r.Start)
	fmt.Fprintf(&b, "load on %s: %d requests in %v (%.0f/s), %d failed, %d slots missed\n",
		r.URL, r.Requests, d.Round(time.Millisecond), float64(r.Requests)/d.Seconds(), len(r.Errors), r.Missed)
	fmt.Fprintf(&b, "  all: %s\n", r.All)
	kinds := make([]string, 0, len(r.ByKind))
	for k := range r.ByKind {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		fmt.Fprintf(&b, "  %s: %s\n", k, r.ByKind[k])
	}
	lo, hi := r.HeadRange(SourceAny)
	fmt.Fprintf(&b, "  heads %d..%d, %d observations, %d regressions (any source)\n", lo, hi, len(r.Heads), len(r.Regressions(SourceAny)))
	if len(r.Errors) > 0 {
		fmt.Fprintf(&b, "  errors by kind: %v\n", r.ErrorsByKind())
		for i, e := range r.Errors {
			if i == 10 {
				fmt.Fprintf(&b, "  ... %d more\n", len(r.Errors)-10)
				break
			}
			fmt.Fprintf(&b, "  %s\n", e)
		}
	}
	return b.String()
}
