package logs

import "time"

// The block cap learned from providers' cap errors: the smallest named, held while
// providers keep naming it.

// learnedTTL is how long a learned cap holds without a provider naming it again.
const learnedTTL = 10 * time.Minute

// Learned is the block cap learned from providers' errors (0: none, or forgotten).
func (s *Splitter) Learned() uint64 {
	l := s.learned.Load()
	if l > 0 && s.now().UnixNano()-s.learnedAt.Load() > int64(learnedTTL) {
		s.learned.CompareAndSwap(l, 0)
		return 0
	}
	return l
}

// learn remembers a block cap a provider named (the smallest seen).
func (s *Splitter) learn(n uint64) {
	for {
		cur := s.Learned()
		if cur != 0 && cur < n {
			return
		}
		if s.learned.CompareAndSwap(cur, n) {
			s.learnedAt.Store(s.now().UnixNano()) // set, or named again: it holds on
			return
		}
	}
}
