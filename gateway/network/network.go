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
	"time"

	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/gateway/cache"
	"github.com/infura-gateway/infura-gateway/gateway/config"
	"github.com/infura-gateway/infura-gateway/gateway/head"
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
	// Name labels the network (metrics, logs, the status page).
	Name   string
	Router *upstream.Router
	HTTP   Caller // the router over HTTP
	WS     Caller // the router over websockets, or one answering errWSDisabled
	// HasWS reports whether any upstream has a websocket (subscriptions, /socket2socket).
	HasWS  bool
	Heads  *head.Tracker
	Cache  *cache.Cache       // nil when the cache is disabled
	Shared *sharedcache.Cache // the shared tier, in this chain's namespace; nil without it
	Policy Policy

	cfg       *config.Config
	log       *slog.Logger
	perClient *upstream.Metrics // the series of the sockets -ws-per-client opens; nil when off

	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// New builds the network cfg describes, its metrics in reg. shared is the shared cache
// tier (nil without one): the network names its namespace once the upstream tells the
// chain id. Start starts background work; Close ends it.
func New(cfg *config.Config, reg *upstream.Registry, log *slog.Logger, shared *sharedcache.Cache) (*Network, error) {
	n := &Network{
		Name:   "default",
		Heads:  &head.Tracker{},
		Shared: shared,
		Policy: Policy{deny: proto.NewDenySet(cfg.DenyMethods)},
		WS:     wsDisabled{},
		cfg:    cfg,
		log:    log,
		stop:   make(chan struct{}),
	}
	router, err := upstream.NewRouter(n.routerConfig(reg), cfg.UpstreamSpecs())
	if err != nil {
		return nil, err
	}
	n.Router, n.HTTP = router, router.HTTP()
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
	if cfg.CacheEnabled {
		n.Cache = cache.New(*cfg, n.Heads, reg)
	}
	return n, nil
}

// Start starts the router's probes and, with a shared tier, learning the chain id.
func (n *Network) Start() {
	n.Router.Start()
	if n.Shared != nil {
		n.wg.Add(1)
		go n.learnChain()
	}
}

// Close ends the network's background work and closes its upstream connections.
func (n *Network) Close() {
	n.once.Do(func() {
		close(n.stop)
		n.wg.Wait()
		n.Router.Close()
	})
}

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
			DialTimeout:         c.UpstreamDialTimeout,
			MaxIdleConnDuration: c.UpstreamIdleTimeout,
		},
		Mux:            n.muxConfig(),
		Retries:        c.Retries,
		HedgeQuantile:  c.HedgeQuantile,
		HedgeMaxExtra:  c.HedgeMaxExtra,
		ArchiveDepth:   c.ArchiveDepth,
		ProbeInterval:  c.ProbeInterval,
		HeadPoll:       c.HeadPoll,
		ReviewInterval: c.ReviewInterval,
		Registry:       reg,
		Logger:         n.log,
		OnHead:         func(header []byte) { n.Heads.Observe(header) },
	}
}

// muxConfig is the websocket Mux configuration shared by every upstream socket.
func (n *Network) muxConfig() upstream.MuxConfig {
	c := n.cfg
	return upstream.MuxConfig{
		Conns:          c.WSUpstreamConns,
		QueueSize:      c.WSUpstreamQueue,
		ReadLimit:      c.MaxResponseBody,
		PingInterval:   c.WSPingInterval,
		PongTimeout:    c.WSPongTimeout,
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
		if sp.WSURL == "" {
			continue
		}
		mc := n.muxConfig()
		mc.URL, mc.Conns, mc.Metrics = sp.WSURL, 1, n.perClient
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
				n.Shared.SetNamespace("chain" + strconv.FormatUint(id, 10) + ":")
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

// Policy is the pipeline stage that decides, on the decoded request, whether the
// network forwards it at all.
type Policy struct {
	deny proto.MethodSet
}

// Admit returns the error that answers r instead of the upstream, or nil.
func (p *Policy) Admit(r *proto.Request) *proto.Error {
	// r.Name is decoded: "admin\u005fnodeInfo" is admin_nodeInfo; so is an
	// eth_subscribe's kind, which a family may deny.
	if p.deny.Names(r) {
		return proto.ErrMethodNotFound
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
