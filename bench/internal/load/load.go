// Package load is the load driver: closed-loop VUs, open-loop arrival rate
// and k6-style stage profiles against HTTP routes and websocket endpoints,
// with a per-second progress line and an HDR-style latency histogram.
//
// Every reply is validated (HTTP status, JSON-RPC envelope, matching id);
// anything else is an error, counted by kind. A run with errors never
// reports success.
package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/bench/internal/hist"
	"github.com/infura-gateway/infura-gateway/bench/internal/profile"
)

// Kind selects what one VU does per iteration.
type Kind string

const (
	// HTTP sends one HTTP request per iteration (GET or POST with a body).
	HTTP Kind = "http"
	// WSRPC keeps one websocket per VU and loops: send a JSON-RPC request,
	// await the reply with the same id.
	WSRPC Kind = "ws-rpc"
	// WSSub keeps one websocket per VU, subscribes to newHeads and counts
	// notifications.
	WSSub Kind = "ws-sub"
	// WSIdle opens one websocket per VU and holds it without traffic.
	WSIdle Kind = "ws-idle"
)

// Validation says what a reply must look like to count as a success.
type Validation string

const (
	// ValidateRPC requires a 2xx status and a JSON-RPC envelope (or batch
	// of them) with a result and no error.
	ValidateRPC Validation = "jsonrpc"
	// ValidateStatus requires only a 2xx status.
	ValidateStatus Validation = "status"
)

// Target is one path under load.
type Target struct {
	Name     string     // label in results and progress lines
	Kind     Kind       // http, ws-rpc, ws-sub, ws-idle
	URL      string     // http://host:port/path or ws://host:port/path
	Method   string     // HTTP method; GET when empty
	Body     []byte     // HTTP body (POST)
	Validate Validation // HTTP only; websocket replies are always JSON-RPC
	// RPCMethod and RPCParams form the websocket request of ws-rpc
	// (default eth_blockNumber, []); the driver assigns the ids.
	RPCMethod string
	RPCParams string
}

// Config is how to drive one target.
type Config struct {
	VUs      int           // closed loop: concurrent VUs; open loop: max in flight
	Duration time.Duration // run length (ignored with a Profile)
	Rate     float64       // > 0: open loop at this many requests per second
	Profile  *profile.Profile
	StartVUs int           // profile's initial VUs (k6 startVUs)
	Ramp     time.Duration // closed loop: start VUs evenly over this time
	Timeout  time.Duration // per request (and per dial)
	// Late is how far behind schedule an open-loop request may start
	// before it is counted as late (it is still sent).
	Late     time.Duration
	Progress io.Writer // nil: no progress line
}

// Result is the outcome of one run, as written to results.json.
type Result struct {
	Name          string            `json:"name"`
	Kind          Kind              `json:"kind"`
	URL           string            `json:"url"`
	Mode          string            `json:"mode"`
	VUs           int               `json:"vus"`
	TargetRate    float64           `json:"target_rate,omitempty"`
	Requests      uint64            `json:"requests"`
	OK            uint64            `json:"ok"`
	Errors        map[string]uint64 `json:"errors"`
	ErrorCount    uint64            `json:"error_count"`
	Dropped       uint64            `json:"dropped,omitempty"`
	Late          uint64            `json:"late,omitempty"`
	Connections   int64             `json:"connections,omitempty"`
	Notifications uint64            `json:"notifications,omitempty"`
	MinNotifs     uint64            `json:"min_notifications_per_vu,omitempty"`
	DurationS     float64           `json:"duration_s"`
	RateRPS       float64           `json:"rate_rps"`
	LatencyMS     Latency           `json:"latency_ms"`
	Histogram     []hist.Bucket     `json:"histogram,omitempty"`
}

// Latency percentiles in milliseconds.
type Latency struct {
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P95  float64 `json:"p95"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
}

// Failed reports whether the run must be treated as a failure: any error,
// any dropped open-loop request, or no successful request at all (idle
// sockets excepted, which succeed by staying open).
func (r *Result) Failed() bool {
	if r.ErrorCount > 0 || r.Dropped > 0 {
		return true
	}
	if r.Kind == WSIdle {
		return r.Connections < int64(r.VUs)
	}
	return r.OK == 0
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// stats is shared by all VUs of a run.
type stats struct {
	total    *hist.Hist
	interval atomic.Pointer[hist.Hist]
	ok       atomic.Uint64
	errCount atomic.Uint64
	dropped  atomic.Uint64
	late     atomic.Uint64
	conns    atomic.Int64 // websocket connections open now
	peak     atomic.Int64 // most websocket connections open at once
	notifs   atomic.Uint64
	active   atomic.Int64

	mu   sync.Mutex
	errs map[string]uint64

	// sockets holds the open websockets (*websocket.Conn), so that a
	// cancelled run can wake VUs blocked in a read that would otherwise
	// wait for the end of the run.
	sockets sync.Map
	stopped atomic.Bool // set before sockets are woken
}

func newStats() *stats {
	s := &stats{total: hist.New(), errs: map[string]uint64{}}
	s.interval.Store(hist.New())
	return s
}

func (s *stats) success(d time.Duration) {
	s.total.Record(d)
	s.interval.Load().Record(d)
	s.ok.Add(1)
}

func (s *stats) fail(kind string) {
	s.errCount.Add(1)
	s.mu.Lock()
	s.errs[kind]++
	s.mu.Unlock()
}

// Live is a snapshot of a run in progress.
type Live struct {
	OK, Errors, Dropped uint64
	Connections         int64
	ActiveVUs           int64
	Notifications       uint64
}

// Runner drives one target. Create with New, call Run once; Live may be
// called from other goroutines meanwhile.
type Runner struct {
	cfg Config
	tgt Target
	st  *stats
	hc  *fasthttp.HostClient
}

// New validates the configuration and prepares a runner.
func New(cfg Config, tgt Target) (*Runner, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Late <= 0 {
		cfg.Late = 10 * time.Millisecond
	}
	if cfg.Profile != nil {
		if cfg.Rate > 0 {
			return nil, errors.New("a stage profile ramps VUs (closed loop); it cannot be combined with -rate")
		}
		cfg.Duration = cfg.Profile.Duration()
		cfg.VUs = cfg.Profile.MaxVUs(cfg.StartVUs)
	}
	if cfg.VUs <= 0 {
		return nil, errors.New("need at least one VU")
	}
	if cfg.Duration <= 0 {
		return nil, errors.New("need a positive duration")
	}
	if tgt.Name == "" {
		tgt.Name = tgt.URL
	}
	if tgt.Validate == "" {
		tgt.Validate = ValidateRPC
	}
	if tgt.RPCMethod == "" {
		tgt.RPCMethod = "eth_blockNumber"
	}
	if tgt.RPCParams == "" {
		tgt.RPCParams = "[]"
	}
	if cfg.Rate > 0 && (tgt.Kind == WSSub || tgt.Kind == WSIdle) {
		return nil, fmt.Errorf("%s has no requests to pace: open loop applies to http and ws-rpc", tgt.Kind)
	}
	r := &Runner{cfg: cfg, tgt: tgt, st: newStats()}
	switch tgt.Kind {
	case HTTP:
		hc, err := newHostClient(tgt.URL, cfg.VUs, cfg.Timeout)
		if err != nil {
			return nil, err
		}
		r.hc = hc
	case WSRPC, WSSub, WSIdle:
		if !strings.HasPrefix(tgt.URL, "ws://") {
			return nil, fmt.Errorf("%s needs a ws:// URL, got %q", tgt.Kind, tgt.URL)
		}
	default:
		return nil, fmt.Errorf("unknown kind %q (want http, ws-rpc, ws-sub, ws-idle)", tgt.Kind)
	}
	return r, nil
}

// Live returns the counters so far.
func (r *Runner) Live() Live {
	conns := r.st.conns.Load()
	if r.hc != nil {
		conns = int64(r.hc.ConnsCount())
	}
	return Live{
		OK: r.st.ok.Load(), Errors: r.st.errCount.Load(), Dropped: r.st.dropped.Load(),
		Connections: conns, ActiveVUs: r.st.active.Load(), Notifications: r.st.notifs.Load(),
	}
}

// vu is one virtual user's connection state.
type vu interface {
	// iterate performs one request and returns its latency, or an error
	// kind. Called only from the VU's goroutine.
	iterate(deadline time.Time) (time.Duration, string)
	close()
}

func (r *Runner) newVU() vu {
	switch r.tgt.Kind {
	case HTTP:
		return newHTTPVU(r)
	default:
		return newWSVU(r)
	}
}

// Run drives the target until the duration (or profile) ends or ctx is
// cancelled, and returns the result.
func (r *Runner) Run(ctx context.Context) *Result {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Duration)
	defer cancel()
	start := time.Now()
	end := start.Add(r.cfg.Duration)

	progressDone := make(chan struct{})
	go r.progress(ctx, start, progressDone)
	go func() {
		<-ctx.Done()
		r.st.stopped.Store(true)
		r.st.sockets.Range(func(k, _ any) bool {
			c := k.(interface{ SetReadDeadline(time.Time) error })
			_ = c.SetReadDeadline(time.Now())
			return true
		})
	}()

	var wg sync.WaitGroup
	var notifs notifTracker
	switch {
	case r.cfg.Rate > 0:
		r.runOpen(ctx, start, end, &wg)
	case r.cfg.Profile != nil:
		r.runProfile(ctx, start, end, &wg, &notifs)
	default:
		r.runClosed(ctx, end, &wg, &notifs)
	}
	wg.Wait()
	elapsed := time.Since(start)
	if r.hc != nil {
		// Idle keep-alive connections would otherwise stay open until
		// MaxIdleConnDuration, holding thousands of sockets on both sides
		// into the next run.
		r.hc.CloseIdleConnections()
	}
	cancel()
	<-progressDone
	return r.result(elapsed, notifs.min())
}

// runClosed starts cfg.VUs VUs (spread over cfg.Ramp), each looping back to
// back until the end.
func (r *Runner) runClosed(ctx context.Context, end time.Time, wg *sync.WaitGroup, nt *notifTracker) {
	for i := 0; i < r.cfg.VUs; i++ {
		if r.cfg.Ramp > 0 && i > 0 {
			at := time.Duration(int64(r.cfg.Ramp) * int64(i) / int64(r.cfg.VUs))
			if !sleepUntil(ctx, end.Add(-r.cfg.Duration).Add(at)) {
				break
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.loop(ctx, end, nil, nt)
		}()
	}
}

// runProfile starts the profile's maximum number of VUs; VU i works only
// while i < VUs(t), the controller re-evaluating VUs(t) every 50 ms.
func (r *Runner) runProfile(ctx context.Context, start, end time.Time, wg *sync.WaitGroup, nt *notifTracker) {
	var active atomic.Int64
	active.Store(int64(r.cfg.Profile.VUs(r.cfg.StartVUs, 0)))
	cond := sync.NewCond(&sync.Mutex{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				cond.L.Lock()
				active.Store(0)
				cond.Broadcast()
				cond.L.Unlock()
				return
			case <-t.C:
				n := int64(r.cfg.Profile.VUs(r.cfg.StartVUs, time.Since(start)))
				if n != active.Load() {
					cond.L.Lock()
					active.Store(n)
					cond.Broadcast()
					cond.L.Unlock()
				}
			}
		}
	}()
	gate := func(i int) bool {
		cond.L.Lock()
		defer cond.L.Unlock()
		for int64(i) >= active.Load() {
			if ctx.Err() != nil {
				return false
			}
			cond.Wait()
		}
		return ctx.Err() == nil
	}
	for i := 0; i < r.cfg.VUs; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.loop(ctx, end, &profileGate{i: i, active: &active, wait: gate}, nt)
		}()
	}
}

type profileGate struct {
	i      int
	active *atomic.Int64
	wait   func(int) bool
}

// loop is one closed-loop VU. With a gate, the VU releases its connection
// while parked (a ramped-down k6 VU stops iterating).
func (r *Runner) loop(ctx context.Context, end time.Time, g *profileGate, nt *notifTracker) {
	var v vu
	drop := func() {
		if v == nil {
			return
		}
		if c, ok := v.(interface{ notifications() uint64 }); ok {
			nt.add(c.notifications())
		}
		v.close()
		v = nil
		r.st.active.Add(-1)
	}
	defer drop()
	for !over(ctx, end) {
		if g != nil && int64(g.i) >= g.active.Load() {
			drop()
			if !g.wait(g.i) {
				return
			}
		}
		if v == nil {
			v = r.newVU()
			r.st.active.Add(1)
		}
		d, errKind := v.iterate(end)
		if errKind != "" && over(ctx, end) {
			return // cut short by the end of the run: not an error
		}
		if errKind != "" {
			r.st.fail(errKind)
			if isFatal(errKind) {
				// The connection is gone; pause before redialling so a
				// refused or overloaded server is not hammered in a tight
				// loop.
				drop()
				sleepUntil(ctx, time.Now().Add(100*time.Millisecond))
			}
			continue
		}
		if r.tgt.Kind == HTTP || r.tgt.Kind == WSRPC {
			r.st.success(d)
		}
	}
}

// over reports whether the run has ended. The wall clock is checked as well
// as ctx because a request cut at the end time may return a moment before
// the context's own timer fires.
func over(ctx context.Context, end time.Time) bool {
	return ctx.Err() != nil || !time.Now().Before(end)
}

// runOpen schedules requests at cfg.Rate. A scheduled request waits in a
// queue of cfg.VUs slots for a free worker; when the queue is full it is
// dropped, and when it starts more than cfg.Late behind schedule it is
// counted late. Latency is measured from the moment the request is sent:
// Go timers on Linux fire with ~1 ms slack, so measuring from the schedule
// would add the driver's own jitter; queueing caused by a slow server shows
// up as late and dropped requests instead.
func (r *Runner) runOpen(ctx context.Context, start, end time.Time, wg *sync.WaitGroup) {
	slots := make(chan time.Time, r.cfg.VUs)
	for i := 0; i < r.cfg.VUs; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var v vu
			defer func() {
				if v != nil {
					v.close()
				}
			}()
			for {
				var due time.Time
				select {
				case <-ctx.Done():
					return
				case due = <-slots:
				}
				// Slots are handed out up to one scheduler tick early; wait
				// for the exact due time so pacing is not quantized to the
				// tick.
				if d := time.Until(due); d > 0 {
					time.Sleep(d)
				}
				if time.Since(due) > r.cfg.Late {
					r.st.late.Add(1)
				}
				if v == nil {
					v = r.newVU()
				}
				d, errKind := v.iterate(end)
				if errKind != "" && over(ctx, end) {
					return
				}
				if errKind != "" {
					r.st.fail(errKind)
					if isFatal(errKind) {
						v.close()
						v = nil
					}
					continue
				}
				r.st.success(d)
			}
		}()
	}
	interval := time.Duration(float64(time.Second) / r.cfg.Rate)
	var sent uint64
	// Wake every millisecond and hand out every slot due before the next
	// wake-up, so rates above 1000/s are kept without a timer per request;
	// the worker sleeps until its slot's exact time.
	tick := min(interval, time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			due := uint64(float64(now.Sub(start)+tick) / float64(interval))
			for ; sent < due; sent++ {
				at := start.Add(time.Duration(sent) * interval)
				select {
				case slots <- at:
				default:
					r.st.dropped.Add(1)
				}
			}
		}
	}
}

// progress prints one line per second: rate, p50/p99 over the last second,
// errors so far.
func (r *Runner) progress(ctx context.Context, start time.Time, done chan<- struct{}) {
	defer close(done)
	if r.cfg.Progress == nil {
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			h := r.st.interval.Swap(hist.New())
			secs := now.Sub(last).Seconds()
			last = now
			l := r.Live()
			line := fmt.Sprintf("[%s] %3.0fs vus=%d conns=%d rate=%.0f/s p50=%s p99=%s ok=%d errors=%d",
				r.tgt.Name, now.Sub(start).Seconds(), l.ActiveVUs, l.Connections,
				float64(h.Count())/secs, fmtDur(h.Quantile(0.5)), fmtDur(h.Quantile(0.99)), l.OK, l.Errors)
			if r.cfg.Rate > 0 {
				line += fmt.Sprintf(" dropped=%d late=%d", l.Dropped, r.st.late.Load())
			}
			if r.tgt.Kind == WSSub {
				line += fmt.Sprintf(" notifications=%d", l.Notifications)
			}
			fmt.Fprintln(r.cfg.Progress, line)
		}
	}
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.0fµs", float64(d)/1e3)
	}
}

func (r *Runner) result(elapsed time.Duration, minNotifs uint64) *Result {
	st := r.st
	res := &Result{
		Name: r.tgt.Name, Kind: r.tgt.Kind, URL: r.tgt.URL, VUs: r.cfg.VUs,
		OK: st.ok.Load(), ErrorCount: st.errCount.Load(), Dropped: st.dropped.Load(), Late: st.late.Load(),
		Notifications: st.notifs.Load(), MinNotifs: minNotifs,
		DurationS: math.Round(elapsed.Seconds()*1000) / 1000,
		Errors:    map[string]uint64{},
		Histogram: st.total.Buckets(),
	}
	switch {
	case r.cfg.Rate > 0:
		res.Mode, res.TargetRate = "open", r.cfg.Rate
	case r.cfg.Profile != nil:
		res.Mode = "profile"
	default:
		res.Mode = "closed"
	}
	st.mu.Lock()
	for k, v := range st.errs {
		res.Errors[k] = v
	}
	st.mu.Unlock()
	res.Requests = res.OK + res.ErrorCount
	if r.tgt.Kind != HTTP {
		res.Connections = st.peak.Load()
	}
	if elapsed > 0 {
		res.RateRPS = math.Round(float64(res.OK)/elapsed.Seconds()*10) / 10
	}
	h := st.total
	res.LatencyMS = Latency{
		Mean: ms(h.Mean()), P50: ms(h.Quantile(0.5)), P90: ms(h.Quantile(0.9)),
		P95: ms(h.Quantile(0.95)), P99: ms(h.Quantile(0.99)), Max: ms(h.Max()),
	}
	return res
}

// ErrorSummary renders errors as "kind=n, kind=n" sorted by kind.
func (r *Result) ErrorSummary() string {
	if len(r.Errors) == 0 {
		return "0"
	}
	keys := make([]string, 0, len(r.Errors))
	for k := range r.Errors {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, r.Errors[k])
	}
	return strings.Join(parts, ", ")
}

// notifTracker keeps the smallest notification count of any subscribing
// VU, to tell "every subscriber got every head" from "some got none".
type notifTracker struct {
	mu  sync.Mutex
	n   int
	low uint64
}

func (t *notifTracker) add(v uint64) {
	t.mu.Lock()
	if t.n == 0 || v < t.low {
		t.low = v
	}
	t.n++
	t.mu.Unlock()
}

func (t *notifTracker) min() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.low
}

func sleepUntil(ctx context.Context, at time.Time) bool {
	d := time.Until(at)
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Error kinds that mean the connection is unusable.
func isFatal(kind string) bool {
	switch kind {
	case "conn_refused", "conn_reset", "conn_closed", "dial", "too_many_open_files", "ws_closed", "ws_handshake", "timeout":
		return true
	}
	return strings.HasPrefix(kind, "ws_close_")
}

// classify maps a transport error to a stable kind for the error table.
func classify(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, fasthttp.ErrDialTimeout),
		errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		return "no_free_conns"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "conn_refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "conn_reset"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "too_many_open_files"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no_ephemeral_ports"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, fasthttp.ErrConnectionClosed),
		errors.Is(err, net.ErrClosed):
		return "conn_closed"
	}
	return "other"
}
