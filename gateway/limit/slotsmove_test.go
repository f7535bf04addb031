package limit

import (
	"fmt"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/internal/redistest"
)

// fieldOf is replica r's reservation of slots name in Redis.
func fieldOf(t *testing.T, r *replica, name string) int64 {
	t.Helper()
	return redisInt(t, r.conn, "EVAL", "return tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')", "1",
		r.lim.cfg.Prefix+"s:"+name, r.lim.cfg.ReplicaID)
}

// probe reports whether a replica that has just started gets a slot of name: its
// first Acquire asks Redis (a handle's later Acquires may refuse from a back-off).
func probe(t *testing.T, srv *redistest.Server, cfg Config, name string, max int64) bool {
	t.Helper()
	r := newReplica(t, srv, cfg)
	h, err := r.lim.NewSlots(name, max)
	if err != nil {
		t.Fatal(err)
	}
	return h.Acquire().OK // a slot taken is given back by the replica's cleanup
}

// settled waits until the shard has dropped closed handle h (its release has run).
func settled(t *testing.T, h *Slots) {
	t.Helper()
	waitFor(t, 5*time.Second, "the old handle's close settled", func() bool {
		h.s.sh.mu.Lock()
		defer h.s.sh.mu.Unlock()
		_, in := h.s.sh.reg[h.s]
		return !in
	})
}

// TestRedisSlotsReplacedByReload: a reload replaces a key's slots handle while its
// clients hold slots; they move to the new handle one by one (MoveFrom, as the socket
// server's review moves them) and the old handle is closed. Throughout, and after the old handle's close is settled, the replica's
// reservation in Redis covers every slot held on either handle, so another replica
// never gets more than the rest of max.
func TestRedisSlotsReplacedByReload(t *testing.T) {
	srv := redistest.Start(t)
	cfg := Config{Prefix: "reload:"}
	const max = 4
	ra, rb := newReplica(t, srv, cfg), newReplica(t, srv, cfg)
	old, _ := ra.lim.NewSlots("key:conns", max)
	b, _ := rb.lim.NewSlots("key:conns", max)
	for range 3 {
		if !old.Acquire().OK {
			t.Fatal("a slot under max refused")
		}
	}
	// covered checks that replica a's reservation in Redis covers the 3 slots it holds,
	// and that b gets nothing past the rest of max.
	var onB int64
	covered := func(when string) {
		t.Helper()
		if reserved := fieldOf(t, ra, "key:conns"); reserved < 3 {
			t.Fatalf("%s: replica a's reservation in Redis is %d with 3 slots held", when, reserved)
		}
		for b.Acquire().OK {
			onB++
		}
		if 3+onB > max {
			t.Fatalf("%s: 3 slots on a and %d on b, max %d", when, onB, max)
		}
		if onB < max-3 && probe(t, srv, cfg, "key:conns", max) {
			onB++ // the probe's replica holds it until the test ends
		}
		if 3+onB > max {
			t.Fatalf("%s: 3 slots on a and %d elsewhere, max %d", when, onB, max)
		}
	}
	covered("before the reload")
	next, _ := ra.lim.NewSlots("key:conns", max) // the reload
	for i := int64(1); i <= 3; i++ {
		if d := next.MoveFrom(old); !d.OK {
			t.Fatalf("move %d: refused on the new handle: %+v", i, d)
		}
		if i == 1 {
			old.Close() // the reload closes the old handle while clients still hold it
		}
		covered(fmt.Sprintf("after move %d", i))
	}
	settled(t, old)
	covered("after the old handle's close settled")
}

// TestRedisSlotsMoveAtMax: the key at its max, every slot on replica a; a reload
// replaces the handle and every client moves (MoveFrom): none is refused, and no other
// replica gets a slot during the moves or once the old handle's close has settled. A
// new plan with a smaller max keeps as many clients as it allows.
func TestRedisSlotsMoveAtMax(t *testing.T) {
	srv := redistest.Start(t)
	cfg := Config{Prefix: "move:"}
	const max = 4
	for _, newMax := range []int64{max, 2} {
		t.Run(fmt.Sprintf("new max %d", newMax), func(t *testing.T) {
			name := fmt.Sprintf("key%d:conns", newMax)
			ra := newReplica(t, srv, cfg)
			old, _ := ra.lim.NewSlots(name, max)
			for range max {
				if !old.Acquire().OK {
					t.Fatal("a slot under max refused")
				}
			}
			if probe(t, srv, cfg, name, max) {
				t.Fatal("another replica got a slot past max before the reload")
			}
			next, _ := ra.lim.NewSlots(name, newMax) // the reload
			moved := int64(0)
			for i := range max {
				d := next.MoveFrom(old)
				switch {
				case d.OK:
					moved++
				case moved < newMax:
					t.Fatalf("move %d refused with %d of %d on the new handle: %+v", i, moved, newMax, d)
				default:
					old.Release() // refused: the socket server closes that client
				}
				if i == 0 {
					old.Close() // the reload closes the old handle while clients still hold it
				}
				if probe(t, srv, cfg, name, newMax) {
					t.Fatalf("after move %d another replica got a slot, with %d held here", i, next.InUse()+old.InUse())
				}
			}
			if moved != newMax || next.InUse() != newMax || old.InUse() != 0 {
				t.Fatalf("moved %d: %d on the new handle, %d on the old; want %d, %d, 0", moved, next.InUse(), old.InUse(), newMax, newMax)
			}
			settled(t, old)
			if got := fieldOf(t, ra, name); got < newMax {
				t.Fatalf("replica a's reservation is %d with %d slots held", got, newMax)
			}
			if probe(t, srv, cfg, name, newMax) {
				t.Fatal("another replica got a slot once the old handle's close settled")
			}
			if next.Acquire().OK {
				t.Fatal("an Acquire past the new max")
			}
			// Released, the slots are free again for every replica.
			for range newMax {
				next.Release()
			}
			waitFor(t, 10*time.Second, "a slot for another replica once a's clients left", func() bool {
				return probe(t, srv, cfg, name, newMax)
			})
		})
	}
}

// TestRedisSlotsAcquireOnReplacedHandle: a client that found the old tenant just before
// a reload takes its slot on the old handle: it is counted within the new handle's
// reservation, and refused when the key is full.
func TestRedisSlotsAcquireOnReplacedHandle(t *testing.T) {
	srv := redistest.Start(t)
	cfg := Config{Prefix: "via:"}
	ra := newReplica(t, srv, cfg)
	old, _ := ra.lim.NewSlots("key:subs", 3)
	for range 2 {
		if !old.Acquire().OK {
			t.Fatal("a slot under max refused")
		}
	}
	next, _ := ra.lim.NewSlots("key:subs", 3)
	if !old.Acquire().OK {
		t.Fatal("the third slot, on the replaced handle, refused")
	}
	if old.InUse() != 3 || next.InUse() != 0 {
		t.Fatalf("%d on the old handle, %d on the new; want 3, 0", old.InUse(), next.InUse())
	}
	if old.Acquire().OK || next.Acquire().OK {
		t.Fatal("a fourth slot of 3")
	}
	if got := fieldOf(t, ra, "key:subs"); got < 3 {
		t.Fatalf("replica a's reservation is %d with 3 slots held", got)
	}
	if probe(t, srv, cfg, "key:subs", 3) {
		t.Fatal("another replica got a slot past max")
	}
	old.Close()
	for range 3 {
		if !next.MoveFrom(old).OK {
			t.Fatal("a move refused")
		}
	}
	settled(t, old)
	if probe(t, srv, cfg, "key:subs", 3) {
		t.Fatal("another replica got a slot past max once the old handle was closed")
	}
	// Retired (closed, none left), the old handle's slots are the new one's.
	waitFor(t, 5*time.Second, "the old handle retired", func() bool { return old.s.state.Load()&retiredBit != 0 })
	next.Release()
	if !old.Acquire().OK || next.InUse() != 3 || old.InUse() != 0 {
		t.Fatalf("an Acquire on the retired handle: %d on the new one, %d on the old; want 3, 0", next.InUse(), old.InUse())
	}
	old.Release()
	if next.InUse() != 2 {
		t.Fatalf("a Release on the retired handle: %d on the new one, want 2", next.InUse())
	}
}

// TestLocalSlotsMove: without Redis a move checks the new handle's max and nothing
// else: every client of a key at its max moves, a smaller max keeps as many as it allows.
func TestLocalSlotsMove(t *testing.T) {
	l := newLocal(t, Config{})
	for _, newMax := range []int64{4, 2} {
		old, _ := l.NewSlots(fmt.Sprintf("key%d:conns", newMax), 4)
		for range 4 {
			if !old.Acquire().OK {
				t.Fatal("a slot under max refused")
			}
		}
		next, _ := l.NewSlots(fmt.Sprintf("key%d:conns", newMax), newMax)
		old.Close()
		var moved int64
		for range 4 {
			if next.MoveFrom(old).OK {
				moved++
			}
		}
		if moved != newMax || next.InUse() != newMax || old.InUse() != 4-newMax {
			t.Fatalf("max 4 to %d: moved %d, %d on the new handle, %d on the old", newMax, moved, next.InUse(), old.InUse())
		}
		if next.Acquire().OK {
			t.Fatal("an Acquire past the new max")
		}
	}
}
