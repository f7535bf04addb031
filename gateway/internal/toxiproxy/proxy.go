package toxiproxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"
)

// Stream is the direction of the bytes a toxic acts on.
type Stream string

const (
	// StreamUpstream is client → server: requests.
	StreamUpstream Stream = "upstream"
	// StreamDownstream is server → client: answers and notifications.
	StreamDownstream Stream = "downstream"
)

// Toxic is one fault on a proxy, as toxiproxy's API describes it.
type Toxic struct {
	// Name identifies the toxic on its proxy; SetToxic replaces a toxic of the same name.
	Name string `json:"name"`
	// Type: latency, bandwidth, slow_close, timeout, reset_peer, slicer, limit_data.
	Type   string `json:"type"`
	Stream Stream `json:"stream"`
	// Toxicity is the probability the toxic applies to a connection; 0 means 1 here.
	Toxicity float64 `json:"toxicity"`
	// Attributes are the type's parameters, e.g. {"latency": 100, "jitter": 10}.
	Attributes map[string]int64 `json:"attributes"`
}

// Proxy is one toxiproxy proxy: a listener on Addr that forwards each connection to
// Upstream through its toxics. Its methods fail the test that created it (t.Fatal),
// so call them from that test's goroutine.
type Proxy struct {
	Name string
	// Addr is the loopback host:port clients connect to.
	Addr string
	// Upstream is the host:port the proxy forwards to.
	Upstream string

	s *Server
	t testing.TB
}

// URL returns scheme://Addr, e.g. p.URL("http") or p.URL("ws").
func (p *Proxy) URL(scheme string) string { return scheme + "://" + p.Addr }

// SetToxic adds the toxic, or updates the attributes and toxicity of the proxy's toxic
// of the same name (type and stream of an existing toxic cannot change: remove it
// first).
func (p *Proxy) SetToxic(tx Toxic) {
	p.t.Helper()
	if err := p.setToxic(tx); err != nil {
		p.t.Fatal(err)
	}
}

func (p *Proxy) setToxic(tx Toxic) error {
	if tx.Toxicity == 0 {
		tx.Toxicity = 1
	}
	if tx.Stream == "" {
		tx.Stream = StreamDownstream
	}
	if tx.Name == "" {
		tx.Name = tx.Type + "_" + string(tx.Stream)
	}
	base := "/proxies/" + url.PathEscape(p.Name) + "/toxics"
	_, err := p.s.call(http.MethodPost, base, tx, http.StatusOK)
	var apiErr *APIError
	if errors.As(err, &apiErr) && apiErr.Status == http.StatusConflict {
		_, err = p.s.call(http.MethodPost, base+"/"+url.PathEscape(tx.Name),
			map[string]any{"attributes": tx.Attributes, "toxicity": tx.Toxicity}, http.StatusOK)
	}
	return err
}

// RemoveToxic removes the proxy's toxic called name; a toxic that is not there is no
// error.
func (p *Proxy) RemoveToxic(name string) {
	p.t.Helper()
	_, err := p.s.call(http.MethodDelete, "/proxies/"+url.PathEscape(p.Name)+"/toxics/"+url.PathEscape(name), nil,
		http.StatusNoContent, http.StatusNotFound)
	if err != nil {
		p.t.Fatal(err)
	}
}

// Toxics lists the proxy's toxics.
func (p *Proxy) Toxics() []Toxic {
	p.t.Helper()
	out, err := p.s.call(http.MethodGet, "/proxies/"+url.PathEscape(p.Name)+"/toxics", nil, http.StatusOK)
	if err != nil {
		p.t.Fatal(err)
	}
	var list []Toxic
	if err := json.Unmarshal(out, &list); err != nil {
		p.t.Fatalf("toxics of %s: %s: %v", p.Name, out, err)
	}
	return list
}

// Clear removes every toxic of the proxy (it stays enabled or disabled as it was).
// Connections held by a timeout toxic are closed.
func (p *Proxy) Clear() {
	p.t.Helper()
	for _, tx := range p.Toxics() {
		p.RemoveToxic(tx.Name)
	}
}

// Latency delays everything the upstream sends (downstream) by ms ± jitterMs
// milliseconds: each answer of a request/answer exchange arrives at least ms later.
// Calling it again changes the delay in place. Named "latency_downstream".
func (p *Proxy) Latency(ms, jitterMs int) {
	p.t.Helper()
	p.SetToxic(Toxic{Type: "latency", Stream: StreamDownstream, Attributes: map[string]int64{"latency": int64(ms), "jitter": int64(jitterMs)}})
}

// ResetPeer closes, timeoutMs after it first carries data in either direction, every
// connection through the proxy: a request sent is never delivered. Connections opened
// after this call are reset (RST: ECONNRESET); connections already open are closed
// (FIN: EOF) on their next byte. Named "reset_peer_upstream" and "reset_peer_downstream".
func (p *Proxy) ResetPeer(timeoutMs int) {
	p.t.Helper()
	for _, st := range []Stream{StreamUpstream, StreamDownstream} {
		p.SetToxic(Toxic{Type: "reset_peer", Stream: st, Attributes: map[string]int64{"timeout": int64(timeoutMs)}})
	}
}

// Timeout blackholes the proxy in both directions: connections are still accepted
// (new ones too) but no byte goes through. With ms > 0 each connection is closed ms
// milliseconds after the toxic started on it; with 0 it stays open, silent, until the
// toxic is removed (Clear), which closes it. Named "timeout_upstream"/"timeout_downstream".
func (p *Proxy) Timeout(ms int) {
	p.t.Helper()
	for _, st := range []Stream{StreamUpstream, StreamDownstream} {
		p.SetToxic(Toxic{Type: "timeout", Stream: st, Attributes: map[string]int64{"timeout": int64(ms)}})
	}
}

// Bandwidth limits each connection to kbPerSec kilobytes per second in each direction
// (toxiproxy's rate unit is KB/s). Named "bandwidth_upstream"/"bandwidth_downstream".
func (p *Proxy) Bandwidth(kbPerSec int) {
	p.t.Helper()
	for _, st := range []Stream{StreamUpstream, StreamDownstream} {
		p.SetToxic(Toxic{Type: "bandwidth", Stream: st, Attributes: map[string]int64{"rate": int64(kbPerSec)}})
	}
}

// Down disables the proxy: its listener closes (new connections are refused) and
// every connection it carries is closed. Toxics stay. The call returns once that is
// done.
func (p *Proxy) Down() {
	p.t.Helper()
	p.setEnabled(false)
}

// Up enables the proxy again on the same address; it accepts connections when the
// call returns. (The port was free while the proxy was down: should something else
// have bound it, Up fails.)
func (p *Proxy) Up() {
	p.t.Helper()
	p.setEnabled(true)
}

func (p *Proxy) setEnabled(on bool) {
	p.t.Helper()
	out, err := p.s.call(http.MethodPatch, "/proxies/"+url.PathEscape(p.Name), map[string]any{"enabled": on}, http.StatusOK)
	if err != nil {
		p.t.Fatal(err)
	}
	var got struct {
		Enabled bool
		Listen  string
	}
	if err := json.Unmarshal(out, &got); err != nil || got.Enabled != on || got.Listen != p.Addr {
		p.t.Fatalf("toxiproxy %s enabled=%v: answered %s (%v)", p.Name, on, out, err)
	}
}

// Enabled reports whether the proxy is up, as the server sees it.
func (p *Proxy) Enabled() bool {
	p.t.Helper()
	out, err := p.s.call(http.MethodGet, "/proxies/"+url.PathEscape(p.Name), nil, http.StatusOK)
	if err != nil {
		p.t.Fatal(err)
	}
	var got struct{ Enabled bool }
	if err := json.Unmarshal(out, &got); err != nil {
		p.t.Fatalf("toxiproxy %s: %s: %v", p.Name, out, err)
	}
	return got.Enabled
}

// WaitAccepting polls (every 20 ms, up to within) until a TCP connection to Addr is
// accepted. An enabled proxy accepts even when its upstream is down (it then closes the
// connection at once).
func (p *Proxy) WaitAccepting(within time.Duration) {
	p.t.Helper()
	if err := waitDial(p.Addr, within, true); err != nil {
		p.t.Fatalf("proxy %s: %v", p.Name, err)
	}
}

// WaitRefusing polls (every 20 ms, up to within) until a TCP connection to Addr is
// refused.
func (p *Proxy) WaitRefusing(within time.Duration) {
	p.t.Helper()
	if err := waitDial(p.Addr, within, false); err != nil {
		p.t.Fatalf("proxy %s: %v", p.Name, err)
	}
}

func waitDial(addr string, within time.Duration, accept bool) error {
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if c != nil {
			c.Close()
		}
		if (err == nil) == accept {
			return nil
		}
		if time.Now().After(deadline) {
			if accept {
				return fmt.Errorf("%s not accepting within %v: %v", addr, within, err)
			}
			return fmt.Errorf("%s still accepting after %v", addr, within)
		}
		time.Sleep(20 * time.Millisecond) // polling an external listener
	}
}

// Upstream is one JSON-RPC upstream behind toxiproxy: a node's HTTP and websocket ports
// each behind a proxy, with the same faults applied to both. Point the gateway at
// HTTPURL and WSURL.
type Upstream struct {
	HTTP, WS       *Proxy
	HTTPURL, WSURL string
}

// NewUpstream puts proxies name+"-http" and name+"-ws" in front of a node's HTTP and
// websocket URLs (e.g. testnode's HTTPURL and WSURL).
func (s *Server) NewUpstream(t testing.TB, name, httpURL, wsURL string) *Upstream {
	t.Helper()
	u := &Upstream{HTTP: s.NewProxy(t, name+"-http", httpURL), WS: s.NewProxy(t, name+"-ws", wsURL)}
	u.HTTPURL, u.WSURL = u.HTTP.URL("http"), u.WS.URL("ws")
	return u
}

func (u *Upstream) each(f func(p *Proxy)) { f(u.HTTP); f(u.WS) }

// Latency is Proxy.Latency on both proxies.
func (u *Upstream) Latency(ms, jitterMs int) { u.each(func(p *Proxy) { p.Latency(ms, jitterMs) }) }

// ResetPeer is Proxy.ResetPeer on both proxies.
func (u *Upstream) ResetPeer(timeoutMs int) { u.each(func(p *Proxy) { p.ResetPeer(timeoutMs) }) }

// Timeout is Proxy.Timeout on both proxies.
func (u *Upstream) Timeout(ms int) { u.each(func(p *Proxy) { p.Timeout(ms) }) }

// Bandwidth is Proxy.Bandwidth on both proxies.
func (u *Upstream) Bandwidth(kbPerSec int) { u.each(func(p *Proxy) { p.Bandwidth(kbPerSec) }) }

// Down is Proxy.Down on both proxies.
func (u *Upstream) Down() { u.each(func(p *Proxy) { p.Down() }) }

// Up is Proxy.Up on both proxies.
func (u *Upstream) Up() { u.each(func(p *Proxy) { p.Up() }) }

// Clear is Proxy.Clear on both proxies.
func (u *Upstream) Clear() { u.each(func(p *Proxy) { p.Clear() }) }
