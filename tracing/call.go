package tracing

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// HeaderLen is the length of a version-00 traceparent: 00-<trace id>-<span id>-<flags>.
const HeaderLen = 55

// MaxRequestIDLen bounds an X-Request-Id the gateway accepts; a longer one is replaced.
const MaxRequestIDLen = 64

// In is what a transport read from the client for a call: the traceparent and
// X-Request-Id headers (either may be empty). The bytes are copied by SetIn.
type In struct {
	Parent    []byte
	RequestID []byte
	// Settled: RequestID is one the gateway settled itself for this request (the
	// client's once checked, or generated), so SetIn does not check it again.
	Settled bool
}

// Clone is in with bytes of its own (a websocket keeps its upgrade's for its life).
func (in In) Clone() In {
	return In{Parent: bytes.Clone(in.Parent), RequestID: bytes.Clone(in.RequestID), Settled: in.Settled}
}

// Call is the trace state of one client call or batch, kept in the transport's pooled
// call: fixed arrays, so copying and reusing it allocates nothing.
type Call struct {
	span   trace.Span      // nil: not sampled
	ctx    context.Context // the span's context, parent of the attempts' spans
	parent parsedParent
	raw    [HeaderLen]byte // the caller's traceparent, passed on upstream when unsampled
	rid    [MaxRequestIDLen]byte
	ridLen uint8
}

type parsedParent struct {
	ok, sampled bool
	tid         trace.TraceID
	sid         trace.SpanID
}

// Reset makes c ready for another call.
func (c *Call) Reset() {
	c.span, c.ctx, c.parent, c.ridLen = nil, nil, parsedParent{}, 0
}

// SetIn takes in a call's traceparent (kept when valid) and request id (kept when
// valid, generated otherwise).
func (c *Call) SetIn(in In) {
	c.parent = parseParent(in.Parent)
	if c.parent.ok {
		copy(c.raw[:], in.Parent[:HeaderLen])
		c.raw[0], c.raw[1] = '0', '0' // a later version is passed on as the one we speak
	}
	if n := len(in.RequestID); in.Settled && n != 0 && n <= MaxRequestIDLen || ValidRequestID(in.RequestID) {
		c.ridLen = uint8(copy(c.rid[:], in.RequestID))
	} else {
		c.ridLen = uint8(len(AppendRequestID(c.rid[:0])))
	}
}

// RequestID is the call's X-Request-Id (empty before SetIn).
func (c *Call) RequestID() []byte { return c.rid[:c.ridLen] }

// Sampled reports whether c has a span.
func (c *Call) Sampled() bool { return c != nil && c.span != nil }

// Begin decides whether c is traced and, if so, starts its span named name (the
// method). Off (nil t) or unsampled, it does nothing and allocates nothing.
func (t *Tracer) Begin(c *Call, name string, network string) bool {
	if t == nil || !t.sample(&c.parent) {
		return false
	}
	ctx := context.Background()
	if c.parent.ok {
		ctx = trace.ContextWithRemoteSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: c.parent.tid, SpanID: c.parent.sid, TraceFlags: c.parent.flags(), Remote: true}))
	}
	c.ctx, c.span = t.tr.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("network", network), attribute.String("request_id", string(c.RequestID()))))
	return true
}

// BeginChild starts c's span as a child of parent's (a batch element): traced iff the
// batch is. c takes parent's request id.
func BeginChild(c, parent *Call, name string) {
	c.ridLen = uint8(copy(c.rid[:], parent.RequestID()))
	if !parent.Sampled() {
		return
	}
	c.ctx, c.span = trace.SpanFromContext(parent.ctx).TracerProvider().Tracer("github.com/infura-gateway/infura-gateway").
		Start(parent.ctx, name, trace.WithSpanKind(trace.SpanKindInternal))
}

// SetName names c's span after its method, once the call is parsed.
func (c *Call) SetName(name string) {
	if c.Sampled() {
		c.span.SetName(name)
	}
}

// End ends c's span (if any) with its attributes. attrs are alternating keys and
// values; the caller never passes params, keys or client addresses.
func (c *Call) End(method, outcome, cache string) {
	if !c.Sampled() {
		return
	}
	c.span.SetAttributes(attribute.String("rpc.method", method), attribute.String("outcome", outcome))
	if cache != "" {
		c.span.SetAttributes(attribute.String("cache", cache))
	}
	if outcome != "ok" && outcome != "rpc_error" {
		c.span.SetStatus(codes.Error, outcome)
	}
	c.span.End()
	c.span, c.ctx = nil, nil
}

// Header writes into buf the traceparent an upstream call of c carries: its own span
// when sampled, the caller's traceparent (unsampled, passed on) otherwise; nil when
// there is none.
func (c *Call) Header(buf *[HeaderLen]byte) []byte {
	if c == nil {
		return nil
	}
	if c.Sampled() {
		sc := c.span.SpanContext()
		return appendHeader(buf, sc.TraceID(), sc.SpanID(), sc.IsSampled())
	}
	if c.parent.ok {
		*buf = c.raw
		return buf[:]
	}
	return nil
}

func appendHeader(buf *[HeaderLen]byte, tid trace.TraceID, sid trace.SpanID, sampled bool) []byte {
	b := buf[:]
	b[0], b[1], b[2] = '0', '0', '-'
	hex.Encode(b[3:35], tid[:])
	b[35] = '-'
	hex.Encode(b[36:52], sid[:])
	b[52], b[53], b[54] = '-', '0', '0'
	if sampled {
		b[54] = '1'
	}
	return b
}

// Attempt is the span of one upstream attempt; the zero Attempt (unsampled) does nothing.
type Attempt struct {
	span trace.Span
}

// StartAttempt starts the span of an attempt of c's call on upstream; kind says which
// attempt it is (first, retry, hedge). Nothing happens when c is unsampled.
func StartAttempt(c *Call, upstream, transport, kind string) Attempt {
	if !c.Sampled() {
		return Attempt{}
	}
	_, sp := trace.SpanFromContext(c.ctx).TracerProvider().Tracer("github.com/infura-gateway/infura-gateway").
		Start(c.ctx, "upstream "+kind, trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String("upstream", upstream), attribute.String("transport", transport),
				attribute.String("attempt", kind)))
	return Attempt{sp}
}

// Header is the traceparent the attempt's request carries: its own span when sampled,
// else c's (the caller's, passed on).
func (a Attempt) Header(buf *[HeaderLen]byte, c *Call) []byte {
	if a.span == nil {
		return c.Header(buf)
	}
	sc := a.span.SpanContext()
	return appendHeader(buf, sc.TraceID(), sc.SpanID(), true)
}

// Sampled reports whether the attempt has a span: when not, the caller skips working
// out what End would record.
func (a Attempt) Sampled() bool { return a.span != nil }

// End ends the attempt's span with its outcome class.
func (a Attempt) End(method, outcome string) {
	if a.span == nil {
		return
	}
	a.span.SetAttributes(attribute.String("rpc.method", method), attribute.String("outcome", outcome))
	if outcome != "ok" && outcome != "rpc_error" {
		a.span.SetStatus(codes.Error, outcome)
	}
	a.span.End()
}

func (p parsedParent) flags() trace.TraceFlags {
	if p.sampled {
		return trace.FlagsSampled
	}
	return 0
}

// parseParent reads a W3C traceparent: version (not ff), 32 and 16 lower-case hex
// digits neither all zero, flags. A later version may append fields after a '-'.
func parseParent(b []byte) parsedParent {
	var p parsedParent
	if len(b) < HeaderLen || (len(b) > HeaderLen && b[HeaderLen] != '-') ||
		b[2] != '-' || b[35] != '-' || b[52] != '-' {
		return p
	}
	if !lowerHex(b[0:2]) || !lowerHex(b[3:35]) || !lowerHex(b[36:52]) || !lowerHex(b[53:55]) {
		return p
	}
	if b[0] == 'f' && b[1] == 'f' || (b[0] == '0' && b[1] == '0' && len(b) != HeaderLen) {
		return p
	}
	if _, err := hex.Decode(p.tid[:], b[3:35]); err != nil || !p.tid.IsValid() {
		return parsedParent{}
	}
	if _, err := hex.Decode(p.sid[:], b[36:52]); err != nil || !p.sid.IsValid() {
		return parsedParent{}
	}
	p.ok, p.sampled = true, unhex(b[54])&1 == 1
	return p
}

func lowerHex(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func unhex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c - 'a' + 10
}

// ValidRequestID reports whether a client's X-Request-Id is taken as it is: 1 to
// MaxRequestIDLen of letters, digits and - _ . : (safe in a header, a log line and a
// span attribute).
func ValidRequestID(b []byte) bool {
	if len(b) == 0 || len(b) > MaxRequestIDLen {
		return false
	}
	for _, c := range b {
		if !requestIDChars[c] {
			return false
		}
	}
	return true
}

// requestIDChars are the bytes a request id may hold: a table, as every request's id
// is checked (the instrumenter's, then the call's).
var requestIDChars = func() (t [256]bool) {
	for c := range 256 {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':'
	}
	return t
}()

// AppendRequestID appends a new request id: 32 random hex digits, written straight
// from two random words, eight digits at a time (one is made for every request that
// comes without an id).
func AppendRequestID(dst []byte) []byte {
	var id [32]byte
	a, b := rand.Uint64(), rand.Uint64()
	binary.LittleEndian.PutUint64(id[0:], hex8(uint32(a)))
	binary.LittleEndian.PutUint64(id[8:], hex8(uint32(a>>32)))
	binary.LittleEndian.PutUint64(id[16:], hex8(uint32(b)))
	binary.LittleEndian.PutUint64(id[24:], hex8(uint32(b>>32)))
	return append(dst, id[:]...)
}

// hex8 spreads the eight nibbles of v over the eight bytes of a word, each as a
// lower-case hex digit: a nibble per byte, then '0' added, and 'a'-'0'-10 more where
// the nibble is over 9 (no byte carries into the next). The nibbles land in an order of
// their own, which a random id does not mind.
func hex8(v uint32) uint64 {
	x := uint64(v)
	x = (x | x<<16) & 0x0000ffff0000ffff
	x = (x | x<<8) & 0x00ff00ff00ff00ff
	x = (x | x<<4) & 0x0f0f0f0f0f0f0f0f
	over9 := (x + 0x0606060606060606) >> 4 & 0x0101010101010101
	return x + 0x3030303030303030 + over9*('a'-'0'-10)
}

// The trace headers' names in fasthttp's canonical form, the form its server stores a
// request's header names in (it normalizes them as it parses: "traceparent" arrives as
// "Traceparent"): looked up with PeekCanonical, nothing is copied or normalized per
// request, and set with SetCanonical the same way.
var (
	TraceparentHeader = []byte("Traceparent")
	RequestIDHeader   = []byte("X-Request-Id")
)
