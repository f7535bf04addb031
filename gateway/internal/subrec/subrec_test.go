package subrec

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
	"github.com/infura-gateway/infura-gateway/gateway/internal/toxiproxy"
)

// fake is a subscription with the given notifications and no socket.
func fake(id string, results ...string) *Sub {
	r := &Recorder{subs: map[string]*Sub{}, done: make(chan struct{})}
	s := &Sub{ID: id, r: r, changed: make(chan struct{})}
	for _, res := range results {
		sub := id
		if strings.HasPrefix(res, "other:") {
			sub, res = "0xother", strings.TrimPrefix(res, "other:")
		}
		s.add(Notification{At: time.Now(), Subscription: sub, Result: json.RawMessage(res)})
	}
	return s
}

func head(n int, hash, parent string) string {
	return fmt.Sprintf(`{"number":"0x%x","hash":"%s","parentHash":"%s"}`, n, hash, parent)
}

func TestCheckHeads(t *testing.T) {
	chain := []string{head(1, "h1", "h0"), head(2, "h2", "h1"), head(3, "h3", "h2")}
	cases := []struct {
		name   string
		heads  []string
		want   string // "" for no error
		reorgs int
	}{
		{"one chain", chain, "", 0},
		{"gap", []string{chain[0], chain[2]}, "gap: head 3 after head 1", 0},
		{"duplicate", []string{chain[0], chain[1], chain[1], chain[2]}, "duplicate: head 2", 0},
		{"other id", []string{chain[0], "other:" + chain[1]}, `carries subscription "0xother"`, 0},
		{"reorg shown", append(chain[:3:3], head(3, "h3b", "h2"), head(4, "h4b", "h3b")), "", 1},
		{"deeper reorg shown", append(chain[:3:3], head(2, "h2b", "h1"), head(3, "h3b", "h2b")), "", 1},
		{"replaced unseen", append(chain[:3:3], head(4, "h4b", "h3b")), "parent h3b is not head 3 h3", 0},
		{"replacement from nowhere", append(chain[:3:3], head(3, "h3b", "hx")), "its parent hx is not a head received", 1},
		{"back below the start", append(chain[:3:3], head(0, "g", "")), "head 0 below the first head 1", 0},
		{"none", nil, "no heads received", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := fake("0xs", c.heads...)
			err := s.CheckHeads()
			if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
				t.Fatalf("CheckHeads = %v, want %q", err, c.want)
			}
			if got := s.Reorgs(); got != c.reorgs {
				t.Fatalf("Reorgs = %d, want %d", got, c.reorgs)
			}
		})
	}
}

func logJSON(block int, hash string, index int, data string, removed bool) string {
	return fmt.Sprintf(`{"address":"0xa","topics":["0xt"],"data":"%s","blockNumber":"0x%x","blockHash":"%s","transactionHash":"0xtx%d%d","transactionIndex":"0x0","logIndex":"0x%x","removed":%v}`,
		data, block, hash, block, index, index, removed)
}

func TestCompareLogs(t *testing.T) {
	l := func(block int, index int) string {
		return logJSON(block, fmt.Sprintf("b%d", block), index, "0x01", false)
	}
	parse := func(results ...string) []Log {
		var out []Log
		for _, r := range results {
			x, err := decodeLog(json.RawMessage(r))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, x)
		}
		return out
	}
	node := parse(l(1, 0), l(1, 1), l(2, 0))
	cases := []struct {
		name string
		got  []string
		want string
	}{
		{"same", []string{l(1, 0), l(1, 1), l(2, 0)}, ""},
		{"missing", []string{l(1, 0), l(2, 0)}, "missing: block 1 b1 log 1"},
		{"extra", []string{l(1, 0), l(1, 1), l(2, 0), l(2, 1)}, "extra (not in the node's logs): block 2 b2 log 1"},
		{"duplicate", []string{l(1, 0), l(1, 1), l(1, 1), l(2, 0)}, "duplicate: block 1 b1 log 1"},
		{"out of order", []string{l(1, 0), l(2, 0), l(1, 1)}, "out of order: block 1 b1 log 1 tx 0xtx11 data 0x01 after block 2"},
		{"removed and sent again", []string{l(1, 0), l(1, 1), logJSON(1, "b1", 1, "0x01", true), l(1, 1), l(2, 0)}, ""},
		{"removal of nothing", []string{l(1, 0), l(1, 1), logJSON(2, "b2", 5, "0x01", true), l(2, 0)}, "removal of a log never received"},
		{"other data", []string{l(1, 0), logJSON(1, "b1", 1, "0x02", false), l(2, 0)}, "differs: received block 1 b1 log 1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := fake("0xs", c.got...)
			var p problems
			compareLogs(&p, s.received(&p), node)
			err := p.err("logs")
			if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
}

// Against a real geth: heads and logs of the emitter contract, several logs per block,
// are recorded on one socket and pass every check against the node's own chain and
// eth_getLogs; a range reaching before the subscription shows its missing log.
func TestRecorderAgainstGeth(t *testing.T) {
	node := testnode.Start(t)
	addr := node.DeployEmitter(t)
	_, before := node.Emit(t, addr) // Tick(1), before anyone subscribed

	rec := Dial(t, node.WSURL)
	heads := rec.NewHeads(t)
	logs := rec.Logs(t, Filter{Address: addr, Topics: [][]string{{testnode.EmitterTopic}}})
	if heads.ID == logs.ID || heads.ID == "" {
		t.Fatalf("subscription ids %q, %q", heads.ID, logs.ID)
	}
	e := node.StartEmitter(t, addr, 150*time.Millisecond, 2)
	start := node.BlockNumber(t)
	heads.WaitHead(t, start+5, time.Minute)
	res := e.Stop()
	if len(res.Errors) > 0 {
		t.Fatalf("emitter: %v", res.Errors)
	}
	logs.WaitLogBlock(t, res.LastBlock, time.Minute)
	heads.WaitHead(t, res.LastBlock, time.Minute)
	if res, err := rec.Call("eth_chainId"); err != nil || string(res) != `"0x539"` {
		t.Fatalf("Call on the recorder's socket: %s %v", res, err)
	}

	if err := heads.CheckHeadsOnChain(node.HTTPURL); err != nil {
		t.Fatal(err)
	}
	from, to := logs.LogRange()
	if to != res.LastBlock || from <= before {
		t.Fatalf("logs in blocks %d..%d; emitter's last block %d, the log before subscribing in %d", from, to, res.LastBlock, before)
	}
	if err := logs.CheckLogs(node.HTTPURL, from, to); err != nil {
		t.Fatal(err)
	}
	got := logs.Logs()
	if len(got) != res.Sent {
		t.Fatalf("%d logs for %d emits", len(got), res.Sent)
	}
	for i, l := range got {
		if c, err := testnode.TickCounter(l.Data); err != nil || c != uint64(i+2) {
			t.Fatalf("log %d: counter %d (%v), want %d", i, c, err, i+2)
		}
	}
	perBlock := map[uint64]int{}
	for _, l := range got {
		perBlock[l.BlockNumber]++
	}
	if len(perBlock) == len(got) {
		t.Fatalf("no block with two logs: %v", perBlock)
	}
	// The range reaching back to the emit before the subscription: that log is missing.
	if err := logs.CheckLogs(node.HTTPURL, before, to); err == nil || !strings.Contains(err.Error(), "missing: block") {
		t.Fatalf("CheckLogs from block %d = %v, want the log before subscribing missing", before, err)
	}
	heads.Unsubscribe(t)
	rec.Close()
	if err := rec.Err(); err != nil {
		t.Fatalf("Close is not a loss: %v", err)
	}
}

// Through a toxiproxy proxy: notifications keep their order under latency; a proxy
// going down is recorded as the socket's loss, which the checks and waits report.
func TestRecorderThroughProxy(t *testing.T) {
	node := testnode.Start(t)
	p := toxiproxy.Start(t).NewProxy(t, "ws", node.WSURL)
	rec := Dial(t, p.URL("ws"))
	heads := rec.NewHeads(t)
	h := node.BlockNumber(t)
	heads.WaitHead(t, h+2, time.Minute)
	p.Latency(300, 100)
	heads.WaitHead(t, h+4, time.Minute)
	p.Clear()
	heads.WaitHead(t, h+5, time.Minute)
	if err := heads.CheckHeadsOnChain(node.HTTPURL); err != nil {
		t.Fatal(err)
	}

	p.Down()
	last := heads.Heads()[len(heads.Heads())-1].Number
	if err := heads.Wait(time.Minute, func([]Notification) bool { return false }); err == nil || !strings.Contains(err.Error(), "socket closed") {
		t.Fatalf("Wait after the proxy went down = %v", err)
	}
	if err := rec.Err(); err == nil {
		t.Fatal("no loss recorded")
	}
	if err := heads.CheckHeads(); err == nil || !strings.Contains(err.Error(), "the socket closed") {
		t.Fatalf("CheckHeads after the loss = %v", err)
	}
	if _, err := rec.Call("eth_blockNumber"); err == nil {
		t.Fatal("Call on a lost socket succeeded")
	}
	if got := heads.Heads(); got[len(got)-1].Number != last {
		t.Fatalf("heads after the loss: %d, then %d", last, got[len(got)-1].Number)
	}
}
