package limit

// Leased reports whether the bucket's takes spend an allowance leased from Redis now:
// false in local mode, and while Redis is unusable or the handle's last lease failed
// (takes then fall back per process, at the bucket's full rate). Callers that want
// another fallback (upstream budgets: a share of the rate) check it before Take.
func (b *Bucket) Leased() bool { return b.s.lim.conn != nil && b.s.usable() }

// Leased reports whether the quota's takes spend an allowance leased from Redis now
// (see Bucket.Leased).
func (q *Quota) Leased() bool { return q.s.lim.conn != nil && q.s.usable() }
