// Delivering a group's notifications: newHeads in order and once per number, gaps
// backfilled with eth_getBlockByNumber; logs once each, the blocks a move may have
// missed queried with eth_getLogs; one shared frame fanned out to every member.

package upstream

import (
	"runtime"
	"strconv"
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
)

// handle delivers one notification result according to the group's kind.
func (g *subGroup) handle(result []byte) {
	switch g.kind {
	case kindNewHeads:
		g.handleHead(result)
	case kindLogs:
		if g.seenLogs.add(logKey(result)) {
			g.fanOut(result)
		}
	default:
		g.fanOut(result)
	}
}

// handleHead delivers a head: in order, once per number, with gaps filled; a head at
// or below the last one with a hash never delivered at its height is a reorg and goes
// out as the chain reports it.
func (g *subGroup) handleHead(header []byte) {
	n, ok := proto.ParseQuantity(proto.FirstMember(header, "number").Bytes(header))
	if !ok {
		return
	}
	hash := proto.FirstMember(header, "hash").Bytes(header)
	g.heardHead(n)
	switch {
	case g.last == 0 || n == g.last+1:
	case n > g.last+1:
		g.backfillHeads(g.last+1, n-1)
	default: // n <= last
		if seen, ok := g.hashes.get(hash); ok && seen == n {
			return // delivered already (a lagging upstream catching up, or an overlap)
		}
		g.s.r.m.reorgs.Inc()
	}
	g.last = n
	g.hashes.add(hash, n)
	g.fanOut(header)
}

// backfillHeads delivers heads from..to fetched with eth_getBlockByNumber, in order.
func (g *subGroup) backfillHeads(from, to uint64) {
	if to-from+1 > MaxBackfill {
		g.s.r.m.gapBlocks.Add(int(to - from + 1 - MaxBackfill))
		g.s.r.log.Warn("newHeads gap larger than the backfill bound: some heads skipped",
			"subscription", g.gwID, "from", from, "to", to, "bound", MaxBackfill)
		from = to - MaxBackfill + 1
	}
	var req proto.Request
	var params []byte
	for n := from; n <= to; n++ {
		params = append(strconv.AppendUint(append(params[:0], `["0x`...), n, 16), `",false]`...)
		req.Set(methodGetBlockByNumber, params)
		ans, err := g.s.r.call(nil, &req, gatewayID1, time.Now().Add(g.s.r.cfg.Mux.RequestTimeout), TransportHTTP)
		block := proto.FirstMember(ans, "result").Bytes(ans)
		if err != nil || len(block) == 0 || block[0] != '{' {
			g.s.r.m.gapBlocks.Inc()
			g.s.r.log.Warn("cannot backfill a head", "subscription", g.gwID, "block", n, "err", err)
			continue
		}
		header := headerOf(block)
		g.last = n
		g.hashes.add(proto.FirstMember(header, "hash").Bytes(header), n)
		g.s.r.m.backfilled.Inc()
		g.fanOut(header)
	}
}

// headerOf turns a block object (eth_getBlockByNumber, false) into the shape of a
// newHeads notification: the header without transactions, uncles, withdrawals and size.
func headerOf(block []byte) []byte {
	it, err := proto.NewObjectIter(block, 0)
	if err != nil {
		return block
	}
	out := []byte{'{'}
	for {
		k, v, ok, err := it.Next()
		if err != nil || !ok {
			break
		}
		switch key := k.Bytes(block); string(key) {
		case `"transactions"`, `"uncles"`, `"withdrawals"`, `"size"`:
			continue
		default:
			if len(out) > 1 {
				out = append(out, ',')
			}
			out = append(append(append(out, key...), ':'), v.Bytes(block)...)
		}
	}
	return append(out, '}')
}

// backfillLogs queries the logs the move may have missed: from the blocks the old
// upstream had (less a margin) to the new upstream's head, for the group's filter.
func (g *subGroup) backfillLogs(u *Upstream, oldHead uint64) {
	to := u.health.Head()
	from := g.coverTo
	if oldHead > 2 {
		from = max(from, oldHead-2) // a margin: the old upstream's last logs may not have arrived
	}
	if to == 0 || from > to {
		return
	}
	if to-from+1 > MaxBackfill {
		g.s.r.m.gapBlocks.Add(int(to - from + 1 - MaxBackfill))
		from = to - MaxBackfill + 1
	}
	filter := []byte("{}")
	if proto.FirstByte(g.params) == '[' {
		if f := proto.Nth(g.params, 1); f.Present() && g.params[f.Start] == '{' {
			filter = f.Bytes(g.params)
		}
	}
	params := appendRangeFilter([]byte{'['}, filter, from, to)
	params = append(params, ']')
	var req proto.Request
	req.Set([]byte("eth_getLogs"), params)
	ans, err := g.s.r.call(nil, &req, gatewayID1, time.Now().Add(g.s.r.cfg.Mux.RequestTimeout), TransportHTTP)
	logs := proto.FirstMember(ans, "result").Bytes(ans)
	if err != nil || proto.FirstByte(logs) != '[' {
		g.s.r.m.gapBlocks.Add(int(to - from + 1))
		g.s.r.log.Warn("cannot backfill logs", "subscription", g.gwID, "from", from, "to", to, "err", err)
		return
	}
	it, _ := proto.NewArrayIter(logs)
	for {
		el, ok, err := it.Next()
		if err != nil || !ok {
			break
		}
		l := el.Bytes(logs)
		if g.seenLogs.add(logKey(l)) {
			g.s.r.m.backfilled.Inc()
			g.fanOut(l)
		}
	}
	g.coverTo = to
}

// appendRangeFilter appends filter (a JSON object) with fromBlock and toBlock set.
func appendRangeFilter(dst, filter []byte, from, to uint64) []byte {
	dst = append(dst, `{"fromBlock":"0x`...)
	dst = strconv.AppendUint(dst, from, 16)
	dst = append(dst, `","toBlock":"0x`...)
	dst = strconv.AppendUint(dst, to, 16)
	dst = append(dst, '"')
	it, err := proto.NewObjectIter(filter, 0)
	if err == nil {
		for {
			k, v, ok, err := it.Next()
			if err != nil || !ok {
				break
			}
			switch string(k.Bytes(filter)) {
			case `"fromBlock"`, `"toBlock"`, `"blockHash"`:
				continue
			}
			dst = append(append(append(append(dst, ','), k.Bytes(filter)...), ':'), v.Bytes(filter)...)
		}
	}
	return append(dst, '}')
}

// fanOutPace is how many members are notified between two yields of a fan-out.
const fanOutPace = 64

// fanOut sends one notification to every member: one frame, shared.
func (g *subGroup) fanOut(result []byte) {
	frame := make([]byte, 0, len(result)+len(g.gwQuoted)+64)
	frame = append(frame, `{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":`...)
	frame = append(frame, g.gwQuoted...)
	frame = append(frame, `,"result":`...)
	frame = append(frame, result...)
	frame = append(frame, "}}"...)
	s := g.s
	s.mu.Lock()
	i := 0
	for sink := range g.members {
		sink.Notify(frame)
		// A Notify may start the member's writer goroutine. Yielding now and then lets
		// those run (and end) before more start: a head for 10,000 subscribers would
		// otherwise create 10,000 writers, and their stacks, at once, and the process
		// keeps that peak as RSS.
		if i++; i%fanOutPace == 0 {
			runtime.Gosched()
		}
	}
	s.mu.Unlock()
	if g.kind == kindLogs {
		if n, ok := proto.ParseQuantity(proto.FirstMember(result, "blockNumber").Bytes(result)); ok {
			g.coverTo = max(g.coverTo, n)
		}
	}
}

// logKey identifies a log: its block hash and index (the removed flag too, so a log a
// reorg removes is delivered again as removed).
func logKey(l []byte) string {
	return string(proto.FirstMember(l, "blockHash").Bytes(l)) + "/" +
		string(proto.FirstMember(l, "logIndex").Bytes(l)) + "/" + string(proto.FirstMember(l, "removed").Bytes(l))
}

// logSet remembers the last logs delivered, to deliver each once across a move.
type logSet struct {
	keys  map[string]struct{}
	order []string
}

const maxLogKeys = 8192

// add reports whether k is new, remembering it.
func (s *logSet) add(k string) bool {
	if s.keys == nil {
		s.keys = make(map[string]struct{})
	}
	if _, ok := s.keys[k]; ok {
		return false
	}
	s.keys[k] = struct{}{}
	s.order = append(s.order, k)
	if len(s.order) > maxLogKeys {
		delete(s.keys, s.order[0])
		s.order = s.order[1:]
	}
	return true
}
