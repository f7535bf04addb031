package failover_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway"
	"github.com/infura-gateway/infura-gateway/gateway/config"
	"github.com/infura-gateway/infura-gateway/gateway/internal/rpcspy"
	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
	"github.com/infura-gateway/infura-gateway/gateway/internal/toxiproxy"
	"github.com/infura-gateway/infura-gateway/internal/syncbuf"
	"github.com/infura-gateway/infura-gateway/upstream"
)

// The health settings of every test: the configuration file's health: section, and
// flags for what the file does not hold or a test may change (-max-lag, default 5).
// The bounds the tests assert follow from them:
//   - three failed calls in a row ban an upstream (max_failures); an upstream with no
//     answer for probe_interval gets a probe, which fails after probe_interval at most;
//   - a ban lasts ban_min, doubled for each ban in a row up to ban_max; once it is over
//     the upstream is probed every review, and two good probes readmit it;
//   - an upstream whose p90 latency over the window is above slow_min and five times
//     the best one's is banned as slow at the next review;
//   - a read's attempt ends slow_min before the upstream timeout, so that a retry on
//     another upstream fits.
const (
	reviewInterval  = 100 * time.Millisecond
	probeInterval   = 500 * time.Millisecond
	healthWindow    = 4 * time.Second
	banMin          = time.Second
	banMax          = 4 * time.Second
	upstreamTimeout = 5 * time.Second
)

const healthYAML = `health:
  window: 4s
  min_requests: 10
  max_error_rate: 0.5
  max_failures: 3
  slow_factor: 5
  slow_min: 1s
  ban_min: 1s
  ban_max: 4s
  readmit: 2
  probe_interval: 500ms
`

// chain is one upstream as the gateway sees it: toxiproxy (faults) in front of rpcspy
// (a record of every call that got through) in front of a geth node.
type chain struct {
	Name string
	Tier string // primary or fallback
	Node *testnode.Node
	Spy  *rpcspy.Spy
	Tox  *toxiproxy.Upstream
}

// newChain puts a spy and then a pair of proxies (HTTP and websocket) in front of node.
func newChain(t *testing.T, tox *toxiproxy.Server, name, tier string, node *testnode.Node) *chain {
	t.Helper()
	spy := rpcspy.Start(t, node.HTTPURL, node.WSURL)
	return &chain{Name: name, Tier: tier, Node: node, Spy: spy, Tox: tox.NewUpstream(t, name, spy.URL, spy.WSURL)}
}

// gw is a gateway serving on loopback ports for one test.
type gw struct {
	URL      string // http://host:port
	WSURL    string // ws://host:port/socket2socket
	AdminURL string
	srv      *gateway.Server
	log      *syncbuf.Buffer
	ups      []*chain
}

// upstreamEntry is one upstream of a gateway's configuration file: its name, tier and
// the proxies in front of its node.
type upstreamEntry struct {
	name, tier string
	tox        *toxiproxy.Upstream
}

// upstreamsYAML is the upstreams: section for ups, then the health settings above.
func upstreamsYAML(ups []upstreamEntry) string {
	var b strings.Builder
	b.WriteString("upstreams:\n")
	for _, u := range ups {
		fmt.Fprintf(&b, "  - name: %s\n    http: %s\n    ws: %s\n    tier: %s\n", u.name, u.tox.HTTPURL, u.tox.WSURL, u.tier)
	}
	b.WriteString(healthYAML)
	return b.String()
}

// startGateway writes a configuration file with chains as its upstreams, the health
// settings above and extraYAML (e.g. a routing: section), and starts a gateway on it
// with flags args. It waits until every upstream's socket is up and its head known.
func startGateway(t *testing.T, chains []*chain, extraYAML string, args ...string) *gw {
	t.Helper()
	ups := make([]upstreamEntry, len(chains))
	for i, c := range chains {
		ups[i] = upstreamEntry{name: c.Name, tier: c.Tier, tox: c.Tox}
	}
	var b strings.Builder
	b.WriteString(upstreamsYAML(ups))
	b.WriteString(extraYAML)
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	all := append([]string{"-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0", "-config", path,
		"-review-interval", reviewInterval.String(), "-upstream-timeout", upstreamTimeout.String(),
		"-max-lag", "5", "-log-format", "json"}, args...)
	cfg, err := config.Load(all, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatalf("config: %v\n%s", err, b.String())
	}
	logs := &syncbuf.Buffer{}
	srv, err := gateway.New(cfg, gateway.Options{Logger: slog.New(slog.NewJSONHandler(logs, nil)), Version: "failover-test"})
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(done) }()
	g := &gw{URL: "http://" + ln.Addr().String(), WSURL: "ws://" + ln.Addr().String() + "/socket2socket",
		AdminURL: "http://" + srv.AdminAddr(), srv: srv, log: logs, ups: chains}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
		if t.Failed() {
			t.Logf("gateway log (state changes and warnings):\n%s", g.log.Filter(`"level":"WARN"`, `"level":"ERROR"`, "state changed", "moved"))
		}
	})
	g.waitUpstreams(t)
	return g
}

// waitUpstreams waits until every upstream has its socket up and its head known.
func (g *gw) waitUpstreams(t *testing.T) {
	t.Helper()
	waitFor(t, "every upstream connected with its head known", 60*time.Second, func() bool {
		st := g.status(t)
		for _, u := range st.Upstreams {
			if u.Head == 0 || u.WS == nil || !*u.WS || u.State != "healthy" {
				return false
			}
		}
		return len(st.Upstreams) == len(g.ups) && st.ServedHead > 0
	})
}

// status returns GET /status from the admin listener.
func (g *gw) status(t testing.TB) upstream.Status {
	t.Helper()
	body, err := get(g.AdminURL + "/status")
	if err != nil {
		t.Fatal(err)
	}
	var st upstream.Status
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatalf("/status: %v: %s", err, body)
	}
	return st
}

// upstream returns one upstream's entry on /status.
func (g *gw) upstream(t testing.TB, name string) upstream.UpstreamStatus {
	t.Helper()
	for _, u := range g.status(t).Upstreams {
		if u.Name == name {
			return u
		}
	}
	t.Fatalf("/status has no upstream %q", name)
	return upstream.UpstreamStatus{}
}

// metrics returns every series of /metrics on the admin listener, by its full name
// with labels as written there.
func (g *gw) metrics(t testing.TB) map[string]float64 {
	t.Helper()
	return metricsAt(t, g.AdminURL)
}

// metricsAt reads /metrics of the admin listener at adminURL.
func metricsAt(t testing.TB, adminURL string) map[string]float64 {
	t.Helper()
	body, err := get(adminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		// The default network's series as they were named before several networks.
		line = strings.Replace(line, `{network="default"}`, "", 1)
		line = strings.Replace(line, `{network="default",`, "{", 1)
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		m[line[:i]] = v
	}
	return m
}

// sum adds the series of m whose name starts with prefix and whose labels contain
// every one of labels (e.g. `upstream="a"`).
func sum(m map[string]float64, prefix string, labels ...string) float64 {
	var s float64
outer:
	for k, v := range m {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(k, l) {
				continue outer
			}
		}
		s += v
	}
	return s
}

var adminClient = &http.Client{Timeout: 30 * time.Second}

func get(url string) ([]byte, error) {
	resp, err := adminClient.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	return body, err
}

// waitFor polls cond every 20 ms until it holds, failing the test after within; it
// returns how long that took.
func waitFor(t testing.TB, what string, within time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(20 * time.Millisecond) // polling the gateway's state
	}
	return time.Since(start)
}

// clientCalls returns the calls a spy saw that are not the router's own upkeep of an
// idle upstream, and the upkeep calls apart. The router's upkeep, and nothing else,
// is (upstream/router_head.go):
//   - over the websocket, eth_subscribe ["newHeads"] (head following) on every
//     (re)connect, and eth_unsubscribe;
//   - over HTTP, eth_getBlockByNumber ["latest",false] once after that subscription
//     (the current head), and eth_blockNumber probes, at most one per probe interval.
//
// Methods clients also use (eth_blockNumber, eth_getBlockByNumber) count as upkeep
// only within those bounds: checkUpkeep fails the test when they are exceeded.
func clientCalls(calls []rpcspy.Call) (client, upkeep []rpcspy.Call) {
	for _, c := range calls {
		switch {
		case c.Transport == rpcspy.WS && (c.Method == "eth_subscribe" || c.Method == "eth_unsubscribe"),
			c.Transport == rpcspy.HTTP && (c.Method == "eth_blockNumber" || c.Method == "eth_getBlockByNumber"):
			upkeep = append(upkeep, c)
		default:
			client = append(client, c)
		}
	}
	return client, upkeep
}

// upstreamSockets is how many sockets the gateway keeps to each upstream: its default
// -ws-upstream-conns, which the harness leaves as it is.
var upstreamSockets = config.Defaults().WSUpstreamConns

// checkUpkeep fails the test unless calls, the upkeep calls of an idle upstream, are
// what the router's own upkeep explains: eth_blockNumber probes spaced at least a
// probe interval (less one review interval of scheduling) apart, and no more
// eth_getBlockByNumber and websocket eth_subscribe calls than its sockets coming up
// explain (sockets: how many came up, an upper bound is enough). Each socket that comes
// up has the head read once (the Mux's OnUp): with the default two sockets an upstream,
// the second one up after the newHeads subscription reads it a second time, as it did
// on a loaded CI machine. An upstream that was
// banned (bans > 0) is probed every review once its ban is over: its probes are
// checked against half a review interval. A probe the node did not answer (the spy
// saw it fail) is sent again at once by the gateway's pool (a reset connection, at
// most twice) and at the next review (it proved nothing): the call after a failed one
// is not held to the spacing.
func checkUpkeep(t testing.TB, name string, calls []rpcspy.Call, sockets int, bans int64) {
	t.Helper()
	spacing := probeInterval - reviewInterval
	if bans > 0 {
		spacing = reviewInterval / 2
	}
	var last rpcspy.Call
	heads, subs := 0, 0
	for _, c := range calls {
		switch c.Method {
		case "eth_blockNumber":
			if !last.At.IsZero() && !last.Failed && c.At.Sub(last.At) < spacing {
				t.Errorf("%s: eth_blockNumber at %s only %v after the one before: not a probe (a client's call)",
					name, c.At.Format("15:04:05.000"), c.At.Sub(last.At))
			}
			last = c
		case "eth_getBlockByNumber":
			heads++
		case "eth_subscribe":
			subs++
		}
	}
	if heads > sockets || subs > sockets {
		t.Errorf("%s: %d eth_getBlockByNumber and %d eth_subscribe for %d sockets: more than head following explains",
			name, heads, subs, sockets)
	}
}

func rpcspyMethods(calls []rpcspy.Call) string { return rpcspy.MethodsOf(calls) }
