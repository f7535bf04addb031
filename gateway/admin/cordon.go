package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/fasthttp/router"
	"github.com/redis/rueidis"
	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/gateway/network"
	"github.com/infura-gateway/infura-gateway/gateway/pipeline"
	"github.com/infura-gateway/infura-gateway/gateway/redisconn"
	"github.com/infura-gateway/infura-gateway/proto"
	"github.com/infura-gateway/infura-gateway/upstream"
)

// Cordons serves the admin endpoints that take an upstream out of routing and back
// (POST /admin/cordon, /admin/uncordon, /admin/drain) and keeps the cordons of every
// replica the same through Redis: one hash per network (CordonKeyPrefix + network,
// field: upstream name, value: the upstream.Cordon in JSON). Every replica reads the
// hashes at start (a restarted replica starts cordoned) and every CordonPoll after.
//
// Polling rather than pub/sub: a HGETALL per network every 250 ms is a handful of tiny
// calls per replica on the connection and breaker the limiter already has, while
// pub/sub needs a connection of its own that must be resubscribed after every
// failover, and a periodic resync anyway for the messages missed meanwhile (a replica
// that was down or cut off). Polling is that resync, and bounds propagation to one
// interval plus a round trip.
//
// Without Redis the cordons are per process and lost on restart; answers say so.
type Cordons struct {
	cfg      CordonConfig
	nets     *network.Set
	tokenSum [sha256.Size]byte
	// mu orders a change (Redis write, then local apply) against a poll (Redis read,
	// then apply): a poll read before a change must not be applied after it.
	mu   sync.Mutex
	stop chan struct{}
	done chan struct{}
}

// CordonConfig configures Cordons.
type CordonConfig struct {
	// Token enables the endpoints for callers sending "Authorization: Bearer <Token>";
	// empty: they answer 403.
	Token string
	// Redis holds the fleet's cordons; nil: per process.
	Redis *redisconn.Conn
	// Replica names this gateway in a cordon's "replica" (the pod's host name).
	Replica string
	// Poll is how often the cordons are read back from Redis (default CordonPoll).
	Poll time.Duration
	Log  *slog.Logger
}

const (
	// CordonKeyPrefix starts each network's hash of cordons in Redis.
	CordonKeyPrefix = "igw:cordon:"
	// CordonPoll is how often replicas read the cordons: every replica applies a
	// change within this plus a Redis round trip (well within the promised second).
	CordonPoll = 250 * time.Millisecond
	// CordonStartWait bounds how long a starting replica retries its first read.
	CordonStartWait = 3 * time.Second
	// Drains wait DefaultDrainTimeout for calls in flight to end, at most MaxDrainTimeout.
	DefaultDrainTimeout = 30 * time.Second
	MaxDrainTimeout     = 5 * time.Minute
	maxReason           = 200
	maxBy               = 64
	maxAdminBody        = 4 << 10
)

// NewCordons returns the cordons of the networks of nets; Start reads Redis.
func NewCordons(cfg CordonConfig, nets *network.Set) *Cordons {
	if cfg.Poll <= 0 {
		cfg.Poll = CordonPoll
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	c := &Cordons{cfg: cfg, nets: nets, stop: make(chan struct{}), done: make(chan struct{})}
	if cfg.Token != "" {
		c.tokenSum = sha256.Sum256([]byte(cfg.Token))
	}
	return c
}

// Start applies the fleet's cordons once (so a replica starts with them) and keeps
// following them. Without Redis it does nothing.
func (c *Cordons) Start() {
	if c.cfg.Redis == nil {
		close(c.done)
		return
	}
	// A replica must not serve a cordoned upstream for want of one quick answer: the
	// first read is retried (each call has the Conn's short deadline, which a loaded
	// machine can miss) for up to CordonStartWait before the gateway starts without it.
	deadline := time.Now().Add(CordonStartWait)
	for err := c.sync(); err != nil; err = c.sync() {
		if !time.Now().Before(deadline) {
			c.cfg.Log.Warn("cordons not read from Redis at start; retried every poll", "err", err)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	go func() {
		defer close(c.done)
		t := time.NewTicker(c.cfg.Poll)
		defer t.Stop()
		failing := false
		for {
			select {
			case <-c.stop:
				return
			case <-t.C:
			}
			// While Redis is unreachable the last state read stays: a Redis outage
			// uncordons nothing.
			err := c.sync()
			if err != nil && !failing {
				c.cfg.Log.Warn("cordons not read from Redis; the last state read stays", "err", err)
			}
			failing = err != nil
		}
	}()
}

// Close stops following Redis.
func (c *Cordons) Close() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	<-c.done
}

// sync reads every network's hash and makes it the network's cordons.
func (c *Cordons) sync() error {
	nets := c.nets.List()
	if len(nets) == 0 {
		return nil
	}
	r := c.cfg.Redis
	cmds := make([]redisCmd, len(nets))
	for i, n := range nets {
		cmds[i] = r.B().Hgetall().Key(CordonKeyPrefix + n.Name).Build()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	res := r.DoMulti(context.Background(), cmds...)
	for _, x := range res {
		if err := x.Error(); err != nil {
			return fmt.Errorf("read cordons: %w", err)
		}
	}
	for i, n := range nets {
		fields, _ := res[i].AsStrMap()
		all := make(map[string]upstream.Cordon, len(fields))
		for name, v := range fields {
			var cd upstream.Cordon
			if err := json.Unmarshal([]byte(v), &cd); err != nil {
				// Not ours, or damaged: cordoned all the same (someone meant it), without a reason.
				cd = upstream.Cordon{Reason: "(unreadable entry in Redis)"}
			}
			all[name] = cd
		}
		n.Router.SetCordons(all)
	}
	return nil
}

type redisCmd = rueidis.Completed

// routes adds the endpoints to r. Not wrapped in route metrics: those feed the SLOs
// and the per-network contract (helm/README.md), and an operator's action is neither
// user traffic nor a network's; each action is logged instead.
func (c *Cordons) routes(r *router.Router) {
	r.POST("/admin/cordon", func(ctx *fasthttp.RequestCtx) { c.serve(ctx, actCordon) })
	r.POST("/admin/uncordon", func(ctx *fasthttp.RequestCtx) { c.serve(ctx, actUncordon) })
	r.POST("/admin/drain", func(ctx *fasthttp.RequestCtx) { c.serve(ctx, actDrain) })
}

type action uint8

const (
	actCordon action = iota
	actUncordon
	actDrain
)

var actionNames = [...]string{"cordon", "uncordon", "drain"}

// cordonRequest is what a caller sends, as JSON or query arguments.
type cordonRequest struct {
	Network  string `json:"network"`
	Upstream string `json:"upstream"`
	Reason   string `json:"reason"`
	By       string `json:"by"`
	Timeout  string `json:"timeout"` // drain only: how long to wait for calls in flight
}

// CordonAnswer is the endpoints' answer.
type CordonAnswer struct {
	Action   string           `json:"action"`
	Network  string           `json:"network"`
	Upstream string           `json:"upstream"`
	Cordoned *upstream.Cordon `json:"cordoned,omitempty"`
	// Scope is "fleet" (stored in Redis: every replica applies it within a second and
	// keeps it across restarts) or "process" (no Redis: this replica only, until it
	// restarts).
	Scope string `json:"scope"`
	Note  string `json:"note,omitempty"`
	// Drain only: this replica's calls still in flight on the upstream when the
	// answer was written (0: drained), and how long it waited.
	InFlight *int32  `json:"in_flight,omitempty"`
	Drained  *bool   `json:"drained,omitempty"`
	WaitedS  float64 `json:"waited_s,omitempty"`
}

func (c *Cordons) serve(ctx *fasthttp.RequestCtx, act action) {
	if e := c.authorize(ctx); e != nil {
		pipeline.WriteError(ctx, nil, e)
		return
	}
	req, e := parseCordonRequest(ctx, act)
	if e != nil {
		pipeline.WriteError(ctx, nil, e)
		return
	}
	n, e := c.network(req.Network)
	if e != nil {
		pipeline.WriteError(ctx, nil, e)
		return
	}
	if n.Router.Upstream(req.Upstream) == nil {
		pipeline.WriteError(ctx, nil, proto.NewError(proto.CodeInvalidParams, fasthttp.StatusNotFound,
			fmt.Sprintf("network %s has no upstream %q (the names are on /status)", n.Name, req.Upstream)))
		return
	}
	ans := CordonAnswer{Action: actionNames[act], Network: n.Name, Upstream: req.Upstream, Scope: "fleet"}
	if c.cfg.Redis == nil {
		ans.Scope = "process"
		ans.Note = "no Redis (-redis-addr): this replica only, and not kept across its restart"
	}
	var cd *upstream.Cordon
	if act != actUncordon {
		cd = &upstream.Cordon{Reason: req.Reason, By: req.By, Replica: c.cfg.Replica,
			Since: time.Now().UTC().Truncate(time.Second), Drain: act == actDrain}
	}
	if err := c.apply(n, req.Upstream, cd); err != nil {
		c.cfg.Log.Error("admin "+ans.Action+" not applied", "network", n.Name, "upstream", req.Upstream, "err", err)
		pipeline.WriteError(ctx, nil, proto.NewError(proto.CodeServer, fasthttp.StatusServiceUnavailable,
			ans.Action+" not stored in Redis, so no replica changed (Redis unreachable?); retry"))
		return
	}
	c.cfg.Log.Warn("admin "+ans.Action, "network", n.Name, "upstream", req.Upstream, "reason", req.Reason, "by", req.By,
		"scope", ans.Scope)
	ans.Cordoned = cd
	if act == actDrain {
		timeout, _ := time.ParseDuration(req.Timeout) // checked by parseCordonRequest
		if req.Timeout == "" {
			timeout = DefaultDrainTimeout
		}
		start := time.Now()
		left := waitDrained(n.Router, req.Upstream, start.Add(timeout))
		drained := left == 0
		ans.InFlight, ans.Drained, ans.WaitedS = &left, &drained, time.Since(start).Round(time.Millisecond).Seconds()
		if !drained {
			ans.Note = strings.TrimPrefix(ans.Note+"; ", "; ") + "calls still in flight on this replica at the timeout; it stays cordoned"
		}
	}
	b, _ := json.Marshal(ans)
	ctx.SetContentTypeBytes(pipeline.ContentTypeJSON)
	ctx.SetBody(append(b, '\n'))
}

// apply writes the cordon (nil: its removal) to Redis, then to this replica. Redis
// first: a change Redis did not take is not made at all, so replicas never disagree.
func (c *Cordons) apply(n *network.Network, name string, cd *upstream.Cordon) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r := c.cfg.Redis; r != nil {
		key := CordonKeyPrefix + n.Name
		var cmd redisCmd
		if cd == nil {
			cmd = r.B().Hdel().Key(key).Field(name).Build()
		} else {
			v, _ := json.Marshal(cd)
			cmd = r.B().Hset().Key(key).FieldValue().FieldValue(name, string(v)).Build()
		}
		// HSET and HDEL are idempotent: retried for a second, since each call has the
		// Conn's short deadline (made for requests, not for an operator's action).
		deadline := time.Now().Add(time.Second)
		for {
			err := r.Do(context.Background(), cmd.Pin()).Error()
			if err == nil {
				break
			}
			if !time.Now().Before(deadline) {
				return fmt.Errorf("redis: %w", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if cd == nil {
		return n.Router.Uncordon(name)
	}
	return n.Router.Cordon(name, *cd)
}

// waitDrained waits until this replica has no call in flight on the upstream named
// name (looked up each time: a reload may rebuild it), or until deadline; it returns
// the calls left.
func waitDrained(r *upstream.Router, name string, deadline time.Time) int32 {
	for {
		u := r.Upstream(name)
		if u == nil {
			return 0 // removed by a reload: nothing of it is in flight any more
		}
		left := u.InFlight()
		if left == 0 || !time.Now().Before(deadline) {
			return left
		}
		time.Sleep(10 * time.Millisecond) // an operator's request: a short poll costs nothing
	}
}

// authorize checks the bearer token in constant time (of equal-length digests, so its
// length is not measured either).
func (c *Cordons) authorize(ctx *fasthttp.RequestCtx) *proto.Error {
	if c.cfg.Token == "" {
		return errAdminDisabled
	}
	got, ok := strings.CutPrefix(string(ctx.Request.Header.Peek(fasthttp.HeaderAuthorization)), "Bearer ")
	sum := sha256.Sum256([]byte(got))
	if !ok || subtle.ConstantTimeCompare(sum[:], c.tokenSum[:]) != 1 {
		ctx.Response.Header.Set(fasthttp.HeaderWWWAuthenticate, `Bearer realm="infura-gateway admin"`)
		return errAdminToken
	}
	return nil
}

var (
	errAdminDisabled = proto.NewError(proto.CodeServer, fasthttp.StatusForbidden,
		"admin endpoints are disabled: start the gateway with ADMIN_TOKEN (or -admin-token) set and send it as Authorization: Bearer <token>")
	errAdminToken = proto.NewError(proto.CodeServer, fasthttp.StatusUnauthorized,
		"missing or wrong admin token: send Authorization: Bearer <token>")
)

// network finds the network named name ("": the default one).
func (c *Cordons) network(name string) (*network.Network, *proto.Error) {
	if name == "" {
		n, _, _ := c.nets.Resolve(nil, nil)
		if n != nil {
			return n, nil
		}
	}
	for _, n := range c.nets.List() {
		if n.Name == name {
			return n, nil
		}
	}
	return nil, proto.NewError(proto.CodeInvalidParams, fasthttp.StatusNotFound,
		fmt.Sprintf("no network %q; networks: %s", name, c.nets.Names()))
}

// parseCordonRequest reads the request from a JSON body or, without one, the query.
func parseCordonRequest(ctx *fasthttp.RequestCtx, act action) (cordonRequest, *proto.Error) {
	var req cordonRequest
	body := ctx.PostBody()
	switch {
	case len(body) > maxAdminBody:
		return req, badAdminRequest("body over 4 KiB")
	case len(strings.TrimSpace(string(body))) > 0:
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return req, badAdminRequest("body is not the JSON object expected ({\"network\", \"upstream\", \"reason\", \"by\", \"timeout\"}): " + err.Error())
		}
	default:
		q := ctx.QueryArgs()
		req = cordonRequest{Network: string(q.Peek("network")), Upstream: string(q.Peek("upstream")),
			Reason: string(q.Peek("reason")), By: string(q.Peek("by")), Timeout: string(q.Peek("timeout"))}
	}
	switch {
	case req.Upstream == "":
		return req, badAdminRequest("upstream is required (its name, as on /status)")
	case act != actUncordon && strings.TrimSpace(req.Reason) == "":
		return req, badAdminRequest("reason is required: say why (it shows on /status and in the logs)")
	}
	for _, f := range []struct {
		name, v string
		max     int
	}{{"reason", req.Reason, maxReason}, {"by", req.By, maxBy}, {"network", req.Network, maxBy}, {"upstream", req.Upstream, maxBy}} {
		if err := printable(f.v, f.max); err != nil {
			return req, badAdminRequest(f.name + ": " + err.Error())
		}
	}
	if req.Timeout != "" {
		d, err := time.ParseDuration(req.Timeout)
		if act != actDrain || err != nil || d < 0 || d > MaxDrainTimeout {
			return req, badAdminRequest("timeout: a duration up to " + MaxDrainTimeout.String() + " (e.g. 30s), for drain only")
		}
	}
	return req, nil
}

// printable bounds an operator's text: it goes to logs, /status and Redis.
func printable(s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("longer than %d bytes", max)
	}
	if !utf8.ValidString(s) {
		return errors.New("not UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return errors.New("holds a control character")
		}
	}
	return nil
}

func badAdminRequest(msg string) *proto.Error {
	return proto.NewError(proto.CodeInvalidParams, fasthttp.StatusBadRequest, msg)
}
