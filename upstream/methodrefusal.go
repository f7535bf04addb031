// Methods a provider refuses: a plan without debug_* or trace_*, an allowlist without
// eth_sign. Such a refusal (class method_refused) says nothing of the upstream's other
// methods: it stays healthy and in for them, while this method goes to the upstreams
// that serve it, for methodRefusedFor. An upstream refusing it is still tried as the
// last resort (every upstream refuses it: the client learns so, and a plan that
// changed is seen at once). The names are the clients' to choose: the set is
// bounded in number and in each name's length, the one due first dropped when it is full.

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

// methodRefusals are the methods one upstream refused lately. Every pick reads them
// for every candidate upstream: the read is a pointer load and, while names are kept,
// a scan of at most maxRefusedMethods strings with no lock and no clock read (the
// clock only on a match). Writers (a refusal, rare) copy the set under mu and swap it.
type methodRefusals struct {
	set     atomic.Pointer[[]refusedMethod] // nil: none
	lastLog atomic.Int64                    // Unix nanoseconds of the last log line: one a minute at most
	mu      sync.Mutex                      // writers
}

type refusedMethod struct {
	name  string
	until int64 // Unix nanoseconds
}

// live is how many names are kept (expired ones until pruned).
func (m *methodRefusals) live() int {
	if p := m.set.Load(); p != nil {
		return len(*p)
	}
	return 0
}

// add remembers that the upstream refused name at now; it reports whether the name
// was new (not already remembered). Expired names are dropped; when the set is full,
// the one due first makes room.
func (m *methodRefusals) add(name []byte, now time.Time) bool {
	if len(name) == 0 || len(name) > maxRefusedName {
		return false
	}
	until := now.Add(methodRefusedFor).UnixNano()
	m.mu.Lock()
	defer m.mu.Unlock()
	next := make([]refusedMethod, 0, maxRefusedMethods)
	isNew := true
	if p := m.set.Load(); p != nil {
		for _, e := range *p {
			switch {
			case e.name == string(name):
				e.until, isNew = until, false
			case e.until <= now.UnixNano():
				continue
			}
			next = append(next, e)
		}
	}
	if isNew {
		if len(next) == maxRefusedMethods {
			first := 0
			for i := range next {
				if next[i].until < next[first].until {
					first = i
				}
			}
			next = append(next[:first], next[first+1:]...)
		}
		next = append(next, refusedMethod{name: string(name), until: until})
	}
	m.set.Store(&next)
	return isNew
}

// refuses reports whether the upstream refused name within methodRefusedFor. A
// name found expired is pruned, so the set empties and picks skip the scan.
func (m *methodRefusals) refuses(name []byte) bool {
	p := m.set.Load()
	if p == nil {
		return false
	}
	for _, e := range *p {
		if e.name == string(name) {
			if e.until > time.Now().UnixNano() {
				return true
			}
			m.prune()
			return false
		}
	}
	return false
}

// prune drops the expired names.
func (m *methodRefusals) prune() {
	now := time.Now().UnixNano()
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.set.Load()
	if p == nil {
		return
	}
	var next []refusedMethod
	for _, e := range *p {
		if e.until > now {
			next = append(next, e)
		}
	}
	if len(next) == 0 {
		m.set.Store(nil)
		return
	}
	m.set.Store(&next)
}

// list is the names kept at now, for /status.
func (m *methodRefusals) list(now time.Time) []string {
	p := m.set.Load()
	if p == nil {
		return nil
	}
	var out []string
	for _, e := range *p {
		if e.until > now.UnixNano() {
			out = append(out, e.name)
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
