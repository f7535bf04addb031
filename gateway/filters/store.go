package filters

import (
	"bytes"
	"context"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/clientip"
	"github.com/infura-gateway/infura-gateway/proto"
)

// store keeps filter states (JSON blobs) with their expiry and bounds: in the process
// (memStore) or in Redis (redisStore), the same rules either way.
type store interface {
	// room refuses (an *rpcError) a filter of scope the count bounds refuse already,
	// before its head is read upstream; create checks again, with the bytes.
	room(ctx context.Context, scope string) error
	// create adds filter id of scope, or refuses past a bound (an *rpcError).
	create(ctx context.Context, id, scope string, blob []byte) error
	// load returns the filter's blob; nil when there is none (unknown, expired).
	load(ctx context.Context, id string) ([]byte, error)
	// save replaces old with blob and restarts the filter's expiry, unless another
	// call changed it since old was loaded (changed) or it is gone.
	save(ctx context.Context, id, scope string, old, blob []byte) (result, error)
	// remove deletes the filter if it still holds old.
	remove(ctx context.Context, id, scope string, old []byte) (result, error)
}

type result uint8

const (
	saved result = iota
	changed
	gone
)

// Refusals past the bounds: clear, and not the upstream's fault.
func (s *Service) errPerTenant() *rpcError {
	return &rpcError{code: proto.CodeLimitExceeded, msg: "too many filters: at most " + strconv.Itoa(s.cfg.MaxPerTenant) +
		" per API key or client on this network; uninstall one (eth_uninstallFilter) or let one expire"}
}

func (s *Service) errPer48() *rpcError {
	return &rpcError{code: proto.CodeLimitExceeded, msg: "too many filters: at most " + strconv.Itoa(block48Factor*s.cfg.MaxPerTenant) +
		" per IPv6 /48 on this network (its clients together); uninstall one (eth_uninstallFilter) or let one expire"}
}

// block48Factor: the anonymous clients of one IPv6 /48 hold at most this many times the
// per-client bound together, as the anonymous limits count a /48 (16 /64s' worth by
// default): a client holds a /48 as easily as a /64, and its /64s would otherwise fill
// the network's table (MaxTotal), shutting every other client out.
const block48Factor = 16

// aggScope is the scope an anonymous IPv6 client's filters also count in, its /48
// ("anon48:2001:db8:1::/48"); "" for any other scope (keys, IPv4).
func aggScope(scope string) string {
	rest, ok := strings.CutPrefix(scope, "anon:")
	if !ok {
		return ""
	}
	p, err := netip.ParsePrefix(rest)
	if err != nil || p.Bits() < 48 {
		return ""
	}
	site, six := clientip.Site(p.Addr())
	if !six {
		return ""
	}
	return "anon48:" + netip.PrefixFrom(site, 48).String()
}

func (s *Service) errTotal() *rpcError {
	return &rpcError{code: proto.CodeLimitExceeded, msg: "too many filters on this network (at most " +
		strconv.Itoa(s.cfg.MaxTotal) + "), retry later"}
}

func (s *Service) errBytes() *rpcError {
	return &rpcError{code: proto.CodeLimitExceeded, msg: "filter state over its budget on this network (" +
		strconv.FormatInt(s.cfg.MaxBytes, 10) + " bytes), retry later"}
}

// memStore keeps filters in the process.
type memStore struct {
	cfg      Config
	svc      *Service
	mu       sync.Mutex
	m        map[string]*memEntry
	perScope map[string]int
	bytes    int64
	onExpire func(id string) // called without the lock held
}

type memEntry struct {
	scope string
	blob  []byte
	exp   time.Time
}

func newMemStore(cfg Config) *memStore {
	return &memStore{cfg: cfg, m: map[string]*memEntry{}, perScope: map[string]int{}}
}

func (m *memStore) deleteLocked(id string, e *memEntry) {
	delete(m.m, id)
	m.bytes -= int64(len(e.blob))
	for _, sc := range [2]string{e.scope, aggScope(e.scope)} {
		if sc == "" {
			continue
		}
		if m.perScope[sc]--; m.perScope[sc] <= 0 {
			delete(m.perScope, sc)
		}
	}
}

// purge removes the expired filters.
func (m *memStore) purge() {
	now := m.cfg.Now()
	var ids []string
	m.mu.Lock()
	for id, e := range m.m {
		if !now.Before(e.exp) {
			m.deleteLocked(id, e)
			ids = append(ids, id)
		}
	}
	m.mu.Unlock()
	if m.onExpire != nil {
		for _, id := range ids {
			m.onExpire(id)
		}
	}
}

func (m *memStore) room(_ context.Context, scope string) error {
	m.purge()
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.full(scope)
}

// full is the count bound one more filter of scope would pass, nil if none. Under m.mu.
func (m *memStore) full(scope string) error {
	switch {
	case len(m.m) >= m.cfg.MaxTotal:
		return m.svc.errTotal()
	case m.perScope[scope] >= m.cfg.MaxPerTenant:
		return m.svc.errPerTenant()
	}
	if agg := aggScope(scope); agg != "" && m.perScope[agg] >= block48Factor*m.cfg.MaxPerTenant {
		return m.svc.errPer48()
	}
	return nil
}

func (m *memStore) create(_ context.Context, id, scope string, blob []byte) error {
	m.purge()
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.full(scope); err != nil {
		return err
	}
	if m.bytes+int64(len(blob)) > m.cfg.MaxBytes {
		return m.svc.errBytes()
	}
	m.m[id] = &memEntry{scope: scope, blob: blob, exp: m.cfg.Now().Add(m.cfg.Timeout)}
	m.perScope[scope]++
	if agg := aggScope(scope); agg != "" {
		m.perScope[agg]++
	}
	m.bytes += int64(len(blob))
	return nil
}

func (m *memStore) load(_ context.Context, id string) ([]byte, error) {
	m.mu.Lock()
	e := m.m[id]
	if e != nil && !m.cfg.Now().Before(e.exp) {
		m.deleteLocked(id, e)
		m.mu.Unlock()
		if m.onExpire != nil {
			m.onExpire(id)
		}
		return nil, nil
	}
	m.mu.Unlock()
	if e == nil {
		return nil, nil
	}
	return e.blob, nil
}

func (m *memStore) save(_ context.Context, id, _ string, old, blob []byte) (result, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.m[id]
	switch {
	case e == nil || !m.cfg.Now().Before(e.exp):
		return gone, nil
	case !bytes.Equal(e.blob, old):
		return changed, nil
	case len(blob) > len(old) && m.bytes+int64(len(blob)-len(old)) > m.cfg.MaxBytes:
		return gone, m.svc.errBytes()
	}
	m.bytes += int64(len(blob) - len(e.blob))
	e.blob, e.exp = blob, m.cfg.Now().Add(m.cfg.Timeout)
	return saved, nil
}

func (m *memStore) remove(_ context.Context, id, _ string, old []byte) (result, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.m[id]
	switch {
	case e == nil:
		return gone, nil
	case !bytes.Equal(e.blob, old):
		return changed, nil
	}
	m.deleteLocked(id, e)
	return saved, nil
}
