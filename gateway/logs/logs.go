// Package logs answers eth_getLogs over any block range: a range larger than the
// upstreams' cap is split into chunks aligned to fixed boundaries, the chunks go through
// the network's router like any call (so they spend budgets and are classified as any
// call), at most Parallel of a query and process_parallel of the network at once, and
// their logs are concatenated in block order, byte for byte what a node without a cap
// answers. A cap is configured, preset by provider kind, or learned from a provider's
// error text, on which the failing chunk is bisected. Block tags are resolved once at the
// start, so the whole answer is of one head; finalized chunks are kept in the network's
// cache, so a repeat or overlapping query asks only for the chunks it lacks.
//
// It imports config/, upstream/ and proto/; the pipeline calls it for eth_getLogs on every
// transport (POST /, batches, /socket2socket).
package logs

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/infura-gateway/infura-gateway/gateway/config"
	"github.com/infura-gateway/infura-gateway/proto"
	"github.com/infura-gateway/infura-gateway/upstream"
)

// Store keeps the answers of finalized chunks (the network's cache). Lookup returns a
// stored answer (id 1) or nil; Store keeps one only if block last is deep (Deep).
type Store interface {
	Lookup(key []byte) []byte
	Store(key []byte, last uint64, body []byte)
	Deep(n uint64) bool
}

// Head is the chain head a query's tags resolve to: the served head, and whether one is
// known (if not, the upstream is asked once).
type Head func() (uint64, bool)

// Limits are what bounds one query beyond the network's settings: the caller's plan's
// largest range (0: none) and the answer's byte budget (-max-response-body).
type Limits struct {
	MaxRange uint64
	MaxBytes int
	// Answers is the process's answer budget (-max-answer-bytes; nil: none): the chunks
	// received are counted in it while they wait for the others.
	Answers *upstream.AnswerBudget
}

// Splitter answers eth_getLogs for one network.
type Splitter struct {
	set     atomic.Pointer[config.LogsSettings] // a reload swaps it
	sem     atomic.Pointer[chan struct{}]       // the network's chunks in flight (process_parallel)
	head    Head
	store   Store // nil: no cache
	learned atomic.Uint64
	// learnedAt is when learned was last set or confirmed (unix nanoseconds): a cap
	// learned from one answer is forgotten after learnedTTL, so one odd or hostile
	// error text ("maximum 1") does not shrink every query's chunks for good.
	learnedAt atomic.Int64
	now       func() time.Time

	calls, queries, bisections, cached *metrics.Counter
}

// New makes the splitter of a network with settings set, its metrics in reg (the
// network's view). store may be nil.
func New(set config.LogsSettings, head Head, store Store, reg *upstream.Registry) *Splitter {
	s := &Splitter{head: head, store: store, now: time.Now}
	s.setParallel(set.ProcessParallel)
	s.set.Store(&set)
	s.calls = reg.Counter("gateway_logs_upstream_calls_total", "Upstream calls made for eth_getLogs queries the gateway split (chunks, bisections, tag resolution).")
	s.queries = reg.Counter("gateway_logs_split_queries_total", "eth_getLogs queries the gateway answered by chunks.")
	s.bisections = reg.Counter("gateway_logs_bisections_total", "Chunks split again after a provider's cap error.")
	s.cached = reg.Counter("gateway_logs_chunk_cache_hits_total", "Finalized eth_getLogs chunks answered from the cache.")
	reg.Gauge("gateway_logs_learned_max_range", "The block range learned from providers' cap errors (0: none learned).",
		func() float64 { return float64(s.Learned()) })
	return s
}

// Reload takes a reloaded configuration's settings. When the network's upstreams
// changed, what was learned of the old ones is forgotten.
func (s *Splitter) Reload(set config.LogsSettings, upstreamsChanged bool) {
	s.setParallel(set.ProcessParallel)
	s.set.Store(&set)
	if upstreamsChanged {
		s.learned.Store(0)
	}
}

// setParallel sets the bound of the network's chunks in flight, every query together
// (process_parallel; n <= 0: the default). Chunks in flight keep the bound they were
// admitted under. Each network has its own: one process-wide pool let a network whose
// upstreams held their chunks (slow, stalled) take every slot, and the other networks'
// queries waited for them until their deadlines.
func (s *Splitter) setParallel(n int) {
	if n <= 0 {
		n = config.DefaultLogsProcessParallel
	}
	if cur := s.sem.Load(); cur != nil && cap(*cur) == n {
		return
	}
	ch := make(chan struct{}, n)
	s.sem.Store(&ch)
}

// errors answering a query.
var (
	errTooManyCalls = proto.NewError(proto.CodeLimitExceeded, 200, "")
	errTimeout      = proto.ErrTimeout
)

// planRangeError names the plan's limit.
func planRangeError(asked, max uint64) *proto.Error {
	return proto.NewError(proto.CodeLimitExceeded, 200, "eth_getLogs block range too large: "+
		strconv.FormatUint(asked, 10)+" blocks asked, this key's plan allows at most "+
		strconv.FormatUint(max, 10)+" (logs_max_range); split the query")
}

func callsError(need, max int) *proto.Error {
	e := *errTooManyCalls
	e.Message = "eth_getLogs block range too large: it needs " + strconv.Itoa(need) +
		" upstream calls, more than the " + strconv.Itoa(max) + " one query may take (logs.max_calls); split the query"
	return &e
}

// errAnswerTooLarge refuses a merge past the byte budget, before the rest is fetched.
var errAnswerTooLarge = proto.NewError(proto.CodeLimitExceeded, 502,
	"eth_getLogs answer larger than the configured maximum (-max-response-body); narrow the query")

var storedID = []byte("1")

var (
	nameGetLogs     = []byte("eth_getLogs")
	nameBlockByNum  = []byte("eth_getBlockByNumber")
	nameBlockNumber = []byte("eth_blockNumber")
)

// Serve answers r, an eth_getLogs with id, into dst. handled is false when the query is
// one the pipeline forwards as any call: a blockHash query (never split), both bounds at
// the head, or a filter the gateway does not read (the node answers it as it would).
// Otherwise dst holds the answer, or perr the error to answer with.
func (s *Splitter) Serve(dst []byte, up upstream.Caller, r *proto.Request, id []byte, deadline time.Time, lim Limits) (ans []byte, handled bool, perr *proto.Error) {
	f, ok := parseFilter(r.Params)
	// A range from "pending" is the node's to answer (geth refuses pending logs).
	if !ok || f.blockHash || f.headOnly() || f.fromKind == proto.BlockPending {
		return dst, false, nil
	}
	toPending := f.toKind == proto.BlockPending
	set := s.set.Load()
	q := &query{s: s, set: set, up: up, f: &f, deadline: deadline, maxBytes: lim.MaxBytes, answers: lim.Answers, id: id}
	if perr := q.resolve(); perr != nil {
		return dst, true, perr
	}
	if h, ok := s.head(); ok && f.to > h {
		// Chunks go up to the served head; the blocks past it are the node's to answer,
		// in one last call of the client's bounds (pastChunk). Cut off, they would be
		// answered empty while an upstream, ahead of the served head, had a block of
		// them: a client that read the range as done would never get that block's logs.
		q.past, f.to = f.to, h
	}
	if toPending {
		// The chunks go up to the head; the last one asks the node for (head, pending]
		// as the client wrote it: a node that refuses pending logs (geth) refuses the
		// query, one that reads pending as its head answers up to it.
		q.past = pendingBlock
	}
	if f.from > f.to {
		return dst, false, nil // the node's own answer to a reversed range, or one past the head
	}
	span := f.to - f.from + 1
	if lim.MaxRange > 0 && span > lim.MaxRange {
		return dst, true, planRangeError(span, lim.MaxRange)
	}
	step := s.step(set)
	chunks := int((f.to/step - f.from/step) + 1)
	if q.past > 0 {
		chunks++
	}
	if max := set.MaxCalls; max > 0 && chunks > max {
		return dst, true, callsError(chunks, max)
	}
	s.queries.Inc()
	return q.run(dst, step, chunks)
}

// step is the chunk size: split_range, never above the configured or learned cap.
func (s *Splitter) step(set *config.LogsSettings) uint64 {
	step := set.SplitRange
	if m := set.Cap(); m > 0 && m < step {
		step = m
	}
	if l := s.Learned(); l > 0 && l < step {
		step = l
	}
	return max(step, 1)
}

// query is one eth_getLogs being answered by chunks.
type query struct {
	s        *Splitter
	set      *config.LogsSettings
	up       upstream.Caller
	f        *filter
	deadline time.Time
	maxBytes int
	answers  *upstream.AnswerBudget
	id       []byte
	calls    atomic.Int64
	// past is the client's last block when it is past the served head (f.to, then),
	// or pendingBlock for a toBlock of "pending", else 0: the query's last chunk is
	// (f.to, past], sent as the client wrote it.
	past uint64
}

// resolve turns the filter's tags into numbers, once: latest and pending are the served
// head, safe and finalized what the upstream names them now.
func (q *query) resolve() *proto.Error {
	var head uint64
	haveHead := false
	for _, b := range []struct {
		kind *proto.BlockKind
		n    *uint64
	}{{&q.f.fromKind, &q.f.from}, {&q.f.toKind, &q.f.to}} {
		switch *b.kind {
		case proto.BlockLatest, proto.BlockPending:
			if !haveHead {
				var perr *proto.Error
				if head, perr = q.headNumber(); perr != nil {
					return perr
				}
				haveHead = true
			}
			*b.n = head
		case proto.BlockSafe, proto.BlockFinalized:
			n, perr := q.tagNumber(*b.kind)
			if perr != nil {
				return perr
			}
			*b.n = n
		}
		*b.kind = proto.BlockNumber
	}
	return nil
}

func (q *query) headNumber() (uint64, *proto.Error) {
	if n, ok := q.s.head(); ok {
		return n, nil
	}
	var r proto.Request
	r.Set(nameBlockNumber, nil)
	ans, perr := q.call(nil, &r)
	if perr != nil {
		return 0, perr
	}
	n, ok := proto.ParseQuantity(proto.FirstMember(ans, "result").Bytes(ans))
	if !ok {
		return 0, proto.ErrBadUpstream
	}
	return n, nil
}

func (q *query) tagNumber(k proto.BlockKind) (uint64, *proto.Error) {
	tag, params := "safe", `["safe",false]`
	if k == proto.BlockFinalized {
		tag, params = "finalized", `["finalized",false]`
	}
	var r proto.Request
	r.Set(nameBlockByNum, []byte(params))
	ans, perr := q.call(nil, &r)
	if perr != nil {
		return 0, perr
	}
	res := proto.FirstMember(ans, "result").Bytes(ans)
	n, ok := proto.ParseQuantity(proto.FirstMember(res, "number").Bytes(res))
	if !ok {
		return 0, proto.NewError(proto.CodeServer, 502, "upstream did not name its "+tag+" block")
	}
	return n, nil
}

// call makes one upstream call for the query, counted.
func (q *query) call(spare []byte, r *proto.Request) ([]byte, *proto.Error) {
	q.calls.Add(1)
	q.s.calls.Inc()
	ans, err := q.up.Call(spare, r, storedID, q.deadline)
	if err != nil {
		if e, ok := err.(*proto.Error); ok {
			return nil, e
		}
		return nil, proto.ErrInternal
	}
	return ans, nil
}

// run fetches chunks [from, to] split at multiples of step and merges them into dst.
func (q *query) run(dst []byte, step uint64, chunks int) ([]byte, bool, *proto.Error) {
	ctx, cancel := context.WithDeadline(context.Background(), q.deadline)
	defer cancel()
	m := &merge{parts: make([][]byte, chunks), stop: cancel, maxSize: q.maxBytes, answers: q.answers}
	defer func() { m.answers.Release(m.held) }() // after the workers and the assembly
	base := q.f.from / step
	var next atomic.Int64
	workers := min(max(q.set.Parallel, 1), chunks)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var params []byte
			for {
				i := int(next.Add(1) - 1)
				if i >= chunks || ctx.Err() != nil {
					return
				}
				lo := max(q.f.from, (base+uint64(i))*step)
				hi := min(q.f.to, (base+uint64(i)+1)*step-1)
				if q.past > 0 && i == chunks-1 {
					lo, hi = q.f.to+1, q.past
				}
				sem := *q.s.sem.Load()
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
					return
				}
				logs, perr, errAns := q.fetch(ctx, &params, lo, hi)
				<-sem
				if perr != nil || errAns != nil {
					m.fail(perr, errAns)
					return
				}
				m.add(i, logs)
			}
		}()
	}
	wg.Wait()
	if !m.failed && ctx.Err() != nil {
		m.failed, m.perr = true, errTimeout
	}
	if m.failed {
		if m.errAns != nil {
			span := proto.FirstMember(m.errAns, "id")
			return proto.Splice(dst, m.errAns, span, q.id), true, nil
		}
		return dst, true, m.perr
	}
	return m.assemble(dst, q.id), true, nil
}

// fetch returns the logs of blocks [lo, hi]: from the cache, or one upstream call, or,
// when the provider answers with its cap, the two halves (or the range it suggests and
// the rest), each fetched the same way. A node's error answer that is no cap is the
// query's answer (errAns).
func (q *query) fetch(ctx context.Context, params *[]byte, lo, hi uint64) (logs []byte, perr *proto.Error, errAns []byte) {
	*params = q.f.appendParams((*params)[:0], lo, hi)
	key := append([]byte{byte(proto.MethodOf(nameGetLogs))}, *params...)
	st := q.s.store
	if st != nil && st.Deep(hi) {
		if body := st.Lookup(key); body != nil {
			q.s.cached.Inc()
			return resultInside(body), nil, nil
		}
	}
	if max := q.set.MaxCalls; max > 0 && q.calls.Load() >= int64(max) {
		return nil, callsError(int(q.calls.Load())+1, max), nil
	}
	if ctx.Err() != nil {
		return nil, errTimeout, nil
	}
	var r proto.Request
	r.Set(nameGetLogs, *params)
	ans, perr := q.call(nil, &r)
	if perr != nil {
		return nil, perr, nil
	}
	if !proto.IsErrorResponse(ans) {
		res := proto.FirstMember(ans, "result").Bytes(ans)
		if len(res) == 0 || (res[0] != '[' && string(res) != "null") {
			return nil, proto.ErrBadUpstream, nil
		}
		logs = resultInside(ans)
		if st != nil && st.Deep(hi) {
			st.Store(key, hi, ans)
		}
		return logs, nil, nil
	}
	c := parseCapError(ans)
	if !c.IsCap || lo == hi || lo > q.f.to {
		// The chunk past the served head is not bisected: the node's answer to it, a
		// cap too, is the query's.
		return nil, nil, ans
	}
	q.s.bisections.Inc()
	mid := lo + (hi-lo)/2
	switch {
	case c.Suggested && c.From == lo && c.To >= lo && c.To < hi:
		mid = c.To
	case c.MaxRange > 0 && c.MaxRange < hi-lo+1:
		mid = lo + c.MaxRange - 1
	}
	if c.MaxRange > 0 {
		q.s.learn(c.MaxRange)
	} else if !c.Results {
		q.s.learn(mid - lo + 1) // a block cap that names no number: at most half of what failed
	}
	left, perr, errAns := q.fetch(ctx, params, lo, mid)
	if perr != nil || errAns != nil {
		return nil, perr, errAns
	}
	left = append([]byte(nil), left...) // the halves' answers are separate buffers; keep this one
	// Counted while the right half is fetched, as the merge counts a chunk (merge.add).
	var held int64
	q.answers.Recount(&held, len(left))
	defer func() { q.answers.Release(held) }()
	right, perr, errAns := q.fetch(ctx, params, mid+1, hi)
	if perr != nil || errAns != nil {
		return nil, perr, errAns
	}
	switch {
	case len(left) == 0:
		logs = right
	case len(right) == 0:
		logs = left
	default:
		logs = append(append(left, ','), right...)
	}
	if st != nil && st.Deep(hi) {
		// The whole chunk, so a repeat asks nothing (the halves are stored under their own keys).
		*params = q.f.appendParams((*params)[:0], lo, hi)
		key = append(key[:1], *params...)
		body := append(append([]byte(`{"jsonrpc":"2.0","id":1,"result":[`), logs...), "]}"...)
		st.Store(key, hi, body)
	}
	return logs, nil, nil
}

// resultInside is what lies between the brackets of the answer's result array (nil for
// an empty one or null).
func resultInside(ans []byte) []byte {
	res := proto.TrimWS(proto.FirstMember(ans, "result").Bytes(ans))
	if len(res) < 2 || res[0] != '[' {
		return nil
	}
	return proto.TrimWS(res[1 : len(res)-1])
}

// Small reports whether r, an eth_getLogs, is one chunk the pipeline may send on as any
// call (through its cache stage, allocation-free): its bounds numbers, `earliest` or
// the head (read locally), its span within one chunk of the smallest cap known and
// within the plan's maxRange (0: none). Tags the splitter would ask an upstream for
// (safe, finalized), blockHash queries and filters it does not read are not small: they
// go to Serve, which forwards what it does not split. A small query the node refuses
// for a cap the gateway did not know is handed to Serve after all (CapError).
func (s *Splitter) Small(r *proto.Request, maxRange uint64) bool {
	f, ok := parseFilter(r.Params)
	if !ok || f.blockHash {
		return false
	}
	head, haveHead := s.head()
	for _, b := range [...]struct {
		kind proto.BlockKind
		n    *uint64
	}{{f.fromKind, &f.from}, {f.toKind, &f.to}} {
		switch b.kind {
		case proto.BlockNumber: // earliest too: number 0
		case proto.BlockLatest, proto.BlockPending:
			if !haveHead {
				return false
			}
			*b.n = head
		default:
			return false
		}
	}
	if haveHead && f.to > head {
		f.to = head
	}
	if f.from > f.to {
		return false
	}
	if maxRange > 0 && f.to-f.from+1 > maxRange {
		return false
	}
	step := s.step(s.set.Load())
	return f.from/step == f.to/step
}

// CapError reports whether ans, an upstream's answer to an eth_getLogs, is a
// provider's range or results cap error (one Serve splits around), and learns the
// block cap it names, so Serve splits at it at once. It reads only error answers.
func (s *Splitter) CapError(ans []byte) bool {
	if !proto.IsErrorResponse(ans) {
		return false
	}
	c := parseCapError(ans)
	if c.IsCap && c.MaxRange > 0 && !c.Results {
		s.learn(c.MaxRange)
	}
	return c.IsCap
}
