// Methods a provider refuses: a plan without debug_* or trace_*, an allowlist without
// eth_sign. Such a refusal (class method_refused) says nothing of the upstream's other
// methods: it stays healthy and in for them, while this method goes to the upstreams
// that serve it, for methodRefusedFor. An upstream refusing it is still tried as the
// last resort (every upstream refuses it: the client learns so, and a plan that
// changed is seen at once). The names are the clients' to choose: the table is a
// fixed array, its entries bounded in length, the oldest overwritten when it is full.

package upstream

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/proto"
)

// errMethodRefused answers a call every upstream that could take it refused for its
// method. The provider's own text (an upsell, a dashboard URL) never reaches the client.
var errMethodRefused = proto.NewError(proto.CodeMethodNotFound, fasthttp.StatusOK,
	"the method is not available: the upstreams refuse it for the gateway's credentials (their plan or allowlist)")

const (
	// methodRefusedFor is how long an upstream is passed over for a method it refused.
	methodRefusedFor  = 5 * time.Minute
	maxRefusedMethods = 32
	maxRefusedName    = 64 // longer names are not remembered (refused call by call)
)

// methodRefusals are the methods one upstream refused lately.
type methodRefusals struct {
	live    atomic.Int32 // entries in use: 0 on the path of every call
	lastLog atomic.Int64 // Unix nanoseconds of the last log line: one a minute at most
	mu      sync.Mutex
	e       [maxRefusedMethods]refusedMethod
}

type refusedMethod struct {
	until int64 // Unix nanoseconds; 0: free
	n     uint8
	name  [maxRefusedName]byte
}

func (e *refusedMethod) is(name []byte) bool { return string(e.name[:e.n]) == string(name) }

// add remembers that the upstream refused name at now; it reports whether the name
// was new (not already remembered).
func (m *methodRefusals) add(name []byte, now time.Time) bool {
	if len(name) == 0 || len(name) > maxRefusedName {
		return false
	}
	until := now.Add(methodRefusedFor).UnixNano()
	m.mu.Lock()
	defer m.mu.Unlock()
	slot := -1
	for i := range m.e {
		e := &m.e[i]
		switch {
		case e.until != 0 && e.is(name):
			e.until = until
			return false
		case slot < 0 || e.until < m.e[slot].until:
			slot = i // a free entry, else the one due first
		}
	}
	e := &m.e[slot]
	if e.until == 0 {
		m.live.Add(1)
	}
	e.until, e.n = until, uint8(copy(e.name[:], name))
	return true
}

// refuses reports whether the upstream refused name within methodRefusedFor of now.
func (m *methodRefusals) refuses(name []byte) bool {
	if m.live.Load() == 0 {
		return false
	}
	now := time.Now().UnixNano()
	m.mu.Lock()
	defer m.mu.Unlock()
	found := false
	for i := range m.e {
		e := &m.e[i]
		switch {
		case e.until == 0:
		case e.until <= now: // expired: freed, so the table empties and calls skip it
			e.until = 0
			m.live.Add(-1)
		case e.is(name):
			found = true
		}
	}
	return found
}

// list is the names remembered at now, for /status.
func (m *methodRefusals) list(now time.Time) []string {
	if m.live.Load() == 0 {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for i := range m.e {
		if e := &m.e[i]; e.until > now.UnixNano() {
			out = append(out, string(e.name[:e.n]))
		}
	}
	return out
}

// methodRefused notes that u refused req's method: passed over for it from now on.
// A new name is logged, one line a minute at most per upstream (clients choose names).
func (r *Router) methodRefused(u *Upstream, req *proto.Request) {
	now := time.Now()
	m := &u.refusedMethods
	if !m.add(req.Name, now) {
		return
	}
	if last := m.lastLog.Load(); now.UnixNano()-last >= int64(time.Minute) && m.lastLog.CompareAndSwap(last, now.UnixNano()) {
		r.log.Warn("upstream refuses a method for the gateway's credentials: other upstreams take it",
			"upstream", u.spec.Name, "method", string(req.Name), "for", methodRefusedFor.String())
	}
}
