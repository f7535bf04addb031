package pipeline

import (
	"net/netip"

	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/gateway/access"
	"github.com/infura-gateway/infura-gateway/gateway/network"
	"github.com/infura-gateway/infura-gateway/proto"
)

// Origin is where a call came from, for what is kept per client when the call has no
// tenant (keys off, no anonymous limits): its filters. An HTTP request's context,
// whose address is worked out only for a filter call, or a websocket client's address.
type Origin struct {
	Ctx  *fasthttp.RequestCtx
	Addr netip.Addr
}

// serveFilter answers a filter method from the network's own filters (filters/): any
// upstream serves a poll, so the call is not cached nor sent as it is.
func (p *Pipeline) serveFilter(n *network.Network, c *Call) *proto.Error {
	id := c.ID
	if id == nil {
		id = notificationID
	}
	ans, err := n.Filters.Serve(c.Own[:0], c.up, &c.Req, id, p.filterScope(c), c.deadline)
	c.Own = ans
	if err != nil {
		c.Ans = nil
		return asError(err)
	}
	c.Ans = ans
	if c.ID == nil {
		c.Ans = nil // a notification: done, nobody to tell
	}
	return nil
}

// filterScope is whose filters c's are: its tenant's, or, without one, its client
// address block's (an IPv4 address, an IPv6 /64, as anonymous limits count them).
// Without keys every client shared one scope, so one client's 100 filters (the bound
// per scope) refused every other client's for as long as it kept polling them, and
// a filter's id was all another client needed to poll or uninstall it.
func (p *Pipeline) filterScope(c *Call) string {
	if c.Who != nil {
		return c.Who.Scope()
	}
	addr := c.From.Addr
	if !addr.IsValid() && c.From.Ctx != nil {
		addr = p.access.ClientAddr(c.From.Ctx)
	}
	return access.AddrScope(addr)
}
