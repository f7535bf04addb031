package limit

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/infura-gateway/infura-gateway/gateway/internal/redistest"
)

// TestRedisIdleReplicasReserveNoSlots: replicas that have a key's slots handle but no
// client of it reserve nothing in Redis, so one replica gets every slot of the key.
// Before, each replica's first heartbeat (and every one after a Redis restart or
// FLUSHALL) found it unknown to Redis and re-asserted every slots handle, never-used
// ones too: each reserved a spare no client asked for and, nothing waking the handle
// again, kept it. With 3 replicas and max 3, one replica got 1 slot (measured against
// the binary: max_connections 6, 3 replicas, 4 websockets of 6 on one replica).
func TestRedisIdleReplicasReserveNoSlots(t *testing.T) {
	srv := redistest.Start(t)
	// Heartbeats every 200 ms: three of them per replica come quickly.
	cfg := Config{Prefix: "idle:", SlotTTL: 600 * time.Millisecond}
	const max = 3
	var rs [3]*replica
	var hs [3]*Slots
	for i := range rs {
		rs[i] = newReplica(t, srv, cfg)
		hs[i], _ = rs[i].lim.NewSlots("key:conns", max)
	}
	// Each replica has heartbeated (unknown to Redis at first: a resync), and later
	// lease rounds went out after it: whatever that resync sends has been answered.
	for i, r := range rs {
		waitFor(t, 10*time.Second, "replica's heartbeats", func() bool {
			return counterValue(r.ms, `gateway_limit_lease_batches_total`) >= 3
		})
		if f := fieldRead(t, r, "key:conns"); f != 0 {
			t.Fatalf("replica %d, no client of the key, reserves %d slots in Redis", i, f)
		}
	}
	for i := range max {
		if d := hs[0].Acquire(); !d.OK {
			t.Fatalf("replica 0, slot %d of %d refused with no other replica using the key: %+v", i+1, max, d)
		}
	}
	if hs[1].Acquire().OK || hs[2].Acquire().OK {
		t.Fatalf("a slot past %d admitted on another replica", max)
	}
}

// TestRedisSlotReservationRefreshed: a reservation whose slots stay in use, with no
// Acquire or Release for longer than the key's expiry in Redis (a day), is written
// again before it expires. Before, the refresh was planned (refreshAt) but the handle
// was never scheduled for it: long-lived websockets lost their reservation after a
// day and other replicas could fill the key past its max. The test shortens the
// refresh period and stands for the expiry with DEL.
func TestRedisSlotReservationRefreshed(t *testing.T) {
	srv := redistest.Start(t)
	cfg := Config{Prefix: "refresh:", slotRefresh: 300 * time.Millisecond}
	a, b := newReplica(t, srv, cfg), newReplica(t, srv, cfg)
	const max = 2
	sa, _ := a.lim.NewSlots("key:conns", max)
	sb, _ := b.lim.NewSlots("key:conns", max)
	for range max {
		if d := sa.Acquire(); !d.OK {
			t.Fatalf("replica a refused: %+v", d)
		}
	}
	waitFor(t, 5*time.Second, "a's reservation in Redis", func() bool { return fieldIs(a, "key:conns", max) })
	redisInt(t, a.conn, "DEL", "refresh:s:key:conns") // the key's expiry passed
	waitFor(t, 10*time.Second, "a's reservation written again", func() bool { return fieldIs(a, "key:conns", max) })
	if sb.Acquire().OK {
		t.Fatalf("replica b admitted a slot with %d of %d in use on a", max, max)
	}
}

// fieldRead is replica r's reservation of slots name in Redis, asked again after an
// error (a loaded machine can pass a call's deadline).
func fieldRead(t *testing.T, r *replica, name string) int64 {
	t.Helper()
	var v int64
	waitFor(t, 10*time.Second, "a read of the reservation", func() bool {
		var err error
		v, err = r.conn.DoWithin(context.Background(), time.Second, r.conn.B().Arbitrary("HGET", r.lim.cfg.Prefix+"s:"+name, r.lim.cfg.ReplicaID).Build()).AsInt64()
		if rueidis.IsRedisNil(err) {
			v, err = 0, nil
		}
		return err == nil
	})
	return v
}

// fieldIs reports whether replica r's reservation of slots name in Redis is want; an
// error is a no (for a poll on a loaded machine).
func fieldIs(r *replica, name string, want int64) bool {
	return redisIntIs(r.conn, want, "EVAL", "return tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')", "1",
		r.lim.cfg.Prefix+"s:"+name, r.lim.cfg.ReplicaID)
}

// TestRedisSlotsExactAfterRedisLosesItsState: Redis restarted empty, or flushed, while
// three replicas hold 2 slots each of a key's 7 (one of them a spare beside its 2).
// Each replica asserts what it has in use again (once its breaker closes, or at its
// next heartbeat), and then the replicas admit one more slot between them, no more.
// Before, each asserted its in-use count plus a spare: the first ones to reach Redis
// got their spare while the others' slots were not yet counted, and the last got its
// in-use count regardless (the script must grant it), so the reservations added up to
// more than max and the spares were filled (the Redis audit: max_connections 6, 2
// websockets on each of three replicas, redis-server killed and restarted: 8 admitted).
func TestRedisSlotsExactAfterRedisLosesItsState(t *testing.T) {
	for _, how := range []string{"restarted", "flushed"} {
		t.Run(how, func(t *testing.T) {
			srv := redistest.Start(t)
			// A spare not taken goes back SlotIdleRelease after its grant: 8 s rather
			// than 2 keeps the last replica's spare in Redis long enough to be seen on
			// a loaded machine (CI once missed a 2 s window); fill waits up to 15 s.
			// SlotTTL 6 s (heartbeats every 2 s): with 1.5 s, a heartbeat a second late
			// on a loaded CI machine had the replica's field dropped by another's call,
			// and its re-assertion, rightly without a spare, left the spare never seen.
			cfg := Config{Prefix: "lost:", SlotTTL: 6 * time.Second, SlotIdleRelease: 8 * time.Second}
			const max, each = 7, 2
			var rs [3]*replica
			var hs [3]*Slots
			for i := range rs {
				rs[i] = newReplica(t, srv, cfg)
				hs[i], _ = rs[i].lim.NewSlots("key:conns", max)
			}
			fill(t, hs[:], each)
			// The one slot left is reserved as a spare, by whichever replica asked first:
			// not necessarily the last one (a loaded machine's timing gave it to another,
			// and "the last replica's spare" was not seen within 10 s: in CI, and twice here).
			waitFor(t, 10*time.Second, "a replica's spare (the one slot left)", func() bool {
				return fieldIs(rs[0], "key:conns", each+1) || fieldIs(rs[1], "key:conns", each+1) || fieldIs(rs[2], "key:conns", each+1)
			})
			if how == "restarted" {
				srv.Restart(t)
			} else if _, err := srv.Do("FLUSHALL"); err != nil {
				t.Fatal(err)
			}
			for i, r := range rs {
				waitFor(t, 15*time.Second, fmt.Sprintf("replica %d asserts its slots again", i), func() bool {
					return fieldIs(r, "key:conns", each) || fieldIs(r, "key:conns", each+1)
				})
			}
			admitted := 0
			for range 2 {
				for i := range rs {
					if hs[i].Acquire().OK {
						admitted++
					}
				}
			}
			if in := 3*each + admitted; in > max {
				t.Fatalf("%d slots in use across replicas after Redis lost its state, max %d", in, max)
			}
		})
	}
}

// fill takes each slots on every handle in turn, waiting for a refused one to be
// granted (another replica's spare goes back within SlotIdleRelease).
func fill(t *testing.T, hs []*Slots, each int) {
	t.Helper()
	for i, h := range hs {
		for range each {
			waitFor(t, 15*time.Second, fmt.Sprintf("a slot on replica %d, below max", i), func() bool { return h.Acquire().OK })
		}
	}
}

// TestRedisSlotsSpreadOverReplicas: a key's clients arrive one replica after another
// (a load balancer spreads them); every replica gets its share and the key its max.
// Before, a replica kept the spare Redis reserved beside its in-use slots for as long
// as they stayed in use (only more than twice a spare free went back), so with max 6
// and two clients on each of three replicas, the third replica got none: 4 of 6.
// Now a spare not taken goes back SlotIdleRelease after its grant.
func TestRedisSlotsSpreadOverReplicas(t *testing.T) {
	srv := redistest.Start(t)
	cfg := Config{Prefix: "spread:", SlotIdleRelease: 300 * time.Millisecond}
	const max, each = 6, 2
	var hs [3]*Slots
	for i := range hs {
		hs[i], _ = newReplica(t, srv, cfg).lim.NewSlots("key:conns", max)
	}
	fill(t, hs[:], each)
	for i, h := range hs {
		if d := h.Acquire(); d.OK {
			t.Fatalf("replica %d admitted a slot past max", i)
		}
	}
}
