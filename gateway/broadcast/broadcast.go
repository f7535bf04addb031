// Package broadcast sends a signed transaction to several upstreams of a network at
// once (issue 23, point 3): each target once, in parallel, never retried or hedged,
// through the router's single-attempt path (upstream.Router.CallOn), so every send is
// an attempt of the router's like any call (health, metrics, spans). The gateway names
// the transaction itself (proto.TxHash: keccak-256 of the raw bytes) and holds each
// target's answer against that hash; resends within a window are answered from a
// dedupe record (dedupe.go) without another broadcast. It imports config/,
// redisconn/, upstream/ and proto/.
package broadcast

import (
	"bytes"
	"encoding/hex"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/infura-gateway/infura-gateway/gateway/config"
	"github.com/infura-gateway/infura-gateway/gateway/redisconn"
	"github.com/infura-gateway/infura-gateway/proto"
	"github.com/infura-gateway/infura-gateway/upstream"
)

// Target results, the result label of gateway_broadcast_targets_total.
const (
	Accepted  = "accepted"   // the target answered the transaction's hash
	Known     = "known"      // it has the transaction already ("already known", "nonce too low" for this hash)
	Rejected  = "rejected"   // it refused it with an error of its own (insufficient funds, ...)
	WrongHash = "wrong_hash" // it answered another hash: not trusted
	Failed    = "failed"     // no answer: transport, timeout, overloaded
)

// maxTargetCalls bounds the target calls under way in one network at once: a flood of
// sends does not become a flood of goroutines. A target past it is not sent to (failed).
const maxTargetCalls = 1024

// Broadcaster is one network's broadcast; off (Handles false) until Configure gives it
// settings. It lives as long as its network: a reload reconfigures it.
type Broadcaster struct {
	network string
	router  *upstream.Router
	set     atomic.Pointer[settings] // nil: off
	dedupe  *dedupe
	slots   chan struct{}
	log     *slog.Logger
	reg     *upstream.Registry
	deduped *metrics.Counter
}

type settings struct {
	cfg     config.Broadcast
	methods proto.MethodSet
}

// New makes network's broadcaster over router; redis (nil: none) shares dedupe records
// across replicas. Its metrics go to reg (the network's view).
func New(network string, router *upstream.Router, redis *redisconn.Conn, reg *upstream.Registry, log *slog.Logger) *Broadcaster {
	b := &Broadcaster{network: network, router: router, slots: make(chan struct{}, maxTargetCalls),
		log: log, reg: reg, dedupe: newDedupe(network, redis, log)}
	b.deduped = reg.Counter("gateway_broadcast_deduped_total",
		"Sends answered from a dedupe record (the same raw transaction within the dedupe window) without another broadcast.")
	return b
}

// Configure applies c (nil: broadcast off, sends go to one upstream as any call).
func (b *Broadcaster) Configure(c *config.Broadcast) {
	if c == nil {
		b.set.Store(nil)
		return
	}
	b.dedupe.resize(c.MaxEntries)
	b.set.Store(&settings{cfg: *c, methods: proto.NewMethodSet(c.Methods)})
}

// Handles reports whether req is broadcast: on every call's path, one atomic load when
// broadcast is off.
func (b *Broadcaster) Handles(req *proto.Request) bool {
	if b == nil {
		return false
	}
	s := b.set.Load()
	return s != nil && s.methods.HasRequest(req)
}

// Send broadcasts req (a send Handles took) and returns the answer for the client,
// carrying id, in spare's room: the hash when a target accepted it, or the most specific
// refusal. An error is for the transport to frame, as a Caller's.
func (b *Broadcaster) Send(spare []byte, req *proto.Request, id []byte, deadline time.Time) ([]byte, error) {
	s := b.set.Load()
	if s == nil { // reconfigured off since Handles
		return b.router.HTTP().Call(spare, req, id, deadline)
	}
	h, ok := proto.TxHash(req.Params)
	if !ok {
		return spare[:0], proto.ErrRawTx
	}
	key, err := dedupeKey(req, &h)
	if err != nil {
		return spare[:0], err
	}
	for {
		st, rec, err := b.dedupe.claim(key, s.cfg.DedupeWindow, deadline)
		switch {
		case err != nil:
			return spare[:0], err
		case st == claimDone:
			b.deduped.Inc()
			return appendResult(spare[:0], id, &h), nil
		case st == claimNew:
			ans, accepted, err := b.broadcast(spare, s, req, id, &h, deadline)
			b.dedupe.settle(key, rec, accepted, s.cfg.DedupeWindow)
			return ans, err
		}
		// claimRetry: the broadcast another call made failed; this one tries itself.
	}
}

// outcome is one target's answer.
type outcome struct {
	target string
	result string
	ans    []byte // the node's answer (rejected), with the client's id
	err    error  // failed
}

// broadcast sends to every target and answers as soon as one accepted, or when all
// have answered. Targets still under way then finish on their own (their results
// counted): the job owns copies of what they read.
func (b *Broadcaster) broadcast(spare []byte, s *settings, req *proto.Request, id []byte, h *[32]byte, deadline time.Time) ([]byte, bool, error) {
	targets := s.cfg.Targets
	if targets == nil {
		for _, u := range b.router.Upstreams() {
			targets = append(targets, u.Name())
		}
	}
	job := &job{b: b, hash: *h, deadline: deadline, id: bytes.Clone(id),
		name: bytes.Clone(req.Name), params: bytes.Clone(req.Params),
		out: make(chan outcome, len(targets))}
	for _, t := range targets {
		select {
		case b.slots <- struct{}{}:
			go job.send(t)
		default:
			job.out <- job.count(outcome{target: t, result: Failed, err: proto.ErrOverloaded})
		}
	}
	var best *outcome
	for range targets {
		o := <-job.out
		if o.result == Accepted || o.result == Known {
			return appendResult(spare[:0], id, h), true, nil
		}
		if best == nil || rank(&o) > rank(best) {
			best = &o
		}
	}
	switch {
	case best == nil:
		return spare[:0], false, errNoTarget
	case best.result == Rejected:
		return append(spare[:0], best.ans...), false, nil
	case best.result == WrongHash:
		return spare[:0], false, errWrongHash
	}
	return spare[:0], false, best.err
}

// rank orders refusals by how much they tell the client: the node's own error (e.g.
// insufficient funds) over a transport failure over an answer that cannot be trusted.
// Among failures a timeout comes first: that target may have the transaction, which
// "upstream unavailable" (another target refusing connections) would deny.
func rank(o *outcome) int {
	switch o.result {
	case Rejected:
		return 4
	case Failed:
		if errors.Is(o.err, proto.ErrTimeout) {
			return 3
		}
		return 2
	}
	return 1
}

var (
	errNoTarget  = proto.NewError(proto.CodeServer, 503, "broadcast: no upstream to send the transaction to")
	errWrongHash = proto.NewError(proto.CodeServer, 502, "broadcast: the upstreams answered another transaction hash than the transaction's")
)

// job is one broadcast: what its target calls read, theirs alone.
type job struct {
	b            *Broadcaster
	hash         [32]byte
	deadline     time.Time
	id           []byte
	name, params []byte
	out          chan outcome
}

// send makes the call on target and reports its outcome.
func (j *job) send(target string) {
	defer func() { <-j.b.slots }()
	var req proto.Request
	req.Set(j.name, j.params)
	ans, err := j.b.router.CallOn(target, nil, &req, j.id, j.deadline)
	o := outcome{target: target}
	switch {
	case err != nil:
		o.result, o.err = Failed, err
	case proto.IsErrorResponse(ans):
		o.result, o.ans = j.judgeError(target, ans), ans
	default:
		o.result = Accepted
		if got, ok := resultHash(ans); !ok || got != j.hash {
			o.result = WrongHash
			j.b.log.Warn("broadcast: an upstream answered another transaction hash; its answer is not trusted",
				"upstream", target, "want", "0x"+hex.EncodeToString(j.hash[:]), "got", printable(ans))
		}
	}
	j.out <- j.count(o)
}

// judgeError classifies a node's refusal: a node that already has this very
// transaction accepted it before.
func (j *job) judgeError(target string, ans []byte) string {
	msg := bytes.ToLower(errorMessage(ans))
	switch {
	case bytes.Contains(msg, []byte("already known")), bytes.Contains(msg, []byte("known transaction")),
		bytes.Contains(msg, []byte("alreadyknown")), bytes.Contains(msg, []byte("already imported")):
		return Known
	case bytes.Contains(msg, []byte("nonce too low")) && j.hasTx(target):
		// The sender's nonce is used: by this transaction (a resend) or another one.
		return Known
	}
	return Rejected
}

// hasTx asks target whether it has the transaction; a send-only target, which answers
// no reads, is asked through the router's reads (the chain has it when it was mined).
func (j *job) hasTx(target string) bool {
	var req proto.Request
	req.Set([]byte("eth_getTransactionByHash"), append(append([]byte("["), proto.AppendHash(nil, &j.hash)...), ']'))
	var ans []byte
	var err error
	if j.b.sendOnly(target) {
		ans, err = j.b.router.HTTP().Call(nil, &req, []byte("1"), j.deadline)
	} else {
		ans, err = j.b.router.CallOn(target, nil, &req, []byte("1"), j.deadline)
	}
	if err != nil || proto.IsErrorResponse(ans) {
		return false
	}
	res := proto.FirstMember(ans, "result")
	if !res.Present() {
		return false
	}
	tx := res.Bytes(ans)
	got, ok := stringHash(proto.FirstMember(tx, "hash").Bytes(tx))
	return ok && got == j.hash
}

// sendOnly reports whether target is a send-only upstream.
func (b *Broadcaster) sendOnly(target string) bool {
	for _, u := range b.router.Upstreams() {
		if u.Name() == target {
			return u.Spec().SendOnly
		}
	}
	return false
}

// count counts o in its target's series.
func (j *job) count(o outcome) outcome {
	j.b.reg.Counter(`gateway_broadcast_targets_total{upstream="`+o.target+`",result="`+o.result+`"}`,
		"Broadcast sends per target and result: accepted, known (it had the transaction), rejected (the node's own error), wrong_hash (it answered another hash: not trusted), failed (no answer).").Inc()
	return o
}

// appendResult appends the answer {"jsonrpc":"2.0","id":id,"result":"0x<hash>"}.
func appendResult(dst, id []byte, h *[32]byte) []byte {
	dst = append(dst, `{"jsonrpc":"2.0","id":`...)
	dst = append(dst, id...)
	dst = append(dst, `,"result":`...)
	return append(proto.AppendHash(dst, h), '}')
}

// resultHash reads the hash an answer's result names.
func resultHash(ans []byte) ([32]byte, bool) {
	return stringHash(proto.FirstMember(ans, "result").Bytes(ans))
}

// stringHash reads a JSON string "0x" + 64 hex digits, in either case.
func stringHash(s []byte) (h [32]byte, ok bool) {
	if len(s) != 68 || s[0] != '"' || s[67] != '"' || s[1] != '0' || (s[2] != 'x' && s[2] != 'X') {
		return h, false
	}
	if _, err := hex.Decode(h[:], s[3:67]); err != nil {
		return h, false
	}
	return h, true
}

// errorMessage is the message of an error answer, as sent (escapes left as they are).
func errorMessage(ans []byte) []byte {
	e := proto.FirstMember(ans, "error").Bytes(ans)
	return proto.FirstMember(e, "message").Bytes(e)
}

// printable is at most 100 bytes of an upstream's answer for a log line.
func printable(ans []byte) string {
	res := proto.FirstMember(ans, "result").Bytes(ans)
	if len(res) > 100 {
		res = res[:100]
	}
	return string(res)
}
