package subrec

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
)

// maxReported bounds the problems a check lists.
const maxReported = 10

type problems struct {
	list  []string
	count int
}

func (p *problems) add(format string, args ...any) {
	p.count++
	if len(p.list) < maxReported {
		p.list = append(p.list, fmt.Sprintf(format, args...))
	}
}

func (p *problems) err(what string) error {
	if p.count == 0 {
		return nil
	}
	s := fmt.Sprintf("%s: %d problems:\n  %s", what, p.count, strings.Join(p.list, "\n  "))
	if p.count > len(p.list) {
		s += fmt.Sprintf("\n  ... %d more", p.count-len(p.list))
	}
	return errors.New(s)
}

// common checks what every subscription must show: its socket still open and every
// notification on its id.
func (s *Sub) common(p *problems) {
	if err := s.r.Err(); err != nil {
		p.add("the socket closed: %v", err)
	}
	for _, n := range s.Notifications() {
		if n.Subscription != s.ID {
			p.add("notification at %s carries subscription %q, not %q", n.At.Format("15:04:05.000"), n.Subscription, s.ID)
		}
	}
	for _, n := range s.r.Unknown() {
		p.add("message for no subscription of this socket at %s (subscription %q): %.200s", n.At.Format("15:04:05.000"), n.Subscription, n.Result)
	}
}

// CheckHeads checks a newHeads subscription: the socket stayed open, every
// notification carries the subscription's id, and the heads form one chain: each
// number once, in order, each head's parentHash the hash of the head before it. A head
// may repeat a number only as a reorg the hashes show: a different hash whose parent is
// the head received for the number below (the chain then continues from it). A gap, a
// duplicate, or a head whose parent was never received is an error. It returns nil or
// an error listing the first problems.
func (s *Sub) CheckHeads() error {
	var p problems
	s.common(&p)
	chain, _ := s.headChain(&p)
	if len(chain) == 0 {
		p.add("no heads received")
	}
	return p.err(fmt.Sprintf("newHeads %s", s.ID))
}

// Reorgs returns how many times the heads went back to a lower or equal number (with
// hashes that show a reorg).
func (s *Sub) Reorgs() int {
	_, n := s.headChain(&problems{})
	return n
}

// headChain walks the notifications and returns the chain of heads as it stands at
// the end, and the number of reorgs.
func (s *Sub) headChain(p *problems) ([]Head, int) {
	var chain []Head
	reorgs := 0
	for _, n := range s.Notifications() {
		h, err := parseHead(n)
		if err != nil {
			p.add("%v", err)
			continue
		}
		if len(chain) == 0 {
			chain = append(chain, h)
			continue
		}
		last := chain[len(chain)-1]
		switch {
		case h.Number == last.Number+1:
			if h.ParentHash != last.Hash {
				p.add("head %d %s: parent %s is not head %d %s (a block missing or replaced unseen)",
					h.Number, h.Hash, h.ParentHash, last.Number, last.Hash)
			}
			chain = append(chain, h)
		case h.Number > last.Number+1:
			p.add("gap: head %d after head %d (missing %d..%d)", h.Number, last.Number, last.Number+1, h.Number-1)
			chain = append(chain, h)
		case h.Number < chain[0].Number:
			p.add("head %d below the first head %d", h.Number, chain[0].Number)
		default: // a number at or below the last: a reorg if the hashes show one
			i := slices.IndexFunc(chain, func(c Head) bool { return c.Number >= h.Number })
			switch {
			case chain[i].Number == h.Number && chain[i].Hash == h.Hash:
				p.add("duplicate: head %d %s again", h.Number, h.Hash)
				continue
			case chain[i].Number != h.Number: // skipped earlier (a gap reported), now late
				p.add("head %d arrives after head %d", h.Number, last.Number)
			case i == 0 || chain[i-1].Number != h.Number-1 || chain[i-1].Hash != h.ParentHash:
				p.add("head %d %s replaces %s, but its parent %s is not a head received", h.Number, h.Hash, chain[i].Hash, h.ParentHash)
			}
			reorgs++
			chain = append(chain[:i], h)
		}
	}
	return chain, reorgs
}

// CheckHeadsOnChain checks, besides CheckHeads, that the chain of heads received is
// the node's: each head's hash is the node's block hash at that number (nodeURL is the
// node's HTTP JSON-RPC URL; heads above the node's head are reported).
func (s *Sub) CheckHeadsOnChain(nodeURL string) error {
	err := s.CheckHeads()
	var p problems
	chain, _ := s.headChain(&problems{})
	for _, h := range chain {
		res, cerr := testnode.CallURL(nodeURL, "eth_getBlockByNumber", quantity(h.Number), false)
		var b *struct{ Hash string }
		if cerr == nil {
			cerr = json.Unmarshal(res, &b)
		}
		switch {
		case cerr != nil:
			p.add("node block %d: %v", h.Number, cerr)
		case b == nil:
			p.add("head %d %s: the node has no block %d", h.Number, h.Hash, h.Number)
		case b.Hash != h.Hash:
			p.add("head %d %s: the node's block %d is %s", h.Number, h.Hash, h.Number, b.Hash)
		}
	}
	return errors.Join(err, p.err(fmt.Sprintf("newHeads %s on %s", s.ID, nodeURL)))
}

// logKey identifies a log in a chain.
type logKey struct {
	block string
	index uint64
}

// received returns the logs as they stand after the notifications: removals applied,
// duplicates and removals of unknown logs reported.
func (s *Sub) received(p *problems) []Log {
	var out []Log
	at := map[logKey]int{} // position in out
	for _, n := range s.Notifications() {
		l, err := parseLog(n)
		if err != nil {
			p.add("%v", err)
			continue
		}
		k := logKey{l.BlockHash, l.LogIndex}
		i, seen := at[k]
		switch {
		case l.Removed && !seen:
			p.add("removal of a log never received: %s", l)
		case l.Removed:
			out = slices.Delete(out, i, i+1)
			delete(at, k)
			for k2, j := range at {
				if j > i {
					at[k2] = j - 1
				}
			}
		case seen:
			p.add("duplicate: %s (first at %s, again at %s)", l, out[i].At.Format("15:04:05.000"), l.At.Format("15:04:05.000"))
		default:
			if m := len(out); m > 0 && (l.BlockNumber < out[m-1].BlockNumber ||
				l.BlockNumber == out[m-1].BlockNumber && l.BlockHash == out[m-1].BlockHash && l.LogIndex < out[m-1].LogIndex) {
				p.add("out of order: %s after %s", l, out[m-1])
			}
			at[k] = len(out)
			out = append(out, l)
		}
	}
	return out
}

// LogRange returns the lowest and highest block number of the logs received (0, 0
// without any): the default range for CheckLogs.
func (s *Sub) LogRange() (from, to uint64) {
	logs := s.received(&problems{})
	if len(logs) == 0 {
		return 0, 0
	}
	from, to = logs[0].BlockNumber, logs[0].BlockNumber
	for _, l := range logs {
		from, to = min(from, l.BlockNumber), max(to, l.BlockNumber)
	}
	return from, to
}

// CheckLogs checks a logs subscription: the socket stayed open, every notification
// carries the subscription's id, no log came twice (unless removed in between) or out
// of chain order, and the logs received for blocks from..to are exactly those the
// node's own eth_getLogs returns for the subscription's filter over that range: same
// blocks, transactions, indexes, topics and data, none missing, none extra (nodeURL is
// the node's HTTP JSON-RPC URL). Choose from..to inside what the subscription must have
// delivered: from no lower than the first block produced after the subscription was
// confirmed, to no higher than a block whose logs are known to have arrived (e.g. with
// WaitLogBlock).
func (s *Sub) CheckLogs(nodeURL string, from, to uint64) error {
	var p problems
	s.common(&p)
	got := s.received(&p)
	filter := s.Filter.params()
	filter["fromBlock"], filter["toBlock"] = quantity(from), quantity(to)
	res, err := testnode.CallURL(nodeURL, "eth_getLogs", filter)
	var raw []json.RawMessage
	if err == nil {
		err = json.Unmarshal(res, &raw)
	}
	if err != nil {
		p.add("node eth_getLogs %d..%d: %v", from, to, err)
		return p.err(fmt.Sprintf("logs %s", s.ID))
	}
	var want []Log
	for _, r := range raw {
		l, err := decodeLog(r)
		if err != nil {
			p.add("node eth_getLogs: %v", err)
			continue
		}
		want = append(want, l)
	}
	var inRange []Log
	for _, l := range got {
		if from <= l.BlockNumber && l.BlockNumber <= to {
			inRange = append(inRange, l)
		}
	}
	compareLogs(&p, inRange, want)
	return p.err(fmt.Sprintf("logs %s, blocks %d..%d", s.ID, from, to))
}

// compareLogs reports the differences between the logs received and the node's.
func compareLogs(p *problems, got, want []Log) {
	key := func(l Log) logKey { return logKey{l.BlockHash, l.LogIndex} }
	have := map[logKey]Log{}
	for _, l := range got {
		have[key(l)] = l
	}
	node := map[logKey]bool{}
	for _, w := range want {
		node[key(w)] = true
		g, ok := have[key(w)]
		switch {
		case !ok:
			p.add("missing: %s", w)
		case g.TransactionHash != w.TransactionHash || g.Data != w.Data || g.Address != w.Address ||
			!slices.Equal(g.Topics, w.Topics) || g.BlockNumber != w.BlockNumber || g.TransactionIndex != w.TransactionIndex:
			p.add("differs: received %s, node %s", g, w)
		}
	}
	for _, g := range got {
		if !node[key(g)] {
			p.add("extra (not in the node's logs): %s", g)
		}
	}
}

// WaitLogs is CheckLogs run again each time a notification arrives, until it holds or
// within has passed (its last error then). The logs of a block arrive one notification
// at a time: a check made as the first of the last block's arrives finds the others
// missing; a log that is lost never comes, and the error names it.
func (s *Sub) WaitLogs(nodeURL string, from, to uint64, within time.Duration) error {
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		changed := s.changed // before the check: an arrival during it wakes the next
		s.mu.Unlock()
		err := s.CheckLogs(nodeURL, from, to)
		if err == nil {
			return nil
		}
		select {
		case <-changed:
		case <-deadline.C:
			return err
		}
	}
}
