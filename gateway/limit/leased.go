package limit

// TakeLeased is Take without the per-process fallback: in Redis mode it spends only
// the allowance leased from Redis, also while the handle's last lease failed (the
// allowance left is still the cluster's), and is refused when that runs out; it never
// borrows against a late renewal as Take does (an upstream's budget is a provider's
// limit: a borrow would be sent and refused there). Callers
// that must not exceed a cluster-wide total (upstream budgets) use it while Redis is
// usable and meter on their own otherwise. In local mode it is Take. Never waits,
// never allocates.
//
// Unlike Take, a take of more than the burst (a batch larger than a provider's burst)
// is not refused for good: it is admitted when the bucket is full (in Redis mode, once
// a full burst is leased) and charged in full, the bucket going into debt that later
// takes wait for, so the long-run rate holds.
func (b *Bucket) TakeLeased(n int64) Decision {
	s := b.s
	switch {
	case n <= 0:
		return b.Take(n)
	case s.lim.conn == nil:
		return s.takeLocal(n)
	}
	return s.takeLeased(n, false)
}

// TakeLeased is Take without the per-process fallback (see Bucket.TakeLeased).
func (q *Quota) TakeLeased(n int64) Decision {
	s := q.s
	if s.lim.conn == nil || n <= 0 || n > s.limit {
		return q.Take(n)
	}
	return s.takeLeased(n)
}
