package gateway

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/internal/redistest"
)

// A replica that shuts down gracefully leaves the limiter's replicas zset at once (its
// liveness entry stayed until its deadline, and the id an hour past it); the replica
// still up keeps its entry.
func TestReplicaLeavesRedisOnShutdown(t *testing.T) {
	rs := redistest.Start(t)
	up := startFakeUpstream(t)
	gws := startReplicas(t, 2, up, rs.Addr, accessConfig("{requests_per_second: 1000, burst: 1000, max_connections: 4}"), "-cache=false")
	for _, gw := range gws { // a client on each: each replica holds a slot, so renews an entry
		c := dialWS(t, strings.Replace(gw.URL, "http://", "ws://", 1)+"/ws/v3/"+keyAlice, nil)
		if ans := decodeAnswer(t, c.call(blockNumberCall)); ans.Error != nil {
			t.Fatalf("a client within max_connections: %+v", ans.Error)
		}
	}
	entries := func() string {
		v, err := rs.Do("ZCARD", "igw:limit:replicas")
		if err != nil {
			t.Fatalf("ZCARD: %v", err)
		}
		return v
	}
	waitFor(t, "both replicas registered", func() bool { return entries() == "2" })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := gws[0].srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if n := entries(); n != "1" {
		t.Fatalf("%s entries after replica 0 shut down, want replica 1's alone", n)
	}
}
