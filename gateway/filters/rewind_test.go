package filters

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
)

// restart is a node restarted on a chain that went back: it keeps the first keep
// blocks and forgets every other (geth --dev after kill -9 rewinds to the state it had
// written; a fresh --dev chain keeps none): no hash of the blocks after them is known.
func (c *fakeChain) restart(keep int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, b := range c.canon[keep:] {
		delete(c.byHash, b.hash)
	}
	c.canon = c.canon[:keep]
}

// lagging is a view of c that has not seen its last n blocks yet: another upstream of
// the same chain, behind.
func (c *fakeChain) lagging(n int) *fakeChain {
	c.mu.Lock()
	defer c.mu.Unlock()
	return &fakeChain{canon: c.canon[:len(c.canon)-n], byHash: c.byHash, salt: c.salt, calls: map[string]int{}}
}

func pollBlockFilter(t *testing.T, s *Service, up Caller, id string) answer {
	t.Helper()
	return call(t, s, up, "", "eth_getFilterChanges", id)
}

// TestFilterAfterTheChainWentBack: a node restarted on a chain that went back (geth
// --dev's after kill -9, a fresh dev chain, a testnet reset) holds none of the blocks
// a filter delivered. A poll answered [] while the chain climbed back to the delivered
// height (its new logs unsaid), then gave the new chain's logs from the oldest
// delivered height on, the old ones never retracted and the new blocks below it
// skipped. Now the filter is gone ("filter not found", as geth's own after its
// restart) and the client makes a new one; an upstream merely behind, on the same
// chain, still gets [] and the filter stays.
func TestFilterAfterTheChainWentBack(t *testing.T) {
	for _, tc := range []struct {
		name  string
		block bool // a block filter, else a log filter
		climb int  // new blocks after the restart, before the poll
	}{
		{"logs, poll right after the restart, far below the delivered blocks", false, 0},
		{"logs, poll while the chain is below the delivered blocks", false, 2},
		{"logs, poll once the chain is past them again", false, 12},
		{"blocks, poll right after the restart, far below the delivered blocks", true, 0},
		{"blocks, poll while the chain is below the delivered blocks", true, 2},
		{"blocks, poll once the chain is past them again", true, 12},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chain := newFakeChain()
			for range 4 {
				chain.add()
			}
			s := New(testConfig(&fakeClock{now: time.Unix(1e9, 0)}))
			var id string
			if tc.block {
				_ = json.Unmarshal(call(t, s, chain, "", "eth_newBlockFilter").Result, &id)
			} else {
				id = newFilter(t, s, chain, "")
			}
			for _, d := range []string{"0xa", "0xb", "0xc", "0xd", "0xe", "0xf", "0x10"} {
				chain.add(d)
				pollBlockFilter(t, s, chain, id) // one poll per block: a mark each
			}
			// Delivered up to block 11; the node comes back with blocks 0..1 only.
			chain.restart(2)
			for range tc.climb {
				chain.add("0x99")
			}
			a := pollBlockFilter(t, s, chain, id)
			if a.Error == nil || a.Error.Message != "filter not found" {
				t.Fatalf("poll after the chain went back from 11 to 1 and climbed %d: %s %+v, want filter not found", tc.climb, a.Result, a.Error)
			}
			if a := pollBlockFilter(t, s, chain, id); a.Error == nil {
				t.Fatalf("the filter is still there: %s", a.Result)
			}
			if got := string(call(t, s, chain, "", "eth_uninstallFilter", id).Result); got != "false" {
				t.Fatalf("uninstall of the removed filter: %s", got)
			}
		})
	}
}

// TestFilterBehindUpstreamKeepsIt: an upstream of the same chain behind what a filter
// delivered (by at most MaxLag, or down to a delivered block it has) answers nothing
// new, and the filter goes on where it was on the next poll that reaches the head.
func TestFilterBehindUpstreamKeepsIt(t *testing.T) {
	for _, tc := range []struct {
		name  string
		block bool
		lag   int
	}{
		{"logs, behind within max_lag", false, 3},
		{"logs, behind down to a delivered block", false, 7},
		{"blocks, behind down to a delivered block", true, 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chain := newFakeChain()
			s, id := newLaggedFilter(t, chain, tc.block)
			for range 10 {
				chain.add("0x1")
			}
			if a := pollBlockFilter(t, s, chain, id); a.Error != nil {
				t.Fatalf("first poll: %+v", a.Error)
			}
			if tc.lag > 5 { // a delivered block within reach of the lagging upstream
				chain.add("0x2")
				pollBlockFilter(t, s, chain, id)
			}
			a := pollBlockFilter(t, s, chain.lagging(tc.lag), id)
			if a.Error != nil || string(a.Result) != "[]" {
				t.Fatalf("poll through an upstream %d behind: %s %+v, want []", tc.lag, a.Result, a.Error)
			}
			chain.add("0x3")
			a = pollBlockFilter(t, s, chain, id)
			var got []json.RawMessage
			if a.Error != nil || json.Unmarshal(a.Result, &got) != nil || len(got) != 1 {
				t.Fatalf("poll at the head: %s %+v, want the one new block's", a.Result, a.Error)
			}
		})
	}
}

// behindRouter is the router with one upstream behind: the head is read from it, and
// so is a block by number, but a block it does not have yet comes from the upstream
// that does (the router asks a null from an upstream behind its served head of the
// others).
type behindRouter struct{ behind, head *fakeChain }

func (r behindRouter) Call(spare []byte, req *proto.Request, id []byte, deadline time.Time) ([]byte, error) {
	ans, err := r.behind.Call(spare, req, id, deadline)
	if err == nil && string(req.Name) == "eth_getBlockByNumber" && !bytes.Contains(req.Params, []byte("latest")) &&
		string(proto.FirstMember(ans, "result").Bytes(ans)) == "null" {
		return r.head.Call(spare[:0], req, id, deadline)
	}
	return ans, err
}

// TestFilterFarBehindUpstreamKeepsIt: a poll through an upstream more than max_lag
// below every block a filter delivered (a fresh filter's only one is the head it was
// made at) is [] while the network still has those blocks, and the filter goes on at
// the head. It was removed as if the chain had gone back.
func TestFilterFarBehindUpstreamKeepsIt(t *testing.T) {
	for _, tc := range []struct {
		name      string
		block     bool
		delivered bool // polled once at the head before, else fresh
	}{
		{"logs, fresh", false, false},
		{"blocks, fresh", true, false},
		{"logs, after a delivery", false, true},
		{"blocks, after a delivery", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chain := newFakeChain()
			for range 20 {
				chain.add("0x1")
			}
			s, id := newLaggedFilter(t, chain, tc.block)
			lag := 8 // below the creation head by more than max_lag
			if tc.delivered {
				chain.add("0x2")
				if a := pollBlockFilter(t, s, chain, id); a.Error != nil {
					t.Fatalf("poll at the head: %+v", a.Error)
				}
				lag++
			}
			a := pollBlockFilter(t, s, behindRouter{behind: chain.lagging(lag), head: chain}, id)
			if a.Error != nil || string(a.Result) != "[]" {
				t.Fatalf("poll through an upstream %d behind: %s %+v, want []", lag, a.Result, a.Error)
			}
			chain.add("0x3")
			a = pollBlockFilter(t, s, chain, id)
			var got []json.RawMessage
			if a.Error != nil || json.Unmarshal(a.Result, &got) != nil || len(got) != 1 {
				t.Fatalf("poll at the head: %s %+v, want the one new block's", a.Result, a.Error)
			}
		})
	}
}

// newLaggedFilter makes a service whose network allows a lag of 5 blocks, and a block
// filter (block) or a logs filter on chain in it.
func newLaggedFilter(t *testing.T, chain *fakeChain, block bool) (*Service, string) {
	t.Helper()
	cfg := testConfig(&fakeClock{now: time.Unix(1e9, 0)})
	cfg.MaxLag = 5
	s := New(cfg)
	var id string
	if block {
		_ = json.Unmarshal(call(t, s, chain, "", "eth_newBlockFilter").Result, &id)
	} else {
		id = newFilter(t, s, chain, "")
	}
	return s, id
}
