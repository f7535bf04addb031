package filters

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
)

// fakeChain is an upstream whose chain a test writes, reorgs included (geth --dev does
// not reorg): eth_getBlockByNumber and eth_getLogs, by range on the canonical chain or
// by the hash of any block it ever had.
type fakeChain struct {
	mu     sync.Mutex
	canon  []*fakeBlock // by number
	byHash map[string]*fakeBlock
	salt   int
	calls  map[string]int
}

type fakeBlock struct {
	num  uint64
	hash string
	logs []string // data of each log
}

func newFakeChain() *fakeChain {
	c := &fakeChain{byHash: map[string]*fakeBlock{}, calls: map[string]int{}}
	c.add()
	return c
}

// add appends a block with logs carrying data.
func (c *fakeChain) add(data ...string) *fakeBlock {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.salt++
	b := &fakeBlock{num: uint64(len(c.canon)), hash: fmt.Sprintf("0x%064x", c.salt), logs: data}
	c.canon = append(c.canon, b)
	c.byHash[b.hash] = b
	return b
}

// count is how many calls of method the chain was asked.
func (c *fakeChain) count(method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[method]
}

// reorg drops the last n blocks (a node keeps them by hash).
func (c *fakeChain) reorg(n int) {
	c.mu.Lock()
	c.canon = c.canon[:len(c.canon)-n]
	c.mu.Unlock()
}

const fakeAddress = "0x00000000000000000000000000000000000000aa"

func (b *fakeBlock) logJSON(i int) string {
	return fmt.Sprintf(`{"address":"%s","topics":[],"data":"%s","blockNumber":"0x%x","transactionHash":"0x%064x","transactionIndex":"0x0","blockHash":"%s","logIndex":"0x%x","removed":false}`,
		fakeAddress, b.logs[i], b.num, b.num*100+uint64(i), b.hash, i)
}

func (c *fakeChain) Call(spare []byte, r *proto.Request, id []byte, _ time.Time) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls[string(r.Name)]++
	var params []json.RawMessage
	_ = json.Unmarshal(r.Params, &params)
	result := "null"
	switch string(r.Name) {
	case "eth_getBlockByNumber":
		var tag string
		_ = json.Unmarshal(params[0], &tag)
		n := uint64(len(c.canon) - 1)
		if tag != "latest" {
			n, _ = proto.ParseQuantity([]byte(`"` + tag + `"`))
		}
		if n < uint64(len(c.canon)) {
			b := c.canon[n]
			result = fmt.Sprintf(`{"number":"0x%x","hash":"%s"}`, b.num, b.hash)
		}
	case "eth_getLogs":
		var q struct{ FromBlock, ToBlock, BlockHash string }
		_ = json.Unmarshal(params[0], &q)
		var blocks []*fakeBlock
		if q.BlockHash != "" {
			b := c.byHash[q.BlockHash]
			if b == nil { // as geth answers a hash it does not have
				return append(spare, `{"jsonrpc":"2.0","id":`+string(id)+`,"error":{"code":-32000,"message":"unknown block"}}`...), nil
			}
			blocks = append(blocks, b)
		} else {
			from, _ := proto.ParseQuantity([]byte(`"` + q.FromBlock + `"`))
			to, _ := proto.ParseQuantity([]byte(`"` + q.ToBlock + `"`))
			for n := from; n <= to && n < uint64(len(c.canon)); n++ {
				blocks = append(blocks, c.canon[n])
			}
		}
		var logs []string
		for _, b := range blocks {
			for i := range b.logs {
				logs = append(logs, b.logJSON(i))
			}
		}
		result = "[" + strings.Join(logs, ",") + "]"
	default:
		return spare, proto.ErrMethodNotFound
	}
	return append(spare, `{"jsonrpc":"2.0","id":`+string(id)+`,"result":`+result+`}`...), nil
}

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func testConfig(clock *fakeClock) Config {
	c := Config{Network: "test", Timeout: 5 * time.Minute, MaxPerTenant: 100, MaxTotal: 1000, MaxBytes: 1 << 20,
		MaxResponse: 1 << 20, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: time.Now}
	if clock != nil {
		c.Now = clock.Now
	}
	return c
}

// answer is a decoded JSON-RPC answer.
type answer struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func call(t *testing.T, s *Service, up Caller, scope, method string, params ...any) answer {
	t.Helper()
	a, err := tryCall(s, up, scope, method, params...)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	return a
}

// tryCall is call for goroutines other than the test's: the error is returned, not
// reported (Fatalf must not be called from them).
func tryCall(s *Service, up Caller, scope, method string, params ...any) (answer, error) {
	if params == nil {
		params = []any{}
	}
	p, _ := json.Marshal(params)
	var r proto.Request
	r.Set([]byte(method), p)
	out, err := s.Serve(nil, up, &r, []byte("9"), scope, time.Now().Add(10*time.Second))
	if err != nil {
		return answer{}, err
	}
	var a answer
	if err := json.Unmarshal(out, &a); err != nil {
		return answer{}, fmt.Errorf("%s: %v", out, err)
	}
	return a, nil
}

func newFilter(t *testing.T, s *Service, up Caller, scope string) string {
	t.Helper()
	a := call(t, s, up, scope, "eth_newFilter", map[string]any{"address": fakeAddress})
	if a.Error != nil {
		t.Fatalf("eth_newFilter: %+v", a.Error)
	}
	var id string
	_ = json.Unmarshal(a.Result, &id)
	return id
}

type polledLog struct {
	Data        string `json:"data"`
	BlockNumber string `json:"blockNumber"`
	Removed     bool   `json:"removed"`
}

func pollLogs(t *testing.T, s *Service, up Caller, scope, id string) []polledLog {
	t.Helper()
	a := call(t, s, up, scope, "eth_getFilterChanges", id)
	if a.Error != nil {
		t.Fatalf("eth_getFilterChanges: %+v", a.Error)
	}
	var logs []polledLog
	if err := json.Unmarshal(a.Result, &logs); err != nil {
		t.Fatalf("%s: %v", a.Result, err)
	}
	return logs
}

func describe(logs []polledLog) string {
	var parts []string
	for _, l := range logs {
		s := l.Data + "@" + l.BlockNumber
		if l.Removed {
			s += "(removed)"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

// TestReorgYieldsRemovedLogs: blocks delivered by one poll that leave the chain before
// the next give their logs again with removed: true, then the new chain's logs, as a
// node's filter does.
func TestReorgYieldsRemovedLogs(t *testing.T) {
	for _, tc := range []struct {
		name  string
		drop  int      // blocks the reorg drops
		again []string // the new chain's logs, one block each ("" none)
		want  string
	}{
		{"one block replaced", 1, []string{"0xc"}, "0xb@0x2(removed) 0xc@0x2"},
		// Removed logs come oldest block first, as geth sends a reorg's.
		{"two blocks replaced by three", 2, []string{"", "0xc", "0xd"}, "0xa@0x1(removed) 0xb@0x2(removed) 0xc@0x2 0xd@0x3"},
		{"no reorg", 0, []string{"0xc"}, "0xc@0x3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chain := newFakeChain()
			s := New(testConfig(&fakeClock{now: time.Unix(1e9, 0)}))
			id := newFilter(t, s, chain, "")
			chain.add("0xa")
			chain.add("0xb")
			if got := describe(pollLogs(t, s, chain, "", id)); got != "0xa@0x1 0xb@0x2" {
				t.Fatalf("first poll: %s", got)
			}
			chain.reorg(tc.drop)
			for _, d := range tc.again {
				if d == "" {
					chain.add()
				} else {
					chain.add(d)
				}
			}
			got := describe(pollLogs(t, s, chain, "", id))
			if got != tc.want {
				t.Fatalf("after the reorg: %s, want %s", got, tc.want)
			}
			if got := describe(pollLogs(t, s, chain, "", id)); got != "" {
				t.Fatalf("third poll: %s, want nothing", got)
			}
		})
	}
}

// TestBlockFilterReorg: a block filter answers the hashes of the new chain from the
// common ancestor on.
func TestBlockFilterReorg(t *testing.T) {
	chain := newFakeChain()
	s := New(testConfig(&fakeClock{now: time.Unix(1e9, 0)}))
	a := call(t, s, chain, "", "eth_newBlockFilter")
	var id string
	_ = json.Unmarshal(a.Result, &id)
	b1, b2 := chain.add(), chain.add()
	if got := string(call(t, s, chain, "", "eth_getFilterChanges", id).Result); got != `["`+b1.hash+`","`+b2.hash+`"]` {
		t.Fatalf("first poll: %s", got)
	}
	chain.reorg(1)
	c2, c3 := chain.add(), chain.add()
	if got := string(call(t, s, chain, "", "eth_getFilterChanges", id).Result); got != `["`+c2.hash+`","`+c3.hash+`"]` {
		t.Fatalf("after the reorg: %s", got)
	}
	if got := string(call(t, s, chain, "", "eth_getFilterChanges", id).Result); got != `[]` {
		t.Fatalf("third poll: %s", got)
	}
	// A poll after many blocks: every hash, in order (fetched several at a time).
	var want []string
	for range 50 {
		want = append(want, chain.add().hash)
	}
	var got []string
	_ = json.Unmarshal(call(t, s, chain, "", "eth_getFilterChanges", id).Result, &got)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("after 50 blocks: %d hashes %v", len(got), got)
	}
}

// TestFilterExpiry: a filter polled within the timeout lives on; one left unpolled for
// the timeout is gone ("filter not found"), as in geth.
func TestFilterExpiry(t *testing.T) {
	chain := newFakeChain()
	clock := &fakeClock{now: time.Unix(1e9, 0)}
	s := New(testConfig(clock))
	id := newFilter(t, s, chain, "")
	for range 3 {
		clock.Add(4 * time.Minute)
		pollLogs(t, s, chain, "", id) // each poll restarts the timeout
	}
	clock.Add(5*time.Minute + time.Second)
	a := call(t, s, chain, "", "eth_getFilterChanges", id)
	if a.Error == nil || a.Error.Code != -32000 || a.Error.Message != "filter not found" {
		t.Fatalf("expired filter: %s %+v", a.Result, a.Error)
	}
	if got := string(call(t, s, chain, "", "eth_uninstallFilter", id).Result); got != "false" {
		t.Fatalf("uninstall of an expired filter: %s", got)
	}
}

// storeCase runs a test on the in-process store and, when a test supplies one, on
// Redis (redis_test.go).
var storeCases = []struct {
	name string
	cfg  func(t *testing.T, c Config) Config
}{
	{"memory", func(_ *testing.T, c Config) Config { return c }},
	{"redis", withRedis},
}

// TestFilterLimits: past the bounds per tenant, in total and in bytes a new filter is
// refused with a clear -32005; an uninstall makes room.
func TestFilterLimits(t *testing.T) {
	for _, sc := range storeCases {
		t.Run(sc.name, func(t *testing.T) {
			chain := newFakeChain()
			cfg := testConfig(&fakeClock{now: time.Now()})
			cfg.MaxPerTenant, cfg.MaxTotal = 2, 3
			cfg = sc.cfg(t, cfg)
			s := New(cfg)
			a1 := newFilter(t, s, chain, "key:a")
			newFilter(t, s, chain, "key:a")
			refused := func(scope, want string) {
				t.Helper()
				heads := chain.count("eth_getBlockByNumber")
				a := call(t, s, chain, scope, "eth_newFilter", map[string]any{"address": fakeAddress})
				if a.Error == nil || a.Error.Code != -32005 || !strings.Contains(a.Error.Message, want) {
					t.Fatalf("%s: %s %+v, want -32005 %q", scope, a.Result, a.Error, want)
				}
				// Refused before the head is read: a batch of refused filters costs the
				// upstream nothing.
				if n := chain.count("eth_getBlockByNumber") - heads; n != 0 {
					t.Errorf("%s: a refused eth_newFilter made %d upstream calls", scope, n)
				}
			}
			refused("key:a", "at most 2 per API key")
			newFilter(t, s, chain, "key:b")
			refused("key:c", "too many filters on this network (at most 3)")
			if got := string(call(t, s, chain, "key:a", "eth_uninstallFilter", a1).Result); got != "true" {
				t.Fatalf("uninstall: %s", got)
			}
			newFilter(t, s, chain, "key:c")
		})
	}
	t.Run("bytes", func(t *testing.T) {
		chain := newFakeChain()
		cfg := testConfig(&fakeClock{now: time.Now()})
		cfg.MaxBytes = 300 // one filter's state is about 150 bytes
		s := New(cfg)
		newFilter(t, s, chain, "")
		a := call(t, s, chain, "", "eth_newFilter", map[string]any{"address": fakeAddress})
		if a.Error == nil || a.Error.Code != -32005 || !strings.Contains(a.Error.Message, "300 bytes") {
			t.Fatalf("over the bytes: %s %+v", a.Result, a.Error)
		}
	})
}

// TestFilterScope: another tenant cannot poll, read or uninstall a filter: it is
// unknown to it, as an id that never existed; an id of the wrong shape too.
func TestFilterScope(t *testing.T) {
	for _, sc := range storeCases {
		t.Run(sc.name, func(t *testing.T) {
			chain := newFakeChain()
			s := New(sc.cfg(t, testConfig(&fakeClock{now: time.Now()})))
			id := newFilter(t, s, chain, "key:a")
			for _, tc := range []struct{ scope, id string }{
				{"key:b", id}, {"", id}, {"key:a", "0x1234"}, {"key:a", "banana"}, {"key:a", id + "0"},
			} {
				for _, m := range []string{"eth_getFilterChanges", "eth_getFilterLogs"} {
					a := call(t, s, chain, tc.scope, m, tc.id)
					if a.Error == nil || a.Error.Message != "filter not found" {
						t.Fatalf("%s of %s by %q: %s %+v", m, tc.id, tc.scope, a.Result, a.Error)
					}
				}
				if got := string(call(t, s, chain, tc.scope, "eth_uninstallFilter", tc.id).Result); got != "false" {
					t.Fatalf("uninstall of %s by %q: %s", tc.id, tc.scope, got)
				}
			}
			if a := call(t, s, chain, "key:a", "eth_getFilterChanges", 12); a.Error == nil || a.Error.Code != -32602 {
				t.Fatalf("a number as the id: %+v", a.Error)
			}
			chain.add("0x1")
			if got := describe(pollLogs(t, s, chain, "key:a", id)); got != "0x1@0x1" {
				t.Fatalf("the owner's poll: %s", got)
			}
		})
	}
}

// TestPollOverResponseBudget: changes larger than the response budget are refused
// clearly, and the filter stays where it was (nothing is skipped).
func TestPollOverResponseBudget(t *testing.T) {
	chain := newFakeChain()
	cfg := testConfig(&fakeClock{now: time.Now()})
	cfg.MaxResponse = 1000 // about three logs
	s := New(cfg)
	id := newFilter(t, s, chain, "")
	chain.add("0x1", "0x2", "0x3", "0x4", "0x5")
	for range 2 {
		a := call(t, s, chain, "", "eth_getFilterChanges", id)
		if a.Error == nil || a.Error.Code != -32005 || !strings.Contains(a.Error.Message, "response size limit (1000 bytes)") {
			t.Fatalf("over the budget: %.100s %+v", a.Result, a.Error)
		}
	}
	s.cfg.MaxResponse = 1 << 20
	if got := describe(pollLogs(t, s, chain, "", id)); got != "0x1@0x1 0x2@0x1 0x3@0x1 0x4@0x1 0x5@0x1" {
		t.Fatalf("with room: %s", got)
	}
}

// TestPendingFilterWithoutWebsocket: without a websocket upstream the pending filter is
// refused with a clear error.
func TestPendingFilterWithoutWebsocket(t *testing.T) {
	s := New(testConfig(&fakeClock{now: time.Now()}))
	a := call(t, s, newFakeChain(), "", "eth_newPendingTransactionFilter")
	if a.Error == nil || a.Error.Code != -32601 || !strings.Contains(a.Error.Message, "websocket upstream") {
		t.Fatalf("%s %+v", a.Result, a.Error)
	}
}

// FuzzParseCriteria: any params are accepted or refused without a panic, and accepted
// criteria make eth_getLogs params that are JSON and read back the same.
func FuzzParseCriteria(f *testing.F) {
	for _, s := range []string{
		`[{"address":"0x00000000000000000000000000000000000000aa"}]`,
		`[{"fromBlock":"0x1","toBlock":"latest","topics":[null,["0x` + strings.Repeat("ab", 32) + `",null]]}]`,
		`[{"blockHash":"0x` + strings.Repeat("cd", 32) + `","address":[]}]`,
		`[{"fromBlock":"earliest","toBlock":"0x0"}]`, `[{}]`, `[]`, `[1]`, `[{"topics":[1]}]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, params []byte) {
		c, err := parseCriteria(params)
		if err != nil {
			return
		}
		_ = c.check()
		for _, q := range [][]byte{c.logsQuery(1, 2, ""), c.filterLogsQuery()} {
			if !json.Valid(q) {
				t.Fatalf("%s: query %s is not JSON", params, q)
			}
		}
		again, err := parseCriteria(c.filterLogsQuery())
		if err != nil {
			t.Fatalf("%s: own query %s refused: %v", params, c.filterLogsQuery(), err)
		}
		a, _ := json.Marshal(c)
		b, _ := json.Marshal(again)
		if string(a) != string(b) {
			t.Fatalf("%s: read back %s, want %s", params, b, a)
		}
	})
}
