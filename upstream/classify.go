// The outcome classifier: what an upstream's answer says, on either transport. HTTP
// (status, Retry-After, the JSON-RPC error object), websocket error frames and close
// frames all reduce to the same facts (numbers decoded, messages matched without regard
// to case on bounded bytes) and go through the same rules: the upstream's configured
// errors: first, then its kind's preset, then the generic rules. It runs only on error
// answers and non-200 statuses: an ordinary answer costs one check and no allocation.

package upstream

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/proto"
)

// AnswerClass is what one upstream answer says about the upstream and the call.
type AnswerClass uint8

const (
	// AnswerOK: an answer (a result, or nothing classified otherwise).
	AnswerOK AnswerClass = iota
	// AnswerThrottled: the provider refused the call for its rate; back off from it.
	AnswerThrottled
	// AnswerExhausted: a daily or monthly cap is spent; out until the period resets.
	AnswerExhausted
	// AnswerUnauthorized: the provider refused the gateway's credentials.
	AnswerUnauthorized
	// AnswerMissingData: this node lacks the block or state; another may have it.
	AnswerMissingData
	// AnswerClientError: the node's answer to the call itself (reverted, invalid params).
	AnswerClientError
	// AnswerBroken: the upstream is broken (5xx without a JSON-RPC body, a bad answer).
	AnswerBroken
	// AnswerMethodRefused: the provider refuses this method for the gateway's
	// credentials (its plan, its allowlist), not the key: another upstream may serve
	// it, and this one serves every other method (methodrefusal.go).
	AnswerMethodRefused
	numAnswerClasses
)

var answerClassNames = [numAnswerClasses]string{"answer", "throttled", "exhausted", "unauthorized",
	"missing_data", "client_error", "broken", "method_refused"}

func (c AnswerClass) String() string {
	if c < numAnswerClasses {
		return answerClassNames[c]
	}
	return "unknown"
}

// ParseAnswerClass reads a class as configured (errors: class).
func ParseAnswerClass(s string) (AnswerClass, error) {
	for i, n := range answerClassNames {
		if s == n {
			return AnswerClass(i), nil
		}
	}
	return 0, fmt.Errorf("unknown class %q: want one of %s", s, strings.Join(answerClassNames[:], ", "))
}

// Provider kinds: each has a preset of rules (presets below).
const (
	KindGeneric   = "generic"
	KindInfura    = "infura"
	KindAlchemy   = "alchemy"
	KindQuickNode = "quicknode"
)

// ValidKind reports whether s names a kind ("" too: detected from the URL).
func ValidKind(s string) bool {
	switch s {
	case "", KindGeneric, KindInfura, KindAlchemy, KindQuickNode:
		return true
	}
	return false
}

// DetectKind is the kind of a provider by its URL's host; generic when unknown.
func DetectKind(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return KindGeneric
	}
	h := strings.ToLower(u.Hostname())
	for _, k := range [...]struct{ suffix, kind string }{
		{"infura.io", KindInfura}, {"alchemy.com", KindAlchemy}, {"alchemyapi.io", KindAlchemy},
		{"quiknode.pro", KindQuickNode}, {"quicknode.com", KindQuickNode},
	} {
		if h == k.suffix || strings.HasSuffix(h, "."+k.suffix) {
			return k.kind
		}
	}
	return KindGeneric
}

// ErrorRule classifies answers: every condition it sets must hold (at least one is
// set). Code matches a JSON-RPC error code, or the close code of a websocket the
// upstream closed; HTTPStatus an HTTP status; MessageContains the error message or
// close reason, without regard to case. Backoff, when set, is the back-off of a
// throttled answer (or how long an exhausted one lasts) instead of the one stated or
// computed.
type ErrorRule struct {
	Code            int64
	HasCode         bool
	HTTPStatus      int
	MessageContains string
	Class           AnswerClass
	Backoff         time.Duration
}

// maxRuleText bounds message_contains: messages are matched on their first
// maxMessage bytes.
const (
	maxRuleText = 200
	maxMessage  = 512
)

// Validate checks a configured rule.
func (r ErrorRule) Validate() error {
	switch {
	case !r.HasCode && r.HTTPStatus == 0 && r.MessageContains == "":
		return errors.New("empty rule: set at least one of code, http_status, message_contains")
	case r.HTTPStatus != 0 && (r.HTTPStatus < 100 || r.HTTPStatus > 599):
		return fmt.Errorf("http_status %d: want 100-599", r.HTTPStatus)
	case len(r.MessageContains) > maxRuleText:
		return fmt.Errorf("message_contains is %d bytes: at most %d", len(r.MessageContains), maxRuleText)
	case r.Class >= numAnswerClasses:
		return errors.New("unknown class")
	case r.Backoff < 0 || r.Backoff > 31*24*time.Hour:
		return errors.New("backoff must be between 0 and 744h")
	}
	return nil
}

// Classifier classifies one upstream's answers: the configured rules, then the
// kind's preset, then the generic rules.
type Classifier struct {
	kind       string
	rules      []ErrorRule // MessageContains lower-cased
	configured int         // rules[:configured] are the configured ones
}

// NewClassifier builds the classifier of an upstream of kind ("": generic) with the
// configured rules, which come first.
func NewClassifier(kind string, rules []ErrorRule) (*Classifier, error) {
	if kind == "" {
		kind = KindGeneric
	}
	if !ValidKind(kind) {
		return nil, fmt.Errorf("kind %q: want infura, alchemy, quicknode or generic", kind)
	}
	c := &Classifier{kind: kind}
	for i, r := range rules {
		if err := r.Validate(); err != nil {
			return nil, fmt.Errorf("errors rule %d: %w", i+1, err)
		}
		r.MessageContains = strings.ToLower(r.MessageContains)
		c.rules = append(c.rules, r)
	}
	c.configured = len(c.rules)
	// A revert is the contract's answer whatever its reason says ("rate limit", "unauthorized").
	c.rules = append(c.rules, code(3, AnswerClientError), text("execution reverted", AnswerClientError))
	c.rules = append(c.rules, presets[kind]...)
	c.rules = append(c.rules, genericRules...)
	return c, nil
}

// Kind is the classifier's provider kind.
func (c *Classifier) Kind() string { return c.kind }

// genericClassifier is used where no upstream spec says otherwise (a bare Pool or Mux).
var genericClassifier, _ = NewClassifier(KindGeneric, nil)

// facts are what an answer is classified on, decoded and bounded.
type facts struct {
	status    int // HTTP status; 0 on a websocket
	closeCode int // the websocket close code of a closed socket; 0 otherwise
	rpcError  bool
	code      int64
	hasCode   bool
	msg       []byte        // the error message or close reason, at most maxMessage bytes, raw
	backoff   time.Duration // stated by the provider: Retry-After, backoff_seconds
	method    []byte        // the call's method name; nil for a batch or the router's own checks
}

// note is the classified outcome of one attempt: its class and the back-off the
// provider stated or a rule set (0: none).
type note struct {
	class   AnswerClass
	backoff time.Duration
}

// echoCode reports whether a JSON-RPC error code is the node's verdict on the request
// itself (EIP-1474 / JSON-RPC 2.0: parse error, invalid request, method not found,
// invalid params). Such messages echo what the client sent (geth: "the method
// eth_unauthorized does not exist", "invalid argument 0: ... "daily limit""), so no
// text rule may read them as the provider refusing the gateway: a client could ban
// or shut out an upstream by naming a method or a param.
func echoCode(code int64) bool { return code <= -32600 && code >= -32602 || code == -32700 }

// refusalStatus reports whether an HTTP status says on its own that the provider
// refused the gateway (its rate, quota or key), whatever the body says; 5xx too.
func refusalStatus(status int) bool {
	switch status {
	case fasthttp.StatusUnauthorized, fasthttp.StatusPaymentRequired, fasthttp.StatusForbidden, fasthttp.StatusTooManyRequests:
		return true
	}
	return status >= 500
}

// decide applies the rules to f.
func (c *Classifier) decide(f *facts) note {
	for i := range c.rules {
		if i == c.configured && f.hasCode && echoCode(f.code) && !refusalStatus(f.status) {
			return note{class: AnswerClientError}
		}
		r := &c.rules[i]
		if f.status >= 500 && i >= c.configured && r.HTTPStatus == 0 {
			// A 5xx says the server failed, whatever its body's text: only a
			// configured rule reads more into it.
			continue
		}
		if r.HasCode && !(f.hasCode && f.code == r.Code) && !(f.closeCode != 0 && int64(f.closeCode) == r.Code) {
			continue
		}
		if r.HTTPStatus != 0 && f.status != r.HTTPStatus {
			continue
		}
		if r.MessageContains != "" && !containsFold(f.msg, r.MessageContains) {
			continue
		}
		n := note{class: r.Class, backoff: f.backoff}
		if r.Backoff > 0 {
			n.backoff = r.Backoff
		}
		if n.class == AnswerUnauthorized && i >= c.configured && namesMethod(f.msg, f.method) {
			// A refusal that names the call's method ("debug_traceBlock is not
			// available on your plan", "method eth_sign not allowed") is about that
			// method, not the key: the upstream stays in for every other one.
			n.class = AnswerMethodRefused
		}
		return n
	}
	switch {
	case f.rpcError && f.backoff > 0 && f.status < 500:
		// A JSON-RPC error stating a back-off (data.backoff_seconds, Retry-After), e.g.
		// Infura's -32005 "limit exceeded" over a 200 or a websocket: the provider's rate.
		return note{class: AnswerThrottled, backoff: f.backoff}
	case f.rpcError && (f.status == 0 || f.status == fasthttp.StatusOK || f.status < 500):
		// A JSON-RPC error nobody recognises is the node's answer to the call.
		return note{class: AnswerClientError}
	case f.status == 0 && f.closeCode == 0:
		return note{class: AnswerOK}
	}
	return note{class: AnswerBroken}
}

// classifyBody classifies an answer that carries a JSON-RPC error (status: its HTTP
// status, 0 on a websocket; retryAfter: the HTTP Retry-After header, nil if none;
// method: the call's method name, nil when the answer is not one call's).
func (c *Classifier) classifyBody(status int, body, retryAfter, method []byte) note {
	f := facts{status: status, method: method}
	bodyFacts(&f, body)
	if d, ok := parseRetryAfter(retryAfter); ok {
		f.backoff = d
	}
	return c.decide(&f)
}

// classifyClose classifies a websocket the upstream closed with code and reason.
func (c *Classifier) classifyClose(code int, reason []byte) note {
	f := facts{closeCode: code, msg: bound(reason)}
	n := c.decide(&f)
	if n.class == AnswerOK || n.class == AnswerClientError {
		n.class = AnswerBroken
	}
	return n
}

// bodyFacts reads the JSON-RPC error object of body, if any, into f.
func bodyFacts(f *facts, body []byte) {
	e := proto.FirstMember(body, "error")
	if !e.Present() {
		return
	}
	eb := e.Bytes(body)
	if proto.FirstByte(eb) != '{' {
		return
	}
	f.rpcError = true
	if v := proto.FirstMember(eb, "code").Bytes(eb); len(v) > 0 {
		f.code, f.hasCode = parseInt(v)
	}
	if m := proto.FirstMember(eb, "message").Bytes(eb); len(m) >= 2 && m[0] == '"' {
		f.msg = bound(m[1 : len(m)-1])
	}
	// Infura states a back-off as data.backoff_seconds (its docs) or
	// data.rate.backoff_seconds (seen in answers).
	if d := proto.FirstMember(eb, "data").Bytes(eb); proto.FirstByte(d) == '{' {
		b := proto.FirstMember(d, "backoff_seconds").Bytes(d)
		if len(b) == 0 {
			if r := proto.FirstMember(d, "rate").Bytes(d); proto.FirstByte(r) == '{' {
				b = proto.FirstMember(r, "backoff_seconds").Bytes(r)
			}
		}
		if s, ok := parseSeconds(b); ok {
			f.backoff = s
		}
	}
}

func bound(b []byte) []byte {
	if len(b) > maxMessage {
		return b[:maxMessage]
	}
	return b
}

// parseInt reads a JSON integer (a code), or reports false.
func parseInt(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

// maxStatedBackoff bounds a back-off a provider states: a wrong or hostile value must
// not take an upstream out for days.
const maxStatedBackoff = time.Hour

// parseSeconds reads a JSON number of seconds (30, 30.0, "30").
func parseSeconds(b []byte) (time.Duration, bool) {
	if len(b) >= 2 && b[0] == '"' {
		b = b[1 : len(b)-1]
	}
	if len(b) == 0 || len(b) > 24 {
		return 0, false
	}
	v, err := strconv.ParseFloat(string(b), 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) || !(v > 0) {
		return 0, false // not a number, NaN, zero, negative
	}
	if v >= maxStatedBackoff.Seconds() {
		// Past the bound, however large (99999999999, 1e400): the bound. Converted
		// first, a value past 292 years overflowed time.Duration to a negative one and
		// was taken as no back-off stated at all.
		return maxStatedBackoff, true
	}
	d := time.Duration(v * float64(time.Second))
	return d, d > 0
}

// parseRetryAfter reads a Retry-After header: seconds, or an HTTP date.
func parseRetryAfter(v []byte) (time.Duration, bool) {
	if len(v) == 0 {
		return 0, false
	}
	if d, ok := parseSeconds(v); ok {
		return d, true
	}
	if t, err := fasthttp.ParseHTTPDate(v); err == nil {
		if d := time.Until(t); d > 0 {
			return min(d, maxStatedBackoff), true
		}
	}
	return 0, false
}

// namesMethod reports whether msg names method as a word of its own: a method name
// (namespace_name, as every Ethereum method is) not inside a longer identifier. A
// name without '_' or shorter than 5 bytes never counts: a client names its method,
// and "invalid" or "key" would match the provider's refusal of the key itself.
func namesMethod(msg, method []byte) bool {
	if len(method) < 5 || len(method) > maxMessage || bytes.IndexByte(method, '_') < 0 {
		return false
	}
	for from := 0; from+len(method) <= len(msg); {
		i := bytes.Index(msg[from:], method)
		if i < 0 {
			return false
		}
		i += from
		end := i + len(method)
		if (i == 0 || !identByte(msg[i-1])) && (end == len(msg) || !identByte(msg[end])) {
			return true
		}
		from = i + 1
	}
	return false
}

func identByte(c byte) bool {
	return c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// containsFold reports whether s contains lower (lower-case ASCII), ignoring the case
// of ASCII letters in s. No allocation.
func containsFold(s []byte, lower string) bool {
	n := len(lower)
	for i := 0; i+n <= len(s); i++ {
		j := 0
		for ; j < n; j++ {
			c := s[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != lower[j] {
				break
			}
		}
		if j == n {
			return true
		}
	}
	return false
}

func text(s string, c AnswerClass) ErrorRule { return ErrorRule{MessageContains: s, Class: c} }
func code(n int64, c AnswerClass) ErrorRule  { return ErrorRule{Code: n, HasCode: true, Class: c} }
func status(s int, c AnswerClass) ErrorRule  { return ErrorRule{HTTPStatus: s, Class: c} }

// presets are the provider kinds' own rules, from their public docs:
//   - Infura, https://docs.infura.io/api/networks/ethereum/how-to/avoid-rate-limiting:
//     HTTP 429 with -32005 "project ID request rate exceeded" and data.backoff_seconds;
//     the daily cap as -32005 "daily request count exceeded, request rate limited".
//   - Alchemy, https://www.alchemy.com/docs/reference/throughput: HTTP 429 over HTTP, a
//     JSON-RPC error 429 "Your app has exceeded its compute units per second capacity"
//     (websockets, and HTTP 200 answers); the monthly cap "Monthly capacity limit exceeded".
//   - QuickNode, https://www.quicknode.com/docs/base/error-references and
//     https://support.quicknode.com/hc/en-us/articles/20633265909521: HTTP 429, -32007
//     "request limit reached", -32012 "credits limited to X/sec"; 401 and 403 for keys.
//
// -32002 means "resource unavailable" on plain nodes (EIP-1474): only the providers'
// presets read it as a refused key.
var presets = map[string][]ErrorRule{
	KindInfura: {
		text("project id request rate exceeded", AnswerThrottled),
		text("invalid project id", AnswerUnauthorized),
		code(-32002, AnswerUnauthorized),
	},
	KindAlchemy: {
		text("exceeded its compute units per second capacity", AnswerThrottled),
		text("monthly capacity limit exceeded", AnswerExhausted),
		text("must be authenticated", AnswerUnauthorized),
		code(-32002, AnswerUnauthorized),
	},
	KindQuickNode: {
		code(-32007, AnswerThrottled),
		code(-32012, AnswerThrottled),
		text("credits limited to", AnswerThrottled),
		code(-32002, AnswerUnauthorized),
	},
}

// genericRules apply to every kind after its preset: caps before rates ("daily
// request count exceeded, request rate limited" is a cap), texts before statuses
// (a 429 saying the day's quota is spent is a cap), the missing-data texts of geth,
// erigon, nethermind and reth.
var genericRules = []ErrorRule{
	text("daily request count exceeded", AnswerExhausted),
	text("daily limit", AnswerExhausted),
	text("monthly limit", AnswerExhausted),
	text("capacity limit exceeded", AnswerExhausted),
	text("quota exceeded", AnswerExhausted),
	text("exceeded your quota", AnswerExhausted),
	status(fasthttp.StatusPaymentRequired, AnswerExhausted),

	text("exceeded its compute units per second capacity", AnswerThrottled),
	text("request rate exceeded", AnswerThrottled),
	text("rate limit", AnswerThrottled),
	text("too many requests", AnswerThrottled),
	text("request limit reached", AnswerThrottled),
	code(429, AnswerThrottled),
	status(fasthttp.StatusTooManyRequests, AnswerThrottled),

	// A refusal of the method, not of the key, whatever the status (before 401/403):
	// Alchemy's "X is not available on the Free tier", "Unsupported method: X".
	// Geth's own "the method X does not exist/is not available" is a -32601 over a
	// 200: the node's answer (echoCode), never read here.
	text("unsupported method", AnswerMethodRefused),
	text("method not supported", AnswerMethodRefused),
	text("method is not supported", AnswerMethodRefused),
	text("method not allowed", AnswerMethodRefused),
	text("method is not allowed", AnswerMethodRefused),
	text("method not whitelisted", AnswerMethodRefused),
	text("is not available on the", AnswerMethodRefused),

	status(fasthttp.StatusUnauthorized, AnswerUnauthorized),
	status(fasthttp.StatusForbidden, AnswerUnauthorized),
	text("invalid api key", AnswerUnauthorized),
	text("unauthorized", AnswerUnauthorized),

	text("header not found", AnswerMissingData),
	text("missing trie node", AnswerMissingData),
	text("block not found", AnswerMissingData),
	text("unknown block", AnswerMissingData),
	text("historical state unavailable", AnswerMissingData), // erigon, reth
	text("state is not available", AnswerMissingData),       // nethermind
	text("state histories haven't been fully indexed", AnswerMissingData),

	// Websocket close codes: 1013 "try again later" (RFC 6455 registry), 1008 policy
	// with a text the rules above did not match, 4429/4402/4401/4403 as providers
	// mirror HTTP statuses in the private range.
	code(1013, AnswerThrottled),
	code(4429, AnswerThrottled),
	code(4402, AnswerExhausted),
	code(4401, AnswerUnauthorized),
	code(4403, AnswerUnauthorized),
}
