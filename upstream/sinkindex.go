package upstream

// sinkIndex lists, for each sink, the subscription groups it joined or waits for: a
// client leaving ends its memberships without a walk over every group. A sink holds
// few groups, so a slice is searched. Guarded by its owner's lock.
type sinkIndex[G comparable] map[Sink][]G

func (ix sinkIndex[G]) add(sink Sink, g G) {
	for _, x := range ix[sink] {
		if x == g {
			return
		}
	}
	ix[sink] = append(ix[sink], g)
}

func (ix sinkIndex[G]) remove(sink Sink, g G) {
	gs := ix[sink]
	for i, x := range gs {
		if x == g {
			gs = append(gs[:i], gs[i+1:]...)
			break
		}
	}
	if len(gs) == 0 {
		delete(ix, sink)
	} else {
		ix[sink] = gs
	}
}
