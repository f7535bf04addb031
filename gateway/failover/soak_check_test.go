//go:build soak

package failover_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
)

// clientSnap is what one client received, read once the soak is over.
type clientSnap struct {
	id             string
	heads          []soakHead
	foreign, stray int
	err            error
}

func snapshotAll(clients []*soakClient) []clientSnap {
	out := make([]clientSnap, len(clients))
	for i, c := range clients {
		s := &out[i]
		s.id, s.heads, s.foreign, s.stray, s.err = c.snapshot()
	}
	return out
}

// soakResult counts the clients that received exactly what they must, and the
// problems of the others, each kind over all clients.
type soakResult struct {
	good, maxHeads                                   int
	lost, dups, disorder, wrongHash, foreign, closed int
}

// checkSoak checks every client: its socket still open, no notification under another
// id, and heads from its first (at most subscribedAt+1: it subscribed before that head
// was produced) to end, each once, in order, each hash the node's. The first problems
// fail the test with the client's number.
func checkSoak(t *testing.T, node *testnode.Node, snaps []clientSnap, subscribedAt, end uint32) soakResult {
	t.Helper()
	lo := end
	for _, s := range snaps {
		if len(s.heads) > 0 {
			lo = min(lo, s.heads[0].num)
		}
	}
	hashes := make(map[uint32]uint64, end-lo+1)
	for n := lo; n <= end; n++ {
		hashes[n] = hashPrefix(node.BlockHash(t, uint64(n)))
	}
	var r soakResult
	reported := 0
	report := func(i int, format string, args ...any) {
		if reported < 10 {
			t.Errorf("client %d: "+format, append([]any{i}, args...)...)
		}
		reported++
	}
	for i, s := range snaps {
		ok := true
		if s.err != nil {
			r.closed++
			ok = false
			report(i, "socket closed: %v", s.err)
		}
		if s.foreign > 0 || s.stray > 0 || s.id == "" {
			r.foreign += s.foreign
			ok = false
			report(i, "subscription id %q: %d notifications under another id, %d other messages", s.id, s.foreign, s.stray)
		}
		heads := s.heads
		for len(heads) > 0 && heads[len(heads)-1].num > end {
			heads = heads[:len(heads)-1] // arrived after the last head checked
		}
		r.maxHeads = max(r.maxHeads, len(heads))
		if len(heads) == 0 || heads[0].num > subscribedAt+1 {
			first := uint32(0)
			if len(heads) > 0 {
				first = heads[0].num
			}
			r.lost++
			ok = false
			report(i, "first head %d, but it subscribed before head %d", first, subscribedAt+1)
			if len(heads) == 0 {
				continue
			}
		}
		first := heads[0].num
		seen := make([]bool, end-first+1)
		var top uint32
		for _, h := range heads {
			if h.num > end {
				top = max(top, h.num) // past end, yet followed by one at most end: out of order
				continue
			}
			switch {
			case h.num < first || seen[h.num-first]:
				r.dups++
				ok = false
				report(i, "head %d received twice", h.num)
			case h.num < top:
				r.disorder++
				ok = false
				report(i, "head %d after head %d", h.num, top)
			}
			if h.num >= first {
				seen[h.num-first] = true
			}
			top = max(top, h.num)
			if want, known := hashes[h.num]; known && want != h.hash {
				r.wrongHash++
				ok = false
				report(i, "head %d with hash %016x…, the node's is %016x…", h.num, h.hash, want)
			}
		}
		for j, got := range seen {
			if !got {
				r.lost++
				ok = false
				report(i, "head %d never received", first+uint32(j))
			}
		}
		if ok {
			r.good++
		}
	}
	if reported > 10 {
		t.Errorf("… and %d more problems", reported-10)
	}
	return r
}

// soakPhase is a stretch of the soak, by the times (since the epoch) the reference
// subscriber received its heads; bounded phases have their fan-out p99 checked.
type soakPhase struct {
	name     string
	from, to time.Duration
	bounded  bool
}

type fanoutRow struct {
	phase                soakPhase
	heads                int
	p50, p99, max, all99 time.Duration
	first50              time.Duration // the first client's delay, p50: the spread to p50 is the fan-out itself
}

// fanout computes, per phase, the delay of each head's last delivery (the latest of
// all clients', less the reference subscriber's arrival) and the p99 of all
// deliveries.
func fanout(ref *soakClient, snaps []clientSnap, phases []soakPhase) []fanoutRow {
	_, refHeads, _, _, _ := ref.snapshot()
	refAt := make(map[uint32]time.Duration, len(refHeads))
	phaseOf := make(map[uint32]int, len(refHeads))
	for _, h := range refHeads {
		refAt[h.num] = h.at
		phaseOf[h.num] = -1
		for i, p := range phases {
			if h.at >= p.from && h.at < p.to {
				phaseOf[h.num] = i
			}
		}
	}
	last := make(map[uint32]time.Duration)
	first := make(map[uint32]time.Duration)
	all := make([][]time.Duration, len(phases))
	for _, s := range snaps {
		for _, h := range s.heads {
			at, known := refAt[h.num]
			if !known || phaseOf[h.num] < 0 {
				continue
			}
			d := h.at - at
			if cur, seen := last[h.num]; !seen || d > cur {
				last[h.num] = d
			}
			if cur, seen := first[h.num]; !seen || d < cur {
				first[h.num] = d
			}
			all[phaseOf[h.num]] = append(all[phaseOf[h.num]], d)
		}
	}
	rows := make([]fanoutRow, len(phases))
	for i, p := range phases {
		var lasts, firsts []time.Duration
		for n, d := range last {
			if phaseOf[n] == i {
				lasts, firsts = append(lasts, d), append(firsts, first[n])
			}
		}
		rows[i] = fanoutRow{phase: p, heads: len(lasts), p50: quantile(lasts, 0.5), p99: quantile(lasts, 0.99),
			max: quantile(lasts, 1), all99: quantile(all[i], 0.99), first50: quantile(firsts, 0.5)}
	}
	return rows
}

// quantile sorts ds and returns its q-quantile (nearest rank), 0 for none.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(q*float64(len(ds))+0.5) - 1
	return ds[max(0, min(i, len(ds)-1))]
}

func (r fanoutRow) String() string {
	ms := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	return fmt.Sprintf("p50 %v, **p99 %v**, max %v; every delivery p99 %v; first client p50 %v",
		ms(r.p50), ms(r.p99), ms(r.max), ms(r.all99), ms(r.first50))
}
