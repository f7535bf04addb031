package upstream

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/proto"
)

// PoolConfig configures the HTTP upstream. Zero durations and sizes take the defaults below.
type PoolConfig struct {
	URL string // http(s)://host[:port]/path
	// Basic auth. Infura takes the project secret as the password with an empty user.
	User, Password string

	MaxConns            int           // connections to the upstream (default 512)
	MaxConnWaitTimeout  time.Duration // wait for a free connection before failing with 503 (default 1s)
	DialTimeout         time.Duration // default 3s
	MaxIdleConnDuration time.Duration // close idle connections after (default 30s, below geth's 120s)
	MaxResponseBodySize int           // larger answers fail with proto.ErrResponseTooLarge (default 32 MiB)
}

// Pool sends JSON-RPC over HTTP through one fasthttp.HostClient.
type Pool struct {
	hc     *fasthttp.HostClient
	uri    []byte // full request URI, set on each pooled request
	auth   []byte // "Basic ..." or nil
	lastOK atomic.Int64
}

// NewPool validates cfg and returns a pool; it does not connect yet.
func NewPool(cfg PoolConfig) (*Pool, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("cannot parse upstream HTTP URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("upstream HTTP URL must start with http:// or https://, got %q", u.Scheme+"://")
	}
	if u.Host == "" {
		return nil, errors.New("upstream HTTP URL has no host")
	}
	setDefault(&cfg.MaxConns, 512)
	setDefault(&cfg.MaxConnWaitTimeout, time.Second)
	setDefault(&cfg.DialTimeout, 3*time.Second)
	setDefault(&cfg.MaxIdleConnDuration, 30*time.Second)
	setDefault(&cfg.MaxResponseBodySize, 32<<20)

	addr := u.Host
	if u.Port() == "" {
		if u.Scheme == "https" {
			addr = net.JoinHostPort(u.Hostname(), "443")
		} else {
			addr = net.JoinHostPort(u.Hostname(), "80")
		}
	}
	p := &Pool{uri: []byte(cfg.URL)}
	// Credentials in the URL (user:pass@) become the Authorization header, never part of
	// a logged URL.
	if u.User != nil {
		if cfg.User == "" && cfg.Password == "" {
			cfg.User = u.User.Username()
			cfg.Password, _ = u.User.Password()
		}
		u.User = nil
		p.uri = []byte(u.String())
	}
	if cfg.User != "" || cfg.Password != "" {
		p.auth = []byte("Basic " + base64.StdEncoding.EncodeToString([]byte(cfg.User+":"+cfg.Password)))
	}
	dialTimeout := cfg.DialTimeout
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
		Dial: func(addr string) (net.Conn, error) {
			return fasthttp.DialDualStackTimeout(addr, dialTimeout)
		},
		// Retry only a request that found its kept-alive connection already closed by the
		// upstream, and never a write: eth_sendRawTransaction must not be sent twice.
		RetryIfErr: func(req *fasthttp.Request, attempts int, err error) (bool, bool) {
			return false, attempts < 2 && errors.Is(err, fasthttp.ErrConnectionClosed) &&
				!bytes.Contains(req.Body(), []byte(`"eth_send`))
		},
	}
	return p, nil
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Do posts body (a JSON-RPC request or batch) and swaps the upstream's reply body into
// resp without copying. On error resp is left unchanged and the error is a *proto.Error.
// The call never outlives deadline.
func (p *Pool) Do(m Method, body []byte, resp *fasthttp.Response, deadline time.Time) error {
	start := time.Now()
	req := fasthttp.AcquireRequest()
	ures := fasthttp.AcquireResponse()
	req.SetRequestURIBytes(p.uri)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentTypeBytes(contentTypeJSON)
	if p.auth != nil {
		req.Header.SetBytesKV(authorizationHeader, p.auth)
	}
	req.SetBodyRaw(body)
	err := p.hc.DoDeadline(req, ures, deadline)
	req.SetBodyRaw(nil) // body belongs to the caller
	fasthttp.ReleaseRequest(req)

	var perr *proto.Error
	var outcome Outcome
	if err != nil {
		perr, outcome = classify(err)
	} else {
		perr, outcome = checkStatus(ures.StatusCode())
		if perr == nil {
			if proto.IsErrorResponse(ures.Body()) {
				outcome = OutcomeRPCError
			}
			// Exchange buffers: the reply becomes resp's body with no copy.
			ures.SwapBody(resp.SwapBody(ures.Body()))
		}
	}
	fasthttp.ReleaseResponse(ures)
	end := time.Now()
	if outcome != OutcomeUnavailable && outcome != OutcomeOverloaded {
		p.lastOK.Store(end.UnixNano())
		SetUp(TransportHTTP, true)
	} else if outcome == OutcomeUnavailable {
		SetUp(TransportHTTP, false)
	}
	observe(TransportHTTP, m, outcome, end.Sub(start))
	if perr != nil {
		return perr
	}
	return nil
}

// LastOK returns when the upstream last answered over HTTP (zero if never).
func (p *Pool) LastOK() time.Time {
	if n := p.lastOK.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
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
	case errors.Is(err, fasthttp.ErrTimeout), os.IsTimeout(err):
		if isDial(err) {
			return proto.ErrUnavailable, OutcomeUnavailable
		}
		return proto.ErrTimeout, OutcomeTimeout
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		return proto.ErrOverloaded, OutcomeOverloaded
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		return proto.ErrResponseTooLarge, OutcomeError
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
	"upstream rejected the gateway's credentials (check INFURA_PROJECT_ID / INFURA_PROJECT_SECRET)")
