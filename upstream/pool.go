package upstream

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/proto"
	"github.com/infura-gateway/infura-gateway/tracing"
)

// PoolConfig configures the HTTP upstream. Every field is required: the defaults live
// in the gateway's Config, in one place.
type PoolConfig struct {
	URL string // http(s)://host[:port]/path
	// Basic auth. Infura takes the project secret as the password with an empty user.
	// Credentials in the URL (user:pass@) are used when these are empty.
	User, Password string

	MaxConns            int           // connections to the upstream
	MaxConnWaitTimeout  time.Duration // wait for a free connection before failing with 503
	DialTimeout         time.Duration
	MaxIdleConnDuration time.Duration // close idle connections after this (below the node's own idle timeout)
	MaxResponseBodySize int           // larger answers fail with proto.ErrResponseTooLarge
	// Answers is the process's budget of answer bytes held at once (nil: none).
	Answers *AnswerBudget
	Metrics *Metrics
	// Classifier classifies error answers and non-200 statuses (nil: the generic rules).
	Classifier *Classifier
}

// Pool sends JSON-RPC over HTTP through one fasthttp.HostClient.
type Pool struct {
	hc      *fasthttp.HostClient
	uri     []byte // request URI without credentials
	auth    []byte // "Basic ..." or nil
	metrics *Metrics
	cls     *Classifier
	answers *AnswerBudget
	// putResponse gives an exchange's response back to responses (keepResponse; tests
	// watch what goes back).
	putResponse func(*fasthttp.Response)
	// responses holds upstream responses between calls, each with its body buffer
	// (KeepBodyBuffer), up to maxPooledBuf. fasthttp's own pool gives body buffers to
	// bytebufferpool, which calibrates on the lengths it is given: an answer leaves by
	// SwapBody, so every length it saw was 0, and once calibrated (42,000 calls) it
	// dropped every buffer over 64 bytes. Each call then allocated its body buffer
	// again and grew it: 3 allocations a call on POST /blockbynumber after 60,000 calls
	// (TestPoolKeepsBodyBuffersOnceCalibrated).
	responses sync.Pool
	// reqs holds upstream requests between calls with what every call sends the same
	// set once (URI, parsed by fasthttp on first use, method, content type,
	// credentials): a call sets only its body and tracing headers.
	reqs sync.Pool
	// dialer dials the upstream, holding dials after a failed one (pool_dial.go).
	dialer *dialer
}

// upRequest is a pooled upstream request; traced and identified say whether the last
// call left a traceparent or X-Request-Id header on it.
type upRequest struct {
	fasthttp.Request   // first: callTransport finds the upRequest from it
	traced, identified bool
	// The call's deadline, and the time it had left when it started, for
	// callTransport.
	deadline time.Time
	left     time.Duration
	// answers is the pool's answer budget; held the bytes reserved from it for the
	// call's answer so far (callTransport), given back by the call.
	answers *AnswerBudget
	held    int64
}

func (p *Pool) getRequest() *upRequest {
	if r, ok := p.reqs.Get().(*upRequest); ok {
		return r
	}
	r := &upRequest{answers: p.answers}
	r.SetRequestURIBytes(p.uri)
	r.Header.SetMethod(fasthttp.MethodPost)
	r.Header.SetContentTypeBytes(contentTypeJSON)
	if p.auth != nil {
		r.Header.SetCanonical(authorizationHeader, p.auth)
	}
	return r
}

// NewPool validates cfg and returns a pool; it does not connect yet. Errors never
// quote the URL: it may carry a key.
func NewPool(cfg PoolConfig) (*Pool, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, errors.New("upstream HTTP URL does not parse")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("upstream HTTP URL must start with http:// or https://, got %q", u.Scheme+"://")
	}
	if u.Host == "" {
		return nil, errors.New("upstream HTTP URL has no host")
	}
	switch {
	case cfg.MaxConns <= 0, cfg.MaxConnWaitTimeout <= 0, cfg.DialTimeout <= 0,
		cfg.MaxIdleConnDuration <= 0, cfg.MaxResponseBodySize <= 0:
		return nil, errors.New("upstream pool: every limit must be > 0")
	case cfg.Metrics == nil:
		return nil, errors.New("upstream pool: no metrics")
	}
	addr := u.Host
	if u.Port() == "" {
		if u.Scheme == "https" {
			addr = net.JoinHostPort(u.Hostname(), "443")
		} else {
			addr = net.JoinHostPort(u.Hostname(), "80")
		}
	}
	p := &Pool{metrics: cfg.Metrics, cls: cfg.Classifier, answers: cfg.Answers}
	p.putResponse = p.keepResponse
	if p.cls == nil {
		p.cls = genericClassifier
	}
	// Credentials in the URL become the Authorization header, never part of the URI.
	if u.User != nil {
		if cfg.User == "" && cfg.Password == "" {
			cfg.User = u.User.Username()
			cfg.Password, _ = u.User.Password()
		}
		u.User = nil
	}
	p.uri = []byte(u.String())
	if cfg.User != "" || cfg.Password != "" {
		p.auth = []byte("Basic " + base64.StdEncoding.EncodeToString([]byte(cfg.User+":"+cfg.Password)))
	}
	p.dialer = newDialer(cfg.DialTimeout)
	p.hc = &fasthttp.HostClient{
		Addr:                addr,
		Name:                "infura-gateway",
		IsTLS:               u.Scheme == "https",
		MaxConns:            cfg.MaxConns,
		MaxConnWaitTimeout:  cfg.MaxConnWaitTimeout,
		MaxIdleConnDuration: cfg.MaxIdleConnDuration,
		MaxResponseBodySize: cfg.MaxResponseBodySize,
		ReadBufferSize:      16 << 10,
		WriteBufferSize:     16 << 10,
		DialDualStack:       true,
		Dial:                p.dialer.dial, // held after a failure (pool_dial.go)
		// Retries are decided in Call, on the decoded method: fasthttp only sees bytes.
		RetryIfErr: func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
		Transport:  callTransport{},
	}
	return p, nil
}

// Call sends r to the upstream in an envelope written here (id 1) and returns the
// answer with its id replaced by id. spare is a buffer the caller gives up; the
// returned one is the caller's. On error the answer is nil and the error a
// *proto.Error. The call never outlives deadline. A read that meets a reset on a
// kept-alive connection (the upstream restarted, or closed it while idle) is sent once
// more on a fresh connection; a write never is.
func (p *Pool) Call(spare []byte, r *proto.Request, id []byte, deadline time.Time) ([]byte, error) {
	var tp [tracing.HeaderLen]byte
	ans, _, err := p.call(spare, r, id, deadline, r.Trace.Header(&tp))
	return ans, err
}

// call is Call with the traceparent the request carries (nil: none); it also returns
// the attempt's class (classify.go) for the router.
func (p *Pool) call(spare []byte, r *proto.Request, id []byte, deadline time.Time, traceparent []byte) ([]byte, note, error) {
	start := callNow()
	env := proto.AppendEnvelope(spare[:0], gatewayID1, r)
	ures := p.getResponse()
	defer p.releaseResponse(ures)
	perr, outcome, status, held := p.exchange(env, ures, r.Retryable(), deadline, deadline.Sub(start), traceparent, requestID(r.Trace))
	// The answer's bytes are given back once it is handed over (or dropped), below.
	defer p.answers.release(held)
	var n note
	if status != 0 && status != fasthttp.StatusOK {
		n = p.cls.classifyBody(status, ures.Body(), ures.Header.Peek(fasthttp.HeaderRetryAfter), r.Name)
		switch {
		case providerRefusal(n.class) != nil:
			perr, outcome = providerRefusal(n.class), OutcomeError
		case (n.class == AnswerClientError || n.class == AnswerMissingData) && status < 500 && rpcErrorFor(ures, gatewayID1):
			// A provider that answers the call's own error with a 4xx: the answer
			// stands, as over a 200.
			perr = nil
		case perr == nil:
			n.class = AnswerBroken
		}
	} else if perr != nil {
		n.class = AnswerBroken
	}
	if perr != nil && rpcErrorBody(ures, gatewayID1) {
		outcome = OutcomeRPCError
	}
	var ans []byte
	if perr == nil {
		body := ures.Body()
		span, ok := answerID(body)
		switch {
		case !ok || string(span.Bytes(body)) != "1" || !proto.ValidAnswer(body):
			// One JSON value, UTF-8 in its strings, nothing after it, one of result and
			// error: checked in one pass, as the Mux's scanner and a batch's checks
			// refuse the same answer.
			// A truncated body, trailing bytes or a second answer would otherwise
			// reach the client (and the cache) as a 200; invalid UTF-8 relayed would
			// be a text frame a websocket client must reject.
			perr, outcome = proto.ErrBadUpstream, OutcomeError
		case string(id) == "1":
			// Exchange buffers: the answer leaves with no copy.
			ans = ures.SwapBody(env[:0])
		default:
			ans = proto.Splice(env[:0], body, span, id)
		}
		if perr == nil && proto.IsErrorResponse(ans) {
			outcome = OutcomeRPCError
			if status == fasthttp.StatusOK {
				n = p.cls.classifyBody(0, ans, ures.Header.Peek(fasthttp.HeaderRetryAfter), r.Name)
			}
			if e := providerRefusal(n.class); e != nil {
				// Alchemy's in-body 429 and the like: the provider refused the call.
				perr, outcome, env = e, OutcomeError, ans
			}
		}
		if perr != nil && n.class == AnswerOK {
			n.class = AnswerBroken
		}
	}
	p.metrics.observe(ptrHint(r), TransportHTTP, r.Method, r.Class(), outcome, perr, start, callNow())
	if perr != nil {
		return env[:0], n, perr
	}
	return ans, n, nil
}

// getResponse is a response from responses, or a new one keeping its body buffer.
func (p *Pool) getResponse() *fasthttp.Response {
	if r, ok := p.responses.Get().(*fasthttp.Response); ok {
		return r
	}
	return &fasthttp.Response{KeepBodyBuffer: true}
}

// keepResponse resets r, keeping its body buffer and KeepBodyBuffer, into responses.
func (p *Pool) keepResponse(r *fasthttp.Response) {
	r.Reset()
	p.responses.Put(r)
}

// releaseResponse gives ures back to responses without a body buffer over
// maxPooledBuf. fasthttp sizes a body buffer to the next power of two of its
// Content-Length and pools it with that capacity: after an 8 MiB answer, a 16 MiB buffer
// stayed in the pool, outside the answer budget, one for each large answer read at
// once (40 slow clients of 8 MiB answers left 304 MB of them after the attack). The
// buffer may also be the call's envelope (SwapBody), as large as a client's request.
func (p *Pool) releaseResponse(ures *fasthttp.Response) {
	ures.ReleaseBody(maxPooledBuf)
	p.putResponse(ures)
}

// providerRefusal is the error standing for a provider's refusal of class c, nil for the
// classes that are answers or failures of another kind.
func providerRefusal(c AnswerClass) *proto.Error {
	switch c {
	case AnswerThrottled:
		return errThrottled
	case AnswerExhausted:
		return errExhausted
	case AnswerUnauthorized:
		return errUpstreamAuth
	case AnswerMethodRefused:
		return errMethodRefused
	}
	return nil
}

// rpcErrorFor reports whether the answer in ures is a JSON-RPC error for id.
func rpcErrorFor(ures *fasthttp.Response, id []byte) bool {
	body := ures.Body()
	span, ok := answerID(body)
	return ok && string(span.Bytes(body)) == string(id) && proto.IsErrorResponse(body)
}

// CallBatch sends b's requests as one JSON-RPC batch (ids 0..n-1, written here) and
// files each answer under its request. A batch is retried like a single read only
// when none of its requests is a write.
func (p *Pool) CallBatch(b *Batch, deadline time.Time) error {
	var tp [tracing.HeaderLen]byte
	return p.callBatch(b, deadline, b.Trace.Header(&tp))
}

// callBatch is CallBatch with the traceparent the request carries (nil: none).
func (p *Pool) callBatch(b *Batch, deadline time.Time, traceparent []byte) error {
	start := callNow()
	b.start(p.answers)
	retryable := true
	env := append(b.body[:0], '[')
	var idBuf [20]byte
	for i, r := range b.Reqs {
		if i > 0 {
			env = append(env, ',')
		}
		env = proto.AppendEnvelope(env, strconv.AppendUint(idBuf[:0], uint64(i), 10), r)
		retryable = retryable && r.Retryable()
	}
	env = append(env, ']')
	ures := p.getResponse()
	defer p.releaseResponse(ures)
	perr, outcome, status, held := p.exchange(env, ures, retryable, deadline, deadline.Sub(start), traceparent, requestID(b.Trace))
	defer p.answers.release(held) // once the answers are filed (copied) or dropped
	b.body = env[:0]
	if status != 0 && status != fasthttp.StatusOK {
		// A batch refused whole for the provider's rate, quota or the key.
		if e := providerRefusal(p.cls.classifyBody(status, ures.Body(), nil, nil).class); e != nil {
			perr, outcome = e, OutcomeError
		}
	}
	if perr != nil && rpcErrorBody(ures, nil) {
		outcome = OutcomeRPCError
	}
	if perr == nil {
		if perr = b.fileAnswers(ures.Body(), p.hc.MaxResponseBodySize); perr == nil {
			perr = b.refusals(p.cls)
		}
		if perr != nil {
			outcome = OutcomeError
		}
	}
	p.metrics.observe(ptrHint(b), TransportHTTP, proto.MethodBatch, b.class(), outcome, perr, start, callNow())
	if perr != nil {
		b.failAll(perr)
		return perr
	}
	return nil
}

// fileAnswers matches a batch answer's elements to the requests by their ids (the
// request's index). An answer with an unknown or repeated id is dropped; a request
// left unanswered gets ErrBadUpstream from Answer. An upstream that refuses the whole
// batch with one error object gets that error repeated for every request, as long as
// the copies stay within limit (the largest answer the pool reads): a hostile
// upstream's 32 MB error repeated for a 1,000-request batch would be 32 GB.
func (b *Batch) fileAnswers(body []byte, limit int) *proto.Error {
	if proto.FirstByte(body) == '{' {
		span, ok := answerID(body)
		if !ok || !proto.IsErrorResponse(body) || len(body) > limit/max(len(b.Reqs), 1) {
			return proto.ErrBadUpstream
		}
		for i := range b.Reqs {
			b.setAnswer(i, body, span)
		}
		return nil
	}
	it, err := proto.NewArrayIter(body)
	if err != nil {
		return proto.ErrBadUpstream
	}
	for {
		el, ok, err := it.Next()
		if err != nil {
			return proto.ErrBadUpstream
		}
		if !ok {
			return nil
		}
		e := el.Bytes(body)
		span, ok := answerID(e)
		if !ok || !proto.ValidAnswer(e) {
			continue
		}
		i, ok := proto.ParseDecimal(span.Bytes(e))
		if !ok || i >= uint64(len(b.Reqs)) || b.spans[i].Present() {
			continue
		}
		b.setAnswer(int(i), e, span)
	}
}

// exchange posts env and leaves the upstream's answer in ures. It retries a retryable
// request after a reset on a kept-alive connection, at most twice and within deadline.
// traceparent and requestID (nil: none) go with the request as headers.
// status is the answer's HTTP status, 0 when there was none; held the bytes reserved
// from the answer budget for it (every attempt's), for the caller to release.
func (p *Pool) exchange(env []byte, ures *fasthttp.Response, retryable bool, deadline time.Time, left time.Duration, traceparent, requestID []byte) (*proto.Error, Outcome, int, int64) {
	ur := p.getRequest()
	defer p.reqs.Put(ur)
	ur.held = 0
	req := &ur.Request
	// The header names are canonical already: set as they are, not normalized per call.
	if len(traceparent) > 0 {
		req.Header.SetCanonical(tracing.TraceparentHeader, traceparent)
	} else if ur.traced {
		req.Header.DelBytes(tracing.TraceparentHeader)
	}
	ur.traced = len(traceparent) > 0
	if len(requestID) > 0 {
		req.Header.SetCanonical(tracing.RequestIDHeader, requestID)
	} else if ur.identified {
		req.Header.DelBytes(tracing.RequestIDHeader)
	}
	ur.identified = len(requestID) > 0
	req.SetBodyRaw(env)
	defer req.SetBodyRaw(nil) // env belongs to the caller
	// The deadline goes with the request (callTransport), not to fasthttp: with no
	// timeout, Do reads no clock.
	ur.deadline, ur.left = deadline, left
	var err error
	for attempt := 1; ; attempt++ {
		if ur.left <= 0 {
			err = fasthttp.ErrTimeout // as DoDeadline: past due, nothing is sent
		} else {
			err = p.hc.Do(req, ures)
		}
		if err == nil || !retryable || attempt > 2 || !staleConn(err) || !time.Now().Before(deadline) {
			break
		}
		if attempt == 1 {
			// A reset on a kept-alive connection usually means the upstream restarted:
			// every idle connection is dead, so the retry dials a fresh one.
			p.hc.CloseIdleConnections()
		}
		p.metrics.retries.Inc()
		ures.Reset()
		ur.left = time.Until(deadline)
	}
	held := ur.held
	ur.held = 0
	if err != nil {
		perr, o := classify(err)
		return perr, o, 0, held
	}
	perr, o := checkStatus(ures.StatusCode())
	return perr, o, ures.StatusCode(), held
}

func requestID(t *tracing.Call) []byte {
	if t == nil {
		return nil
	}
	return t.RequestID()
}

// rpcErrorBody reports whether a 5xx answer carries a JSON-RPC error object for the
// call (id wantID; any id for a batch refused whole): the node answered the call
// itself (some nodes and providers send "execution reverted" or "invalid params" with
// a 5xx), which says nothing against the upstream. The client still gets the error,
// and a read is still tried elsewhere.
func rpcErrorBody(ures *fasthttp.Response, wantID []byte) bool {
	if ures.StatusCode() < 500 {
		return false
	}
	body := ures.Body()
	span, ok := answerID(body)
	return ok && (wantID == nil || string(span.Bytes(body)) == string(wantID)) && proto.IsErrorResponse(body)
}

// staleConn reports whether err is what a request meets on a kept-alive connection the
// upstream has already closed: the request may not have been processed.
func staleConn(err error) bool {
	return errors.Is(err, fasthttp.ErrConnectionClosed) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE)
}

// Close drops idle connections.
func (p *Pool) Close() { p.hc.CloseIdleConnections() }

var (
	contentTypeJSON     = []byte("application/json")
	authorizationHeader = []byte("Authorization")
)

// classify maps a transport error to the gateway error a client sees. Messages are the
// shared values, so nothing of the upstream's address or credentials leaks.
func classify(err error) (*proto.Error, Outcome) {
	switch {
	case isDial(err):
		return proto.ErrUnreachable, OutcomeUnavailable // nothing was sent
	case errors.Is(err, fasthttp.ErrTimeout), os.IsTimeout(err):
		return proto.ErrTimeout, OutcomeTimeout
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		return proto.ErrOverloaded, OutcomeOverloaded
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		return proto.ErrResponseTooLarge, OutcomeError
	case errors.Is(err, errAnswerBudget):
		return proto.ErrAnswerBudget, OutcomeOverloaded
	}
	return proto.ErrUnavailable, OutcomeUnavailable
}

func isDial(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial" || strings.Contains(err.Error(), "dial")
}

func checkStatus(code int) (*proto.Error, Outcome) {
	switch {
	case code == fasthttp.StatusOK:
		return nil, OutcomeOK
	case code == fasthttp.StatusTooManyRequests:
		return proto.ErrRateLimited, OutcomeError
	case code == fasthttp.StatusUnauthorized || code == fasthttp.StatusForbidden:
		return errUpstreamAuth, OutcomeError
	case code == fasthttp.StatusRequestEntityTooLarge:
		return proto.ErrBodyTooLarge, OutcomeError
	case code >= 500:
		return proto.ErrUnavailable, OutcomeUnavailable
	}
	return proto.ErrBadUpstream, OutcomeError
}

var errUpstreamAuth = proto.NewError(proto.CodeServer, fasthttp.StatusBadGateway,
	"upstream rejected the gateway's credentials (check the upstream's key or URL; for Infura, INFURA_PROJECT_ID and INFURA_PROJECT_SECRET)")
