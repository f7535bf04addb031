package main

import (
	"context"
	"fmt"

	"github.com/infura-gateway/infura-gateway/bench/internal/load"
)

// floorRounds judges a path against the floor measured beside it: rounds rounds, each
// the floor (the fixed node) and the path on the gateway (pid gwPID) one after the
// other, the floor first in odd rounds as the versus step alternates; the path's ratio
// is the median of the per-round ratios (judge). A floor measured once at the start and
// once at the end of the suite is minutes away from the path's run: on a busy machine
// the two floor runs have differed by 27 %, more than the cache hit's whole margin.
func floorRounds(ctx context.Context, m *measurer, r *run, gwPID int, gw load.Target, vus, rounds int) error {
	defer m.oneRunEach()()
	r.FloorRoundRatios = nil
	for round := range rounds {
		var floor, path *run
		for i := range 2 {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var err error
			if (i == 0) == (round%2 == 0) {
				floor, err = m.measure(ctx, fmt.Sprintf("floorpair_floor_%d", round+1),
					fmt.Sprintf("floor, round %d", round+1), m.nodePID, floorTarget(m.nodeHTTP), vus)
			} else {
				path, err = m.measure(ctx, fmt.Sprintf("floorpair_%s_%d", r.Key, round+1),
					fmt.Sprintf("%s beside the floor, round %d", r.Label, round+1), gwPID, gw, vus)
			}
			if err != nil {
				return err
			}
		}
		r.Errors += floor.Errors + path.Errors
		logf("%s, round %d: %.2f µs CPU/request, floor %.2f µs, errors %d", r.Label, round+1,
			path.CPUusPerReq, floor.CPUusPerReq, floor.Errors+path.Errors)
		if floor.CPUusPerReq > 0 {
			r.FloorRoundRatios = append(r.FloorRoundRatios, round2(path.CPUusPerReq/floor.CPUusPerReq))
		}
	}
	return nil
}

// floorTarget is the floor's load: the fixed node at nodeHTTP answering POST /
// eth_blockNumber.
func floorTarget(nodeHTTP string) load.Target {
	return load.Target{Kind: load.HTTP, URL: "http://" + nodeHTTP + "/", Method: "POST", Body: []byte(rpcBlockNumber)}
}
