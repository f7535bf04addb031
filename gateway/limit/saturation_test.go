package limit

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/internal/cpuhog"
	"github.com/infura-gateway/infura-gateway/gateway/internal/redistest"
)

// TestRedisAccuracyUnderCPUSaturation: three replicas share a plan of 100 requests/s
// (burst 100) through a real redis-server while the CPU is saturated beside them. Before
// the fix, lease calls answered late by a starved machine missed the Conn's 50 ms deadline
// and counted as Redis failures: checks went to the per-process fallback (fail open: each
// replica's own full burst, far over the plan) or were refused (fail closed: a fraction
// of the plan), and renewals sized for an idle machine (L/2 ahead) ran dry before they
// landed. The cluster must admit what it is offered up to the plan, within 10 %, over a
// 10 s window (after a warm-up that empties the burst), and never more than the package
// doc's bound.
//
// The CPU hog is cpuhog.Start: 4×GOMAXPROCS goroutines spinning in this process. The
// drivers offer on a fixed schedule (each catches up to its rate × elapsed whenever it
// runs), so a starved driver still offers its whole load, only in lumps, and admitted
// counts are taken over the whole window, not per second.
func TestRedisAccuracyUnderCPUSaturation(t *testing.T) {
	if testing.Short() {
		t.Skip("10 s of saturated CPU per case")
	}
	const (
		rate   = 100
		burst  = 100
		warm   = 2 * time.Second
		window = 10 * time.Second
	)
	cases := []struct {
		name       string
		failClosed bool
		offered    []float64 // per second, per replica
	}{
		{"fail open, twice the plan offered", false, []float64{67, 67, 66}},
		{"fail closed, twice the plan offered", true, []float64{67, 67, 66}},
		{"fail open, one replica busy under the plan", false, []float64{80, 5, 5}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := redistest.Start(t)
			var reps []*replica
			var buckets []*Bucket
			for range c.offered {
				r := newReplica(t, srv, Config{Prefix: "sat:", FailClosed: c.failClosed})
				waitFor(t, 10*time.Second, "replica connected", r.conn.Up)
				b, err := r.lim.NewBucket("key:1:rps", rate, burst)
				if err != nil {
					t.Fatal(err)
				}
				reps, buckets = append(reps, r), append(buckets, b)
			}
			cpuhog.Start(t)
			start := time.Now()
			end := warm + window
			var admitted, sent atomic.Int64
			var wg sync.WaitGroup
			for i, b := range buckets {
				wg.Add(1)
				go func() {
					defer wg.Done()
					n := 0 // offered so far by this driver
					for {
						el := time.Since(start)
						if el >= end {
							return
						}
						for float64(n) < el.Seconds()*c.offered[i] {
							n++
							ok := b.Take(1).OK
							if el >= warm {
								sent.Add(1)
								if ok {
									admitted.Add(1)
								}
							}
						}
						time.Sleep(time.Millisecond) // pacing of the load, not synchronisation
					}
				}()
			}
			wg.Wait()
			var fallback, leases, leaseErrs uint64
			for _, r := range reps {
				// Fail open a check off the shared limit is counted as a fallback, fail
				// closed as a refusal naming Redis.
				fallback += counterValue(r.ms, `gateway_limit_fallback_total{kind="rate"}`) +
					counterValue(r.ms, `gateway_limit_refused_total{kind="rate",reason="redis_down"}`)
				leases += counterValue(r.ms, "gateway_limit_lease_calls_total")
				leaseErrs += counterValue(r.ms, "gateway_limit_lease_errors_total")
			}
			offered := 0.0
			for _, o := range c.offered {
				offered += o
			}
			// What the drivers really offered (a starved driver may fall a little short of
			// its schedule), up to the plan.
			want := min(float64(sent.Load()), rate*window.Seconds())
			got := float64(admitted.Load())
			t.Logf("offered %d, admitted %.0f in %v (want %.0f: %.1f%%); checks off the shared limit (fallback or refused as Redis down) %d; lease calls %d, failed %d",
				sent.Load(), got, window, want, 100*got/want, fallback, leases, leaseErrs)
			if float64(sent.Load()) < 0.9*offered*window.Seconds() {
				t.Fatalf("only %d offered in %v: the drivers did not offer the load, the figure means nothing", sent.Load(), window)
			}
			// Redis was up all along: the limit must have stayed shared. (The old code sent
			// most checks of a busy replica to the per-process fallback, or refused them as
			// Redis down; a rare lease call missing even LeaseTimeout may send a few.)
			if float64(fallback) > 0.05*float64(sent.Load()) {
				t.Errorf("%d of %d checks off the shared limit while Redis was up", fallback, sent.Load())
			}
			if got < 0.9*want || got > 1.1*want {
				t.Errorf("admitted %.0f in %v under CPU saturation, want %.0f ± 10%%", got, window, want)
			}
			slack := len(c.offered) * int(bucketSlack(rate, burst, 100*time.Millisecond))
			if bound := float64(burst+slack) + rate*window.Seconds(); got > bound {
				t.Errorf("admitted %.0f in %v, more than the documented bound burst + rate×T + replicas×slack = %.0f", got, window, bound)
			}
		})
	}
}

// TestRedisLateLeaseIsNotAFailure: a lease answered after the Conn's 50 ms deadline but
// within LeaseTimeout (Redis frozen for 200 ms while a renewal is under way: what a
// saturated CPU does to an answer) is a grant, not a Redis failure. Before the fix the
// late lease counted as an error, and the key's checks went to the per-process fallback
// (fail open) or were refused as "Redis down" (fail closed) while Redis was fine.
func TestRedisLateLeaseIsNotAFailure(t *testing.T) {
	for _, failClosed := range []bool{false, true} {
		t.Run(map[bool]string{false: "fail open", true: "fail closed"}[failClosed], func(t *testing.T) {
			srv := redistest.Start(t)
			t.Cleanup(srv.Resume)
			r := newReplica(t, srv, Config{Prefix: "late:", FailClosed: failClosed, LeaseTimeout: 5 * time.Second})
			waitFor(t, 10*time.Second, "replica connected", r.conn.Up)
			b, err := r.lim.NewBucket("key:7:rps", 1000, 1000) // L = 100
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "a first lease answered", func() bool {
				b.Take(1)
				return b.s.retryAt.Load() > 0
			})
			answered := b.s.retryAt.Load()
			calls := counterValue(r.ms, "gateway_limit_lease_calls_total")
			srv.Pause()
			frozenAt := r.lim.nanotime()
			var downs int
			check := func() {
				if d := b.Take(1); d.Reason == ReasonRedisDown {
					downs++
				}
			}
			// Spend past the prefetch point: a renewal goes out to the frozen Redis.
			waitFor(t, 5*time.Second, "a renewal sent to the frozen Redis", func() bool {
				check()
				return counterValue(r.ms, "gateway_limit_lease_calls_total") > calls
			})
			deadline := time.Now().Add(200 * time.Millisecond) // the freeze's length
			for time.Now().Before(deadline) {
				check()
				time.Sleep(time.Millisecond) // pacing of the checks
			}
			srv.Resume()
			waitFor(t, 10*time.Second, "the renewal lands", func() bool {
				check()
				return b.s.retryAt.Load() > frozenAt && b.s.retryAt.Load() != answered
			})
			errs := counterValue(r.ms, "gateway_limit_lease_errors_total")
			fallback := counterValue(r.ms, `gateway_limit_fallback_total{kind="rate"}`)
			t.Logf("lease errors %d, checks on the fallback %d, refused as Redis down %d", errs, fallback, downs)
			if errs != 0 || fallback != 0 || downs != 0 {
				t.Errorf("a lease answered late counted as a Redis failure: %d lease errors, %d checks on the fallback, %d refused as Redis down",
					errs, fallback, downs)
			}
		})
	}
}
