// Integrity: an answer is checked against what was asked before it counts as an
// answer (and so before the pipeline caches or shares it). A block of another number
// or hash, a transaction or receipt of another hash, logs outside the asked range are
// wrong answers: the attempt fails (errWrongAnswer), the router tries another upstream
// at once, and the upstream is charged a failure in its health (a node that answers
// for something else than was asked is broken). A null block the served head says
// exists, from an upstream whose own head is below it, is missing data: retried
// elsewhere, never an answer. The checks read the answer with the byte scanners and
// allocate nothing; a method without a check costs one table lookup.

package upstream

import (
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/infura-gateway/infura-gateway/proto"
)

// check is one integrity check, and the label of its wrong answers.
type check uint8

const (
	checkNone check = iota
	checkBlockNumber
	checkBlockHash
	checkTxHash
	checkReceiptHash
	checkLogs
	checkConsensus // a dissenter in a consensus call (consensus.go)
	numChecks
)

var checkNames = [numChecks]string{"", "block_number", "block_hash", "tx_hash", "receipt_hash", "logs", "consensus"}

func (c check) String() string { return checkNames[c] }

// healthTexts are the health's last-error texts of wrong answers, built once.
var healthTexts = func() (t [numChecks]string) {
	for c := checkBlockNumber; c < numChecks; c++ {
		t[c] = "wrong answer: " + checkNames[c]
	}
	return t
}()

// errWrongAnswer is an attempt whose answer failed an integrity check; another
// upstream may answer right.
var errWrongAnswer = proto.NewError(proto.CodeServer, 502,
	"upstream answered for another block, transaction or range than asked")

// errNullLagging is a null answer for a block the served head says exists from an
// upstream behind it: missing data, not an answer (unlike errLagging, no answer of the
// node's own stands in for it when every upstream lacks the block).
var errNullLagging = proto.NewError(proto.CodeServer, 502, "upstream lacks the block")

// rule is how the answers of one method are checked.
type rule struct {
	check check
	// field is the member of the result (of each element, when each) compared to
	// what was asked.
	field string
	// byHash: the asked value is the block parameter's hash (or, with param0, the
	// first parameter as a hash); otherwise its number.
	byHash, param0 bool
	// each: the result is an array, every element is checked.
	each bool
	// nullLags: a null result for a block the upstream has not reached is missing data.
	nullLags bool
}

var rules = func() (t [proto.NumMethods]rule) {
	set := func(name string, r rule) {
		m := proto.MethodNamed(name)
		if m == proto.MethodOther {
			panic("BUG: integrity rule for unknown method " + name)
		}
		t[m] = r
	}
	set("eth_getBlockByNumber", rule{check: checkBlockNumber, field: "number", nullLags: true})
	set("eth_getBlockByHash", rule{check: checkBlockHash, field: "hash", byHash: true})
	set("eth_getTransactionByBlockNumberAndIndex", rule{check: checkBlockNumber, field: "blockNumber", nullLags: true})
	set("eth_getTransactionByBlockHashAndIndex", rule{check: checkBlockHash, field: "blockHash", byHash: true})
	set("eth_getBlockReceipts", rule{check: checkBlockNumber, field: "blockNumber", each: true, nullLags: true})
	set("eth_getBlockTransactionCountByNumber", rule{nullLags: true})
	set("eth_getUncleCountByBlockNumber", rule{nullLags: true})
	set("eth_getTransactionByHash", rule{check: checkTxHash, field: "hash", byHash: true, param0: true})
	set("eth_getTransactionReceipt", rule{check: checkReceiptHash, field: "transactionHash", byHash: true, param0: true})
	set("eth_getLogs", rule{check: checkLogs, each: true})
	return t
}()

// verify checks ans, u's answer to req: the check it failed (checkNone when it
// passed or nothing is checked), or lagging for a null the served head says is not
// the chain's answer.
func (r *Router) verify(u *Upstream, req *proto.Request, ans []byte) (failed check, lagging bool) {
	ru := &rules[req.Method]
	if ru.check == checkNone && !ru.nullLags {
		return checkNone, false
	}
	res := proto.FirstMember(ans, "result")
	if !res.Present() {
		return checkNone, false // an error answer: the classifier's
	}
	v := res.Bytes(ans)
	if string(v) == "null" {
		return checkNone, ru.nullLags && r.lagsFor(u, req)
	}
	switch {
	case ru.check == checkNone:
		return checkNone, false
	case ru.check == checkLogs:
		if !logsInRange(req, v) {
			return checkLogs, false
		}
		return checkNone, false
	}
	var want []byte
	var wantN uint64
	if ru.byHash {
		if ru.param0 {
			if proto.FirstByte(req.Params) == '[' {
				if s := proto.Nth(req.Params, 0); s.Present() {
					want = s.Bytes(req.Params)
				}
			}
		} else if kind, _, _ := req.Block(); kind == proto.BlockHash {
			want = blockHashParam(req)
		}
		if len(want) < 2 || want[0] != '"' {
			return checkNone, false // not asked by a hash the gateway can read: nothing to compare
		}
	} else {
		kind, n, ok := req.Block()
		switch {
		case ok && kind == proto.BlockNumber:
			wantN = n
		case ok && kind == proto.BlockHash && ru.each:
			// eth_getBlockReceipts by hash: every receipt's blockHash.
			if want = blockHashParam(req); len(want) < 2 || want[0] != '"' {
				return checkNone, false
			}
		default:
			return checkNone, false // a tag: any block may be the answer
		}
	}
	field := ru.field
	c := ru.check
	if want != nil && !ru.byHash {
		field, c = "blockHash", checkBlockHash
	}
	if !ru.each {
		if !fieldMatches(v, field, want, wantN) {
			return c, false
		}
		return checkNone, false
	}
	it, err := proto.NewArrayIter(v)
	if err != nil {
		return checkNone, false
	}
	for {
		el, ok, err := it.Next()
		if err != nil || !ok {
			return checkNone, false
		}
		if !fieldMatches(el.Bytes(v), field, want, wantN) {
			return c, false
		}
	}
}

// fieldMatches reports whether obj's member field is want (a quoted hash, compared
// without regard to case) or, when want is nil, the quantity wantN. A member that is
// absent or unreadable is not judged: only a value that is there and differs is wrong.
func fieldMatches(obj []byte, field string, want []byte, wantN uint64) bool {
	if proto.FirstByte(obj) != '{' {
		return true
	}
	got := proto.FirstMember(obj, field)
	if !got.Present() {
		return true
	}
	g := got.Bytes(obj)
	if want != nil {
		return len(g) < 2 || g[0] != '"' || equalHex(g, want)
	}
	n, ok := proto.ParseQuantity(g)
	return !ok || n == wantN
}

// equalHex compares two quoted hex strings without regard to the case of letters.
func equalHex(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// logsInRange reports whether every log of an eth_getLogs answer lies in the filter's
// blocks: blockNumber within [fromBlock, toBlock] where they are numbers ("earliest"
// is 0; other tags bound nothing), blockHash the filter's when it names one.
func logsInRange(req *proto.Request, logs []byte) bool {
	if proto.FirstByte(req.Params) != '[' {
		return true
	}
	fs := proto.Nth(req.Params, 0)
	if !fs.Present() {
		return true
	}
	f := fs.Bytes(req.Params)
	if proto.FirstByte(f) != '{' {
		return true
	}
	var hash []byte
	lo, hi := uint64(0), ^uint64(0)
	if h := proto.FirstMember(f, "blockHash"); h.Present() {
		if hash = h.Bytes(f); len(hash) < 2 || hash[0] != '"' {
			return true
		}
	} else {
		if s := proto.FirstMember(f, "fromBlock"); s.Present() {
			if kind, n := proto.ParseBlockRef(s.Bytes(f)); kind == proto.BlockNumber {
				lo = n
			}
		}
		if s := proto.FirstMember(f, "toBlock"); s.Present() {
			if kind, n := proto.ParseBlockRef(s.Bytes(f)); kind == proto.BlockNumber {
				hi = n
			}
		}
		if lo == 0 && hi == ^uint64(0) {
			return true
		}
	}
	it, err := proto.NewArrayIter(logs)
	if err != nil {
		return true
	}
	for {
		el, ok, err := it.Next()
		if err != nil || !ok {
			return true
		}
		l := el.Bytes(logs)
		if proto.FirstByte(l) != '{' {
			continue
		}
		if hash != nil {
			if !fieldMatches(l, "blockHash", hash, 0) {
				return false
			}
			continue
		}
		if n, ok := proto.ParseQuantity(proto.FirstMember(l, "blockNumber").Bytes(l)); ok && (n < lo || n > hi) {
			return false
		}
	}
}

// lagsFor reports whether a null for req's block is u lagging: the block is at or
// below the served head and above u's own head.
func (r *Router) lagsFor(u *Upstream, req *proto.Request) bool {
	kind, n, ok := req.Block()
	if !ok || kind != proto.BlockNumber || !r.headKnown.Load() || !u.health.HeadKnown() {
		return false
	}
	return n <= r.served.Load() && u.health.Head() < n
}

// integrityState is an upstream's wrong answers, by check.
type integrityState struct {
	wrong [numChecks]*metrics.Counter
	consensusVotes
}

// wrongAnswer records that u's answer failed c: counted, and a failure in its health.
func (r *Router) wrongAnswer(u *Upstream, req *proto.Request, c check) {
	if ctr := u.integ.wrong[c]; ctr != nil {
		ctr.Inc()
	}
	u.health.observe(req.Class(), verdictFailed, 0, healthTexts[c], time.Now())
}

// integritySeries are u's wrong-answer series, by check.
func integritySeries(u *Upstream) []string {
	s := make([]string, 0, numChecks-1)
	for c := checkBlockNumber; c < numChecks; c++ {
		s = append(s, `gateway_upstream_wrong_answers_total{upstream="`+u.spec.Name+`",check="`+c.String()+`"}`)
	}
	return s
}

func registerIntegrity(reg *Registry, u *Upstream) {
	for i, s := range integritySeries(u) {
		u.integ.wrong[checkBlockNumber+check(i)] = reg.Counter(s,
			"Upstream answers that failed an integrity check (block_number, block_hash, tx_hash, receipt_hash, logs) or dissented in a consensus call.")
	}
}

func unregisterIntegrity(reg *Registry, u *Upstream) {
	for _, s := range integritySeries(u) {
		reg.Unregister(s)
	}
}

// wrongStatus is u's wrong answers by check, for /status (nil: none).
func (u *Upstream) wrongStatus() map[string]uint64 {
	var m map[string]uint64
	for c, ctr := range u.integ.wrong {
		if ctr == nil || ctr.Get() == 0 {
			continue
		}
		if m == nil {
			m = make(map[string]uint64)
		}
		m[check(c).String()] = ctr.Get()
	}
	return m
}

// verifyBatch checks every answer of a batch u answered. An element answered wrongly
// (or null from behind the served head) is asked again alone, of the other upstreams,
// as any call: its new answer or error replaces the one u gave.
func (r *Router) verifyBatch(b *Batch, u *Upstream, deadline time.Time, via Transport) {
	for i, req := range b.Reqs {
		if r.underConsensus(req) != nil {
			// A batch goes to one upstream: an element under consensus is asked of
			// k upstreams on its own, and their agreed answer replaces this one.
			again, err := r.call(nil, req, b.IDs[i], deadline, via)
			b.replace(i, again, asProtoError(err), err == nil)
			continue
		}
		ans, e := b.Answer(i)
		if e != nil {
			continue
		}
		c, lagging := r.verify(u, req, ans)
		switch {
		case c != checkNone:
			r.wrongAnswer(u, req, c)
			r.noteAnswer(u, AnswerBroken, 0)
		case lagging:
			r.noteAnswer(u, AnswerMissingData, 0)
		default:
			continue
		}
		again, err := r.callAvoiding(nil, req, b.IDs[i], deadline, via, u)
		b.replace(i, again, asProtoError(err), err == nil)
	}
}

// replace makes ans (which carries the request's id) the answer of request i, or e
// its error when !ok.
func (b *Batch) replace(i int, ans []byte, e *proto.Error, ok bool) {
	b.mu.Lock()
	b.spans[i] = proto.Span{}
	b.errs[i] = nil
	b.mu.Unlock()
	if ok {
		b.setAnswerRaw(i, ans)
	} else {
		b.setError(i, e)
	}
}
