package load

import (
	"bytes"
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/bench/internal/rpcscan"
)

// CheckLoopback refuses any target that is not on this machine: the load
// driver is for loopback benchmarks only.
func CheckLoopback(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("cannot parse URL %q: %w", rawURL, err)
	}
	host := u.Hostname()
	ips := []net.IP{net.ParseIP(host)}
	if ips[0] == nil {
		if ips, err = net.LookupIP(host); err != nil {
			return fmt.Errorf("cannot resolve %q: %w", host, err)
		}
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return fmt.Errorf("refusing to load %s: %s is not a loopback address (127.0.0.0/8, ::1)", rawURL, ip)
		}
	}
	return nil
}

func newHostClient(rawURL string, vus int, timeout time.Duration) (*fasthttp.HostClient, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("cannot parse URL %q: %w", rawURL, err)
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("http targets need an http:// URL, got %q", rawURL)
	}
	if err := CheckLoopback(rawURL); err != nil {
		return nil, err
	}
	return &fasthttp.HostClient{
		Addr: u.Host,
		// One connection per VU: a VU sends back to back, so it never
		// needs two, and the connection count is the VU count.
		MaxConns:                 vus,
		MaxConnWaitTimeout:       timeout,
		ReadTimeout:              timeout,
		WriteTimeout:             timeout,
		MaxIdleConnDuration:      time.Minute,
		MaxResponseBodySize:      64 << 20,
		NoDefaultUserAgentHeader: true,
		Dial:                     (&fasthttp.TCPDialer{Concurrency: 0}).Dial,
	}, nil
}

type httpVU struct {
	r      *Runner
	req    *fasthttp.Request
	resp   *fasthttp.Response
	wantID []byte // id the JSON-RPC body carries, echoed in a valid reply
}

func newHTTPVU(r *Runner) *httpVU {
	v := &httpVU{r: r, req: fasthttp.AcquireRequest(), resp: fasthttp.AcquireResponse()}
	v.req.SetRequestURI(r.tgt.URL)
	method := r.tgt.Method
	if method == "" {
		method = fasthttp.MethodGet
	}
	v.req.Header.SetMethod(method)
	if len(r.tgt.Body) > 0 {
		v.req.SetBody(r.tgt.Body)
		v.req.Header.SetContentType("application/json")
		var m rpcscan.Message
		if rpcscan.ParseObject(r.tgt.Body, 0, &m) > 0 && m.Method != nil {
			v.wantID = m.ID
		}
	}
	return v
}

func (v *httpVU) iterate(end time.Time) (time.Duration, string) {
	deadline := time.Now().Add(v.r.cfg.Timeout)
	if deadline.After(end) {
		deadline = end
	}
	t0 := time.Now()
	err := v.r.hc.DoDeadline(v.req, v.resp, deadline)
	d := time.Since(t0)
	if err != nil {
		return d, classify(err)
	}
	if sc := v.resp.StatusCode(); sc < 200 || sc > 299 {
		return d, fmt.Sprintf("http_%d", sc)
	}
	if v.r.tgt.Validate == ValidateRPC {
		if kind := validateRPC(v.resp.Body(), v.wantID); kind != "" {
			return d, kind
		}
	}
	return d, ""
}

func (v *httpVU) close() {
	fasthttp.ReleaseRequest(v.req)
	fasthttp.ReleaseResponse(v.resp)
}

// validateRPC checks a JSON-RPC reply (object or batch): every element must
// carry a result and no error, and a single reply must echo wantID (when
// known). It returns an error kind, "" when valid.
func validateRPC(body, wantID []byte) string {
	i := rpcscan.SkipSpace(body, 0)
	if i >= len(body) {
		return "empty_body"
	}
	if body[i] == '[' {
		kind, n := "", 0
		ok := rpcscan.EachElem(body, i, func(elem []byte) {
			n++
			if k := validateRPC(elem, nil); k != "" && kind == "" {
				kind = k
			}
		})
		switch {
		case !ok:
			return "bad_json"
		case n == 0:
			return "empty_batch"
		}
		return kind
	}
	var m rpcscan.Message
	if rpcscan.ParseObject(body, i, &m) < 0 {
		return "bad_json"
	}
	if m.Error != nil && string(m.Error) != "null" {
		if code := rpcscan.Member(m.Error, "code"); code != nil {
			return "rpc_error_" + string(code)
		}
		return "rpc_error"
	}
	if m.Result == nil {
		return "no_result"
	}
	if wantID != nil && !bytes.Equal(m.ID, wantID) {
		return "id_mismatch"
	}
	return ""
}
