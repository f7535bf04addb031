package main

import (
	"context"
	"fmt"
	"slices"

	"github.com/infura-gateway/infura-gateway/bench/internal/load"
)

// floorRounds judges a path against the floor measured beside it: o.rounds rounds, each
// the floor (the fixed node, pid nodePID) and the path on the gateway (pid gwPID) one
// after the other, the order alternated as in the versus step; the path's ratio is the
// median of the per-round ratios. A floor measured once at the start and once at the
// end of the suite is minutes away from the path's run: on a busy machine the two
// floor runs have differed by 27 %, more than the cache hit's whole margin (≤ 1.05×).
func floorRounds(ctx context.Context, m *measurer, r *run, gwPID int, gwTarget load.Target, vus, rounds int) error {
	// Each round measures once, unprofiled: the rounds are the repetition.
	repeat, pprofAddr := m.repeat, m.pprofAddr
	m.repeat, m.pprofAddr = 1, ""
	defer func() { m.repeat, m.pprofAddr = repeat, pprofAddr }()
	floorTarget := load.Target{Kind: load.HTTP, URL: "http://" + m.nodeHTTP + "/", Method: "POST", Body: []byte(rpcBlockNumber)}
	r.FloorRoundRatios = nil
	for round := range rounds {
		type side struct {
			key  string
			pid  int
			tgt  load.Target
			got  *run
			name string
		}
		sides := []*side{{key: "floor", pid: m.nodePID, tgt: floorTarget, name: "floor"}, {key: r.Key, pid: gwPID, tgt: gwTarget, name: r.Label}}
		if round%2 == 1 {
			slices.Reverse(sides)
		}
		for _, s := range sides {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			got, err := m.measure(ctx, fmt.Sprintf("floorpair_%s_%d", s.key, round+1),
				fmt.Sprintf("%s, beside the floor, round %d", s.name, round+1), s.pid, s.tgt, vus)
			if err != nil {
				return err
			}
			if got.Errors > 0 {
				r.Errors += got.Errors
			}
			s.got = got
			logf("%s, round %d: %.2f µs CPU/request, errors %d", s.name, round+1, got.CPUusPerReq, got.Errors)
		}
		floor, path := sides[0].got, sides[1].got
		if round%2 == 1 {
			floor, path = path, floor
		}
		if floor.CPUusPerReq > 0 {
			r.FloorRoundRatios = append(r.FloorRoundRatios, round2(path.CPUusPerReq/floor.CPUusPerReq))
		}
	}
	return nil
}
