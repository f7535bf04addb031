// Package network is everything that belongs to one chain: its upstream router (and
// through it the upstreams' health, HTTP pools and websocket Muxes), the head tracker,
// the response cache and its namespace in the shared tier, the method policy, and the
// label its metrics carry. A request resolves its Network once, at the top of the
// pipeline; everything below takes the *Network. It imports config/, head/, cache/,
// sharedcache/, upstream/ and proto/; nothing of the gateway above it.
package network

import (
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/gateway/broadcast"
	"github.com/infura-gateway/infura-gateway/gateway/cache"
	"github.com/infura-gateway/infura-gateway/gateway/config"
	"github.com/infura-gateway/infura-gateway/gateway/filters"
	"github.com/infura-gateway/infura-gateway/gateway/head"
	"github.com/infura-gateway/infura-gateway/gateway/logs"
	"github.com/infura-gateway/infura-gateway/gateway/sharedcache"
	"github.com/infura-gateway/infura-gateway/proto"
	"github.com/infura-gateway/infura-gateway/upstream"
)

// Caller is an upstream: the router over HTTP pools or over websocket Muxes.
type Caller interface {
	Call(spare []byte, r *proto.Request, id []byte, deadline time.Time) ([]byte, error)
	CallBatch(b *upstream.Batch, deadline time.Time) error
}

// Network is one chain.
type Network struct {
	// Name labels the network (metrics, logs, the status page, the path prefix);
	// ChainID is its chain (0: not configured, learned from the upstream).
	Name    string
	ChainID uint64
	// Index numbers the network's name in this process (stable across reloads), for
	// per-network counters kept in arrays: below config.MaxNetworks, or -1 past it.
	Index  int
	Router *upstream.Router
	HTTP   Caller // the router over HTTP
	WS     Caller // the router over websockets, or one answering errWSDisabled
	// HasWS reports whether any upstream has a websocket (subscriptions, /socket2socket).
	HasWS  bool
	Heads  *head.Tracker
	Cache  *cache.Cache       // nil when the cache is disabled
	Shared *sharedcache.Cache // the shared tier; nil without it (see SharedKey)
	Policy Policy
	// Logs answers eth_getLogs over ranges larger than the upstreams' cap.
	Logs *logs.Splitter
	// Pending is the budget of request bytes waiting on this network's upstreams,
	// every transport together.
	Pending *Budget
	// Filters answers the filter methods from the gateway's own state (the gateway
	// sets it after New); nil: they go upstream as any call.
	Filters *filters.Service
	// Broadcast sends transactions to several upstreams at once when configured; the
	// gateway sets it (it holds the Redis connection) before Start. nil: never.
	Broadcast *broadcast.Broadcaster

	cfg       *config.Config
	log       *slog.Logger
	reg       *upstream.Registry // a view of the gateway's: every series labelled network=Name
	perClient *upstream.Metrics  // the series of the sockets -ws-per-client opens; nil when off
	answers   *upstream.AnswerBudget
	sharedNS  atomic.Pointer[string]

	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// New builds network nc of the gateway configuration gw, its metrics in a view of reg
// labelled network=<name>. shared is the shared cache tier (nil without one): the
// network's keys in it carry its chain id, configured or learned from the upstream, and
// its name. meters builds the upstreams' budget meters (nil: per process); answers is
// the gateway's budget of answer bytes, every network's upstreams share it (nil:
// none). Start starts background work; Close ends it and removes its metrics.
func New(gw *config.Config, nc config.Network, reg *upstream.Registry, log *slog.Logger, shared *sharedcache.Cache, meters upstream.MeterFactory, answers *upstream.AnswerBudget) (*Network, error) {
	cfg := gw.ForNetwork(nc)
	reg = reg.With(`network="` + nc.Name + `"`)
	n := &Network{
		Name:    nc.Name,
		ChainID: nc.ChainID,
		Index:   indexOf(nc.Name),
		Heads:   &head.Tracker{},
		Shared:  shared,
		Policy:  Policy{deny: proto.NewDenySet(cfg.DenyMethods)},
		Pending: NewBudget(cfg.MaxPendingBytes),
		WS:      wsDisabled{},
		cfg:     cfg,
		log:     log.With("network", nc.Name),
		reg:     reg,
		answers: answers,
		stop:    make(chan struct{}),
	}
	if nc.ChainID != 0 {
		n.setChain(nc.ChainID)
	}
	rc := n.routerConfig(reg)
	rc.Meters = meters
	router, err := upstream.NewRouter(rc, cfg.UpstreamSpecs())
	if err != nil {
		return nil, err
	}
	n.Router, n.HTTP = router, router.HTTP()
	n.Policy.router = router
	for _, u := range router.Upstreams() {
		if u.Mux() != nil {
			n.WS, n.HasWS = router.WS(), true
			break
		}
	}
	if cfg.WSPerClient {
		n.perClient = upstream.NewMetrics(reg, "per_client")
	}
	n.Heads.Register(reg)
	if shared != nil {
		reg.Gauge("gateway_sharedcache_ready", "1 once the shared cache tier knows the network's chain (configured, or the upstream's eth_chainId; its keys carry it); until then the tier is skipped.",
			func() float64 {
				if n.sharedNS.Load() != nil {
					return 1
				}
				return 0
			})
	}
	reg.Gauge("gateway_pending_request_bytes", "Request bytes waiting on the upstream, every transport together.",
		func() float64 { return float64(n.Pending.InUse()) })
	if cfg.CacheEnabled {
		n.Cache = cache.New(*cfg, n.Heads, reg)
	}
	var store logs.Store
	if n.Cache != nil {
		store = logsStore{n.Cache}
	}
	n.Logs = logs.New(cfg.Logs, n.servedHead, store, reg)
	return n, nil
}

// Start starts the router's probes and, with a shared tier, learning the chain id.
func (n *Network) Start() {
	n.Router.Start()
	if n.Shared != nil && n.sharedNS.Load() == nil {
		n.wg.Add(1)
		go n.learnChain()
	}
}

// Close ends the network's background work and closes its upstream connections.
func (n *Network) Close() {
	n.once.Do(func() {
		close(n.stop)
		n.wg.Wait()
		if n.Filters != nil {
			n.Filters.Close()
		}
		n.Router.Close()
		n.reg.Close()
	})
}

// servedHead is the head eth_getLogs tags resolve to.
func (n *Network) servedHead() (uint64, bool) {
	return n.Router.ServedHead(), n.Router.HeadKnown()
}

// logsStore keeps finalized eth_getLogs chunks in the network's cache, as answers by
// number: immutable once deep, dropped by a reorg.
type logsStore struct{ c *cache.Cache }

var methodGetLogs = proto.MethodNamed("eth_getLogs")

func (s logsStore) Lookup(key []byte) []byte {
	// ^0: no head epoch matches, so only the immutable store is read.
	return s.c.Lookup(key, cache.ByNumber, ^uint64(0), time.Now())
}

func (s logsStore) Store(key []byte, last uint64, body []byte) {
	if s.c.Deep(last) {
		s.c.Store(key, methodGetLogs, cache.ByNumber, last, 0, body)
	}
}

func (s logsStore) Deep(n uint64) bool { return s.c.Deep(n) }

// routerConfig is the router's configuration, every value from Config.
func (n *Network) routerConfig(reg *upstream.Registry) upstream.RouterConfig {
	c := n.cfg
	return upstream.RouterConfig{
		Health: upstream.HealthConfig{
			Window: c.HealthWindow, MinRequests: c.BanMinRequests, MaxErrorRate: c.BanErrorRate,
			MaxFailures: c.BanFailures, MaxLag: c.MaxLag, SlowFactor: c.SlowFactor, SlowMin: c.SlowMin,
			BanMin: c.BanMin, BanMax: c.BanMax, Readmit: c.Readmit,
		},
		Pool: upstream.PoolConfig{
			MaxConns:            c.UpstreamMaxConns,
			MaxConnWaitTimeout:  c.UpstreamTimeout,
			MaxResponseBodySize: c.MaxResponseBody,
			Answers:             n.answers,
			DialTimeout:         c.UpstreamDialTimeout,
			MaxIdleConnDuration: c.UpstreamIdleTimeout,
		},
		Mux:            n.muxConfig(),
		Retries:        c.Retries,
		HedgeQuantile:  c.HedgeQuantile,
		HedgeMaxExtra:  c.HedgeMaxExtra,
		ArchiveDepth:   c.ArchiveDepth,
		Methods:        c.Methods,
		ProbeInterval:  c.ProbeInterval,
		HeadPoll:       c.HeadPoll,
		ReviewInterval: c.ReviewInterval,
		// A call no upstream has budget for waits this long at most, this many bytes
		// of them at once.
		BudgetWait:       c.BudgetWait,
		BudgetQueueBytes: int64(c.BudgetQueueBytes),
		Registry:         reg,
		Logger:           n.log,
		OnHead:           func(header []byte) { n.Heads.Observe(header) },
		// A configured chain is checked on every upstream (0: the single network of the
		// flags, whose chain is learned, not checked).
		ChainID: n.ChainID,
	}
}

// muxConfig is the websocket Mux configuration shared by every upstream socket.
func (n *Network) muxConfig() upstream.MuxConfig {
	c := n.cfg
	return upstream.MuxConfig{
		Conns:          c.WSUpstreamConns,
		QueueSize:      c.WSUpstreamQueue,
		ReadLimit:      c.MaxResponseBody,
		Answers:        n.answers,
		PingInterval:   c.WSPingInterval,
		PongTimeout:    c.WSPongTimeout,
		ProbeTimeout:   c.WSProbeTimeout,
		DialTimeout:    c.WSDialTimeout,
		WriteTimeout:   c.WSWriteTimeout,
		BackoffMin:     c.WSBackoffMin,
		BackoffMax:     c.WSBackoffMax,
		RequestTimeout: c.UpstreamTimeout,
		Logger:         n.log,
	}
}

// PerClientMux opens a Mux of one socket to the first upstream with a websocket, for a
// client of its own (-ws-per-client).
func (n *Network) PerClientMux() (*upstream.Mux, error) {
	for _, u := range n.Router.Upstreams() {
		sp := u.Spec()
		if sp.WSURL == "" || sp.SendOnly {
			continue
		}
		mc := n.muxConfig()
		mc.URL, mc.Conns, mc.Metrics = sp.WSURL, 1, n.perClient
		mc.ChainID = n.ChainID // a client's own socket proves the chain as the shared ones do
		if sp.User != "" || sp.Password != "" {
			mc.Header = http.Header{"Authorization": {"Basic " +
				base64.StdEncoding.EncodeToString([]byte(sp.User+":"+sp.Password))}}
		}
		return upstream.NewMux(mc)
	}
	return nil, ErrWSDisabled
}

// storedID is the id of answers made for the network itself.
var storedID = []byte("1")

// learnChain asks the upstream for its chain id and makes it the shared cache tier's
// namespace, so gateways of different chains sharing one Redis never answer from each
// other's entries. Until then the tier is skipped. The ask is retried with backoff until
// it is answered or the network closes.
func (n *Network) learnChain() {
	defer n.wg.Done()
	var req proto.Request
	req.Set([]byte("eth_chainId"), nil)
	wait := 250 * time.Millisecond
	for tries := 1; ; tries++ {
		ans, err := n.HTTP.Call(nil, &req, storedID, time.Now().Add(2*time.Second))
		if err == nil {
			if id, ok := proto.ParseQuantity(proto.FirstMember(ans, "result").Bytes(ans)); ok {
				n.setChain(id)
				n.log.Info("shared cache tier ready", "chain_id", id)
				return
			}
			err = errors.New("no chain id in the answer")
		}
		if tries == 3 {
			n.log.Warn("shared cache tier off until the upstream answers eth_chainId; retrying", "err", err)
		}
		select {
		case <-n.stop:
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// setChain names the network's keys in the shared tier: its chain id and its name, so
// that networks (and gateways of other chains sharing one Redis) never answer from each
// other's entries.
func (n *Network) setChain(id uint64) {
	ns := "chain" + strconv.FormatUint(id, 10) + ":" + n.Name + ":"
	n.sharedNS.CompareAndSwap(nil, &ns)
}

// SharedOn reports whether the shared tier may be used for this network: there is one,
// and the network's chain is known. When there is one but the chain is not known yet,
// the passed-over use is counted (gateway_sharedcache_requests_total{result="skipped"}).
func (n *Network) SharedOn() bool {
	if n.Shared == nil {
		return false
	}
	if n.sharedNS.Load() == nil {
		n.Shared.Skip(1)
		return false
	}
	return true
}

// SharedKey names key (a cache key) in the shared tier: the network's namespace, the
// method and the SHA-256 of the canonical params. Only after SharedOn.
func (n *Network) SharedKey(key []byte) string { return *n.sharedNS.Load() + cache.SharedKey(key) }

// Policy is the pipeline stage that decides, on the decoded request, whether the
// network forwards it at all.
type Policy struct {
	deny   proto.MethodSet
	router *upstream.Router // nil: not asked
}

// errNotServed answers a method no upstream of the network is configured for: the
// method is not available (as a provider answers one off its plan), not a transient
// 503 that sinks a whole batch.
var errNotServed = proto.NewError(proto.CodeMethodNotFound, fasthttp.StatusOK,
	"the method is not available on this network: no upstream is configured to serve it")

// Admit returns the error that answers r instead of the upstream, or nil.
func (p *Policy) Admit(r *proto.Request) *proto.Error {
	// r.Name is decoded: "admin\u005fnodeInfo" is admin_nodeInfo; so is an
	// eth_subscribe's kind, which a family may deny.
	if p.deny.Names(r) {
		return proto.ErrMethodNotFound
	}
	if p.router != nil && !p.router.Serves(r) {
		return errNotServed
	}
	return nil
}

// ErrWSDisabled answers what needs a websocket upstream when none is configured.
var ErrWSDisabled = proto.NewError(proto.CodeServer, fasthttp.StatusServiceUnavailable,
	"websocket upstream disabled (-upstream-ws off)")

// wsDisabled is the WS caller when no websocket upstream is configured.
type wsDisabled struct{}

func (wsDisabled) Call(spare []byte, _ *proto.Request, _ []byte, _ time.Time) ([]byte, error) {
	return spare[:0], ErrWSDisabled
}

func (wsDisabled) CallBatch(b *upstream.Batch, _ time.Time) error {
	b.Fail(ErrWSDisabled)
	return ErrWSDisabled
}

// Registry is the network's view of the gateway's metrics registry: every series it
// registers carries network=<name>, and Close removes them. The gateway registers the
// network's transport metrics (routes, websockets) in it.
func (n *Network) Registry() *upstream.Registry { return n.reg }

var names struct {
	sync.Mutex
	idx map[string]int
}

// indexOf numbers name once per process: the same name keeps its number across reloads.
func indexOf(name string) int {
	names.Lock()
	defer names.Unlock()
	if names.idx == nil {
		names.idx = map[string]int{}
	}
	i, ok := names.idx[name]
	if !ok {
		i = len(names.idx)
		if i >= config.MaxNetworks {
			return -1
		}
		names.idx[name] = i
	}
	return i
}
