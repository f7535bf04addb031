package gateway

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"sync"

	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/gateway/broadcast"
	"github.com/infura-gateway/infura-gateway/gateway/config"
	"github.com/infura-gateway/infura-gateway/gateway/filters"
	"github.com/infura-gateway/infura-gateway/gateway/network"
	"github.com/infura-gateway/infura-gateway/gateway/pipeline"
	"github.com/infura-gateway/infura-gateway/gateway/socket"
	"github.com/infura-gateway/infura-gateway/proto"
	"github.com/infura-gateway/infura-gateway/upstream"
)

// The networks a Server serves. A request resolves its network once, at the top
// (serveNetwork): by its path prefix, its Host, or the default; the rest of its way is
// the network's own route table (front), whose handlers hold the *Network.

// front is what the gateway serves one network with: its route table and its
// websocket endpoint.
type front struct {
	net     *network.Network
	conf    config.Network
	handler fasthttp.RequestHandler
	// counted counts, as route "other", a request answered before any route ran: a
	// CORS preflight, or one fasthttp refused (too large, malformed, too slow).
	counted func(ctx *fasthttp.RequestCtx, timed bool)
	sock    *socket.Server // nil when no upstream of the network has a websocket
}

// fronts is the fronts by network, swapped whole by a reload. one is the front when
// there is only one: a request takes it without the map lookup.
type fronts struct {
	m   map[*network.Network]*front
	one *front
}

// serveNetwork resolves the request's network and hands it to the network's routes,
// the path prefix (/<network>) taken off.
func (s *Server) serveNetwork(ctx *fasthttp.RequestCtx) {
	if encodedSeparator(ctx.Request.URI().PathOriginal()) {
		s.frontOf(s.defaultNetwork()).counted(ctx, true)
		pipeline.WriteError(ctx, nil, errEncodedSeparator)
		return
	}
	n, rest, prefixed := s.nets.Resolve(ctx.Path(), ctx.Host())
	if prefixed {
		ctx.URI().SetPathBytes(rest)
	}
	s.frontOf(n).handler(ctx)
}

// errEncodedSeparator answers a path with a percent-encoded '/', '\\' or '.'.
var errEncodedSeparator = proto.NewError(proto.CodeInvalidRequest, fasthttp.StatusBadRequest,
	"invalid request: percent-encoded '/', '\\' or '.' in the path")

// encodedSeparator reports whether the path as sent has a percent-encoded '/', '\\' or
// '.' (%2F, %5C, %2E, any case). The path is decoded before it is resolved, so
// /a%2F..%2Fb/ would be /b/: served by network b while a proxy in front, reading the
// path as sent (RFC 3986: an encoded '/' separates nothing), saw network a's prefix.
// None of the gateway's routes or keys has one; they are refused, never resolved.
func encodedSeparator(p []byte) bool {
	for i := bytes.IndexByte(p, '%'); i >= 0 && i+2 < len(p); {
		switch c1, c2 := p[i+1], p[i+2]|0x20; {
		case c1 == '2' && (c2 == 'f' || c2 == 'e'), c1 == '5' && c2 == 'c':
			return true
		}
		j := bytes.IndexByte(p[i+1:], '%')
		if j < 0 {
			return false
		}
		i += 1 + j
	}
	return false
}

// frontOf is the front serving network n.
func (s *Server) frontOf(n *network.Network) *front {
	fs := s.fronts.Load()
	f := fs.one
	if f == nil || f.net != n {
		f = fs.m[n]
	}
	return f
}

// countAnswered counts a request answered before its route ran, on the network it
// names (the default one when it names none, or could not be read). timed: fasthttp
// took the request's time (a preflight); one it refused while reading it, or before
// its body (Expect), has none of its own (ctx.Time is an earlier request's, or zero).
func (s *Server) countAnswered(ctx *fasthttp.RequestCtx, timed bool) {
	n, _, _ := s.nets.Resolve(ctx.Path(), ctx.Host())
	if f := s.frontOf(n); f != nil {
		f.counted(ctx, timed)
	}
}

// newFront builds network nc and what serves it; Start is left to the caller.
func (s *Server) newFront(cfg *config.Config, nc config.Network) (*front, error) {
	n, err := network.New(cfg, nc, s.reg, s.log, s.shared, s.budgetMeters(nc.Name, cfg.BudgetReplicas), s.answers)
	if err != nil {
		return nil, fmt.Errorf("network %s: %w", nc.Name, err)
	}
	n.Filters = filters.New(filters.Config{Network: filterNamespace(nc), Timeout: cfg.FilterTimeout,
		MaxPerTenant: cfg.FilterMaxPerTenant, MaxTotal: cfg.FilterMaxTotal, MaxBytes: int64(cfg.FilterMaxBytes),
		MaxResponse: cfg.MaxResponseBody, MaxLag: cfg.ForNetwork(nc).MaxLag, Redis: s.redis, Subs: filterSubs(n), Log: s.log.With("network", nc.Name)})
	n.Broadcast = broadcast.New(nc.Name, n.Router, s.redis, n.Registry(), s.log.With("network", nc.Name))
	n.Broadcast.Configure(nc.Broadcast)
	if err := n.Router.SetConsensus(nc.Consensus); err != nil { // validated with the file
		return nil, fmt.Errorf("network %s: %w", nc.Name, err)
	}
	f := &front{net: n, conf: nc}
	if n.HasWS {
		f.sock = socket.New(cfg, s.acc, s.pipe, n, s.bodies.reading, n.Registry())
	}
	f.handler = s.routes(f)
	f.counted = s.inst.With(n.Registry()).Count("other")
	return f, nil
}

// filterNamespace names a network's filters in Redis: its name, and its chain when
// configured, so gateways of other chains sharing one Redis keep apart.
func filterNamespace(nc config.Network) string {
	if nc.ChainID == 0 {
		return nc.Name
	}
	return nc.Name + "@" + strconv.FormatUint(nc.ChainID, 10)
}

// filterSubs is what serves pending-transaction filters: the router's shared
// subscriptions when an upstream has a websocket, else nil (they are refused).
func filterSubs(n *network.Network) *upstream.Subscriptions {
	if !n.HasWS {
		return nil
	}
	return n.Router.Subscriptions()
}

// close ends a network's clients and connections: its websocket clients get e (nil:
// the gateway is shutting down) before a close 1001.
func (f *front) close(e *proto.Error) {
	if f.sock != nil {
		if e != nil {
			f.sock.Remove(e)
		} else {
			f.sock.Close()
		}
	}
	f.net.Close()
}

// storeNetworks makes list the networks served, in configuration order.
func (s *Server) storeNetworks(list []*front) {
	m := fronts{m: make(map[*network.Network]*front, len(list))}
	if len(list) == 1 {
		m.one = list[0]
	}
	entries := make([]network.Entry, 0, len(list))
	for _, f := range list {
		m.m[f.net] = f
		entries = append(entries, network.Entry{Net: f.net, Aliases: f.conf.Aliases, Hosts: f.conf.Hosts, Default: f.conf.Default})
	}
	s.fronts.Store(&m)
	s.nets.Store(entries)
}

// frontList returns the fronts in configuration order.
func (s *Server) frontList() []*front {
	p := s.fronts.Load()
	if p == nil {
		return nil
	}
	m := p.m
	var out []*front
	for _, n := range s.nets.List() {
		out = append(out, m[n])
	}
	return out
}

// startNetworks builds every configured network; on an error none is left running.
func (s *Server) startNetworks() error {
	var list []*front
	for _, nc := range s.cfg.NetworkList() {
		f, err := s.newFront(&s.cfg, nc)
		if err != nil {
			for _, f := range list {
				f.close(nil)
			}
			return err
		}
		list = append(list, f)
	}
	s.storeNetworks(list)
	return nil
}

// reloadNetworks applies the networks of a reloaded file: a network of the same name
// and chain keeps running and takes its new upstream list (its clients stay), a new
// one starts, a removed one's websocket clients get a JSON-RPC error and a close 1001.
func (s *Server) reloadNetworks(next *config.Config) error {
	old := map[string]*front{}
	for _, f := range s.frontList() {
		old[f.conf.Name] = f
	}
	var list, started []*front
	undo := func() {
		for _, f := range started {
			f.close(nil)
		}
	}
	for _, nc := range next.NetworkList() {
		if o := old[nc.Name]; o != nil && o.conf.ChainID == nc.ChainID {
			list = append(list, &front{net: o.net, conf: nc, handler: o.handler, counted: o.counted, sock: o.sock})
			continue
		}
		f, err := s.newFront(next, nc)
		if err != nil {
			undo()
			return err
		}
		list, started = append(list, f), append(started, f)
	}
	// The upstream lists of the networks that stay; each is validated before it changes
	// anything, and the file was validated as a whole.
	for _, f := range list {
		if !slices.Contains(started, f) {
			if err := f.net.Router.Reload(f.conf.Upstreams); err != nil {
				undo()
				return fmt.Errorf("network %s: %w", f.conf.Name, err)
			}
			// The per-method policy follows the file too (validated with it).
			if err := f.net.Router.SetMethodPolicies(next.ForNetwork(f.conf).Methods); err != nil {
				undo()
				return fmt.Errorf("network %s: %w", f.conf.Name, err)
			}
			f.net.Broadcast.Configure(f.conf.Broadcast)
			if err := f.net.Router.SetConsensus(f.conf.Consensus); err != nil {
				undo()
				return fmt.Errorf("network %s: %w", f.conf.Name, err)
			}
			f.net.Logs.Reload(next.ForNetwork(f.conf).Logs, !reflect.DeepEqual(old[f.conf.Name].conf.Upstreams, f.conf.Upstreams))
		}
	}
	// New networks start (their upstreams prove their chain, bounded) before requests
	// can reach them.
	var wg sync.WaitGroup
	for _, f := range started {
		wg.Add(1)
		go func() { defer wg.Done(); f.net.Start() }()
	}
	wg.Wait()
	s.storeNetworks(list)
	kept := map[*network.Network]bool{}
	for _, f := range list {
		kept[f.net] = true
	}
	for _, o := range old {
		if !kept[o.net] {
			go o.close(errNetworkRemoved(o.conf.Name))
		}
	}
	return nil
}

// errNetworkRemoved tells a removed network's websocket clients why they are closed.
func errNetworkRemoved(name string) *proto.Error {
	return proto.NewError(proto.CodeServer, fasthttp.StatusServiceUnavailable,
		"network "+name+" was removed from this gateway's configuration")
}

// notFound answers a path no route serves. With several networks, a first segment
// that could be a network's name is counted as an unknown network, and the answer
// names the configured ones.
func (s *Server) notFound(ctx *fasthttp.RequestCtx) {
	if !s.nets.Multi() {
		writeNotFound(ctx, proto.ErrNotFound)
		return
	}
	if seg, _, _ := bytes.Cut(bytes.TrimPrefix(ctx.Path(), []byte("/")), []byte("/")); config.CouldBeNetworkName(seg) && !s.namedNetwork(ctx) {
		s.m.unknownNetwork.Inc() // not /favicon.ico, /.env and the like: scanners' noise
	}
	e := *proto.ErrNotFound
	e.Message = "no such route or network; networks: " + s.nets.Names()
	writeNotFound(ctx, &e)
}

// namedNetwork reports whether the request's path began with a network's name or alias
// (serveNetwork took it off): a route that network does not have (/sepolia/ws/v3/<key>/)
// names no unknown network. Read again from the request line: only 404s get here.
func (s *Server) namedNetwork(ctx *fasthttp.RequestCtx) bool {
	u := fasthttp.AcquireURI()
	defer fasthttp.ReleaseURI(u)
	if u.Parse(nil, ctx.Request.Header.RequestURI()) != nil {
		return false
	}
	_, _, prefixed := s.nets.Resolve(u.Path(), nil)
	return prefixed
}

// defaultNetwork is the network of requests with no prefix and no host match.
func (s *Server) defaultNetwork() *network.Network {
	n, _, _ := s.nets.Resolve(nil, nil)
	return n
}
