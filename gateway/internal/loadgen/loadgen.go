// Package loadgen drives a steady load of mixed JSON-RPC reads at a gateway (or a node)
// from Go tests and records every answer, for failover tests that must show zero
// client-visible errors, a head that never goes backwards, and the latency clients saw.
//
//	load := loadgen.Start(t, loadgen.Config{URL: gw + "/", Rate: 200})
//	... inject faults ...
//	r := load.Stop()
//	if len(r.Errors) > 0 || len(r.Regressions(loadgen.SourceAny)) > 0 { t.Fatal(r) }
//
// Workers run in their own goroutines and never touch the test: Start and the Wait
// helpers fail it, from the caller's goroutine; everything else is in the Report.
package loadgen

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

// Config describes a load.
type Config struct {
	// URL is where requests go: http(s)://… sends each as a JSON-RPC POST (keep-alive
	// connections, one per worker); ws(s)://… gives each worker its own websocket (e.g.
	// the gateway's /socket2socket) and sends its requests on it one at a time.
	URL string
	// Workers is the number of goroutines, each with one request in flight at most
	// (default 4).
	Workers int
	// Rate is the target of requests per second, all workers together; 0 sends
	// back to back. A worker whose answers come too slowly for its share skips the
	// slots it missed (Report.Missed) rather than bursting to catch up.
	Rate float64
	// Timeout is how long a client waits for one answer (default 10 s): past it the
	// request is an error of kind KindTimeout.
	Timeout time.Duration
	// Account is the address of eth_getBalance; "" asks eth_accounts[0] at Start
	// (the dev account of a geth --dev node).
	Account string
	// CallTo is the address eth_call calls with empty data; "" uses Account (no code:
	// the answer is "0x").
	CallTo string
	// ChainID, when set (e.g. "0x539"), is the only eth_chainId answer accepted; else
	// the first answer is, and any other is a mismatch.
	ChainID string
	// OldBlockDepth: old blocks are drawn uniformly from 0 to (highest head seen -
	// OldBlockDepth); default 1, so every old block is below a head a client has seen.
	OldBlockDepth uint64
	// Mix weighs the kinds of request; the zero value is DefaultMix.
	Mix Mix
	// Seed makes the sequence of requests repeatable (0: 1).
	Seed uint64
}

// Mix weighs the kinds of request: each is drawn with probability weight/sum.
type Mix struct {
	BlockNumber int // eth_blockNumber
	LatestBlock int // eth_getBlockByNumber("latest", false)
	OldBlock    int // eth_getBlockByNumber(random old number, false)
	Balance     int // eth_getBalance(Account, "latest")
	ChainID     int // eth_chainId
	Call        int // eth_call({to: CallTo, data: "0x"}, "latest")
}

// DefaultMix is mostly head-following reads, as wallets and indexers send them.
var DefaultMix = Mix{BlockNumber: 3, LatestBlock: 2, OldBlock: 2, Balance: 1, ChainID: 1, Call: 1}

// Request kinds, as named in Report.ByKind and Error.Request.
const (
	ReqBlockNumber = "eth_blockNumber"
	ReqLatestBlock = "eth_getBlockByNumber(latest)"
	ReqOldBlock    = "eth_getBlockByNumber(old)"
	ReqBalance     = "eth_getBalance"
	ReqChainID     = "eth_chainId"
	ReqCall        = "eth_call"
)

// Load is a running load; Stop ends it.
type Load struct {
	cfg     Config
	kinds   []string // the mix, expanded by weight
	stop    chan struct{}
	wg      sync.WaitGroup
	started time.Time
	workers []*worker

	requests, failures atomic.Int64
	maxHead            atomic.Uint64
	chainID            atomic.Pointer[string]
	hashes             sync.Map // block number → hash seen for it

	once   sync.Once
	report *Report
}

// Start begins the load and returns at once; it fails the test when the configuration
// is wrong or, with no Account, when eth_accounts cannot be asked. The load is stopped
// when the test ends, if Stop was not called.
func Start(t testing.TB, cfg Config) *Load {
	t.Helper()
	l, err := start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Stop() })
	return l
}

func start(cfg Config) (*Load, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "ws" && u.Scheme != "wss") {
		return nil, fmt.Errorf("loadgen: URL %q is not http(s):// or ws(s)://", cfg.URL)
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.OldBlockDepth == 0 {
		cfg.OldBlockDepth = 1
	}
	if cfg.Mix == (Mix{}) {
		cfg.Mix = DefaultMix
	}
	if cfg.Seed == 0 {
		cfg.Seed = 1
	}
	l := &Load{cfg: cfg, stop: make(chan struct{})}
	for _, k := range []struct {
		name string
		w    int
	}{{ReqBlockNumber, cfg.Mix.BlockNumber}, {ReqLatestBlock, cfg.Mix.LatestBlock}, {ReqOldBlock, cfg.Mix.OldBlock},
		{ReqBalance, cfg.Mix.Balance}, {ReqChainID, cfg.Mix.ChainID}, {ReqCall, cfg.Mix.Call}} {
		if k.w < 0 {
			return nil, fmt.Errorf("loadgen: negative weight for %s", k.name)
		}
		for i := 0; i < k.w; i++ {
			l.kinds = append(l.kinds, k.name)
		}
	}
	if cfg.ChainID != "" {
		l.chainID.Store(&cfg.ChainID)
	}
	if l.cfg.Account == "" {
		w := l.newWorker(-1)
		res, err := w.rpc("eth_accounts", []any{})
		w.close()
		var accounts []string
		if err == nil {
			err = json.Unmarshal(res, &accounts)
		}
		if err != nil || len(accounts) == 0 {
			return nil, fmt.Errorf("loadgen: no Account given and eth_accounts on %s: %s %v", cfg.URL, res, err)
		}
		l.cfg.Account = accounts[0]
	}
	if l.cfg.CallTo == "" {
		l.cfg.CallTo = l.cfg.Account
	}
	l.started = time.Now()
	var interval time.Duration
	if cfg.Rate > 0 {
		interval = time.Duration(float64(cfg.Workers) / cfg.Rate * float64(time.Second))
	}
	for i := 0; i < cfg.Workers; i++ {
		w := l.newWorker(i)
		l.workers = append(l.workers, w)
		l.wg.Add(1)
		go w.run(interval, time.Duration(i)*interval/time.Duration(cfg.Workers))
	}
	return l, nil
}

// Requests returns the number of requests answered or failed so far.
func (l *Load) Requests() int64 { return l.requests.Load() }

// Failures returns the number of requests that failed so far (Report.Errors).
func (l *Load) Failures() int64 { return l.failures.Load() }

// WaitRequests polls (every 10 ms, up to within) until n more requests than now have
// completed, so a test knows the load is flowing before and after a fault. It fails the
// test when they do not.
func (l *Load) WaitRequests(t testing.TB, n int64, within time.Duration) {
	t.Helper()
	target := l.requests.Load() + n
	deadline := time.Now().Add(within)
	for l.requests.Load() < target {
		if time.Now().After(deadline) {
			t.Fatalf("loadgen: %d of %d more requests completed within %v (%d failed so far)",
				n-(target-l.requests.Load()), n, within, l.failures.Load())
		}
		time.Sleep(10 * time.Millisecond) // polling progress made by the workers
	}
}

// Stop ends the load: no new request starts, the ones in flight finish (within
// Timeout), websockets close. It returns the report; later calls return the same one.
func (l *Load) Stop() *Report {
	l.once.Do(func() {
		close(l.stop)
		l.wg.Wait()
		for _, w := range l.workers {
			w.close()
		}
		l.report = l.buildReport(time.Now())
	})
	return l.report
}

// worker is one goroutine with its own connection and its own records (merged by Stop).
type worker struct {
	l    *Load
	id   int
	rng  *rand.Rand
	seq  uint64
	http *http.Client
	ws   *websocket.Conn

	failed  atomic.Int64 // failures so far, readable while the worker runs
	missed  int
	samples []sample
	heads   []Head
	errors  []Error
}

type sample struct {
	kind string
	took time.Duration
}

func (l *Load) newWorker(id int) *worker {
	w := &worker{l: l, id: id, rng: rand.New(rand.NewPCG(l.cfg.Seed, uint64(id+1)))}
	if strings.HasPrefix(l.cfg.URL, "http") {
		w.http = &http.Client{
			Timeout: l.cfg.Timeout,
			Transport: &http.Transport{
				// Its own pool per worker, so the workers are like separate clients.
				MaxIdleConnsPerHost: 1,
				DialContext:         (&net.Dialer{Timeout: l.cfg.Timeout}).DialContext,
			},
		}
	}
	return w
}

func (w *worker) close() {
	if w.ws != nil {
		_ = w.ws.Close()
		w.ws = nil
	}
	if w.http != nil {
		w.http.CloseIdleConnections()
	}
}

func (w *worker) run(interval, offset time.Duration) {
	defer w.l.wg.Done()
	timer := time.NewTimer(offset)
	defer timer.Stop()
	next := time.Now().Add(offset)
	for {
		if interval > 0 {
			select {
			case <-w.l.stop:
				return
			case <-timer.C:
			}
		} else {
			select {
			case <-w.l.stop:
				return
			default:
			}
		}
		w.one(w.l.kinds[w.rng.IntN(len(w.l.kinds))])
		if interval > 0 {
			next = next.Add(interval)
			if late := time.Since(next); late > interval {
				skipped := int(late / interval)
				w.missed += skipped
				next = next.Add(time.Duration(skipped) * interval)
			}
			timer.Reset(time.Until(next))
		}
	}
}

// one sends a request of the kind and records what came back.
func (w *worker) one(kind string) {
	l := w.l
	var method string
	var params []any
	var old uint64
	switch kind {
	case ReqBlockNumber:
		method, params = "eth_blockNumber", []any{}
	case ReqLatestBlock:
		method, params = "eth_getBlockByNumber", []any{"latest", false}
	case ReqOldBlock:
		if h := l.maxHead.Load(); h >= l.cfg.OldBlockDepth {
			old = w.rng.Uint64N(h - l.cfg.OldBlockDepth + 1)
		}
		method, params = "eth_getBlockByNumber", []any{quantity(old), false}
	case ReqBalance:
		method, params = "eth_getBalance", []any{l.cfg.Account, "latest"}
	case ReqChainID:
		method, params = "eth_chainId", []any{}
	case ReqCall:
		method, params = "eth_call", []any{map[string]string{"to": l.cfg.CallTo, "data": "0x"}, "latest"}
	}
	sent := time.Now()
	res, err := w.rpc(method, params)
	got := time.Now()
	if err == nil {
		err = w.check(kind, old, res, sent, got)
	}
	w.samples = append(w.samples, sample{kind, got.Sub(sent)})
	l.requests.Add(1)
	if err != nil {
		l.failures.Add(1)
		w.failed.Add(1)
		e := Error{At: sent, Took: got.Sub(sent), Worker: w.id, Request: kind}
		var fe *failure
		if errors.As(err, &fe) {
			e.Kind, e.Status, e.Code, e.Detail = fe.kind, fe.status, fe.code, fe.detail
		} else {
			e.Kind, e.Detail = KindBadAnswer, err.Error()
		}
		w.errors = append(w.errors, e)
	}
}

// failure is a classified error of one request.
type failure struct {
	kind         ErrorKind
	status, code int
	detail       string
}

func (f *failure) Error() string { return string(f.kind) + ": " + f.detail }

type envelope struct {
	ID     json.RawMessage `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// rpc makes one call on the worker's transport and returns its result, or a *failure.
func (w *worker) rpc(method string, params []any) (json.RawMessage, error) {
	w.seq++
	id := uint64(w.id+1)<<40 | w.seq
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": params})
	var out []byte
	var err error
	if w.http != nil {
		out, err = w.post(body)
	} else {
		out, err = w.wsCall(body, id)
	}
	if err != nil {
		return nil, err
	}
	var env envelope
	if err := json.Unmarshal(out, &env); err != nil {
		return nil, &failure{kind: KindBadAnswer, detail: fmt.Sprintf("not a JSON-RPC answer: %.200s", out)}
	}
	if string(env.ID) != strconv.FormatUint(id, 10) {
		return nil, &failure{kind: KindBadAnswer, detail: fmt.Sprintf("answer id %s to request id %d: %.200s", env.ID, id, out)}
	}
	if env.Error != nil {
		return nil, &failure{kind: KindRPC, code: env.Error.Code, detail: env.Error.Message}
	}
	if env.Result == nil {
		return nil, &failure{kind: KindBadAnswer, detail: fmt.Sprintf("no result: %.200s", out)}
	}
	return env.Result, nil
}

func (w *worker) post(body []byte) ([]byte, error) {
	resp, err := w.http.Post(w.l.cfg.URL, "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, transportFailure(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, transportFailure(err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &failure{kind: KindHTTP, status: resp.StatusCode, detail: fmt.Sprintf("%s: %.200s", resp.Status, out)}
	}
	return out, nil
}

func (w *worker) wsCall(body []byte, id uint64) ([]byte, error) {
	deadline := time.Now().Add(w.l.cfg.Timeout)
	if w.ws == nil {
		d := websocket.Dialer{HandshakeTimeout: w.l.cfg.Timeout}
		c, resp, err := d.Dial(w.l.cfg.URL, nil)
		if err != nil {
			if resp != nil {
				return nil, &failure{kind: KindHTTP, status: resp.StatusCode, detail: "websocket handshake: " + err.Error()}
			}
			return nil, transportFailure(fmt.Errorf("websocket dial: %w", err))
		}
		w.ws = c
	}
	fail := func(err error) ([]byte, error) {
		_ = w.ws.Close()
		w.ws = nil // a new socket for the next request
		return nil, transportFailure(err)
	}
	_ = w.ws.SetWriteDeadline(deadline)
	if err := w.ws.WriteMessage(websocket.TextMessage, body); err != nil {
		return fail(err)
	}
	_ = w.ws.SetReadDeadline(deadline)
	want := strconv.FormatUint(id, 10)
	for {
		_, msg, err := w.ws.ReadMessage()
		if err != nil {
			return fail(err)
		}
		var env struct {
			ID json.RawMessage `json:"id"`
		}
		// Anything else (a notification, an answer to an abandoned request) is skipped.
		if json.Unmarshal(msg, &env) == nil && string(env.ID) == want {
			return msg, nil
		}
	}
}

func transportFailure(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) {
		return &failure{kind: KindTimeout, detail: err.Error()}
	}
	kind := KindTransport
	if errors.Is(err, syscall.ECONNREFUSED) {
		kind = KindRefused
	}
	return &failure{kind: kind, detail: err.Error()}
}

func quantity(n uint64) string { return "0x" + strconv.FormatUint(n, 16) }

func isQuantity(s string) bool {
	if !strings.HasPrefix(s, "0x") || len(s) < 3 {
		return false
	}
	for _, c := range s[2:] {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func parseQuantity(s string) (uint64, error) {
	if !strings.HasPrefix(s, "0x") || len(s) < 3 {
		return 0, fmt.Errorf("not a quantity: %q", s)
	}
	return strconv.ParseUint(s[2:], 16, 64)
}
