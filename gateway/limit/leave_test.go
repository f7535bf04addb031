package limit

import (
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/internal/redistest"
)

// TestRedisReplicaLeavesOnClose: a replica that shuts down cleanly takes its id out of
// the replicas zset at once, whether it held slots (their release renewed it) or only
// heartbeated; the other replica's entry stays. It stayed until its deadline (SlotTTL)
// and in the zset an hour past it. With Redis stopped (SIGSTOP), Close still returns:
// every call it makes has a deadline.
func TestRedisReplicaLeavesOnClose(t *testing.T) {
	for _, tc := range []struct {
		name   string
		held   int  // slots a holds when it closes
		frozen bool // Redis stopped before the close
	}{
		{"holding slots", 3, false},
		{"after its slots went back", 0, false},
		{"Redis stopped", 3, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t)
			cfg := Config{Prefix: "leave:", SlotTTL: time.Minute, LeaseTimeout: 5 * time.Second}
			a, b := newReplica(t, srv, cfg), newReplica(t, srv, cfg)
			sa, _ := a.lim.NewSlots("k", 4)
			sb, _ := b.lim.NewSlots("k", 4)
			sb.Acquire()
			for range 3 {
				sa.Acquire()
			}
			score := func(r *replica) string {
				v, err := srv.Do("ZSCORE", "leave:replicas", r.lim.cfg.ReplicaID)
				if err != nil {
					t.Fatalf("ZSCORE: %v", err)
				}
				return v
			}
			waitFor(t, 10*time.Second, "both replicas registered", func() bool { return score(a) != "" && score(b) != "" })
			for range 3 - tc.held {
				sa.Release()
			}
			if tc.frozen {
				srv.Pause()
				done := make(chan struct{})
				go func() { a.lim.Close(); close(done) }()
				select {
				case <-done:
				case <-time.After(30 * time.Second):
					t.Fatal("Close blocked on a stopped Redis")
				}
				srv.Resume()
				return
			}
			a.lim.Close()
			if v := score(a); v != "" {
				t.Fatalf("a's entry after its Close: %q, want none", v)
			}
			if score(b) == "" {
				t.Fatal("b's entry went with a's")
			}
		})
	}
}
