package limit

import (
	"testing"

	"github.com/infura-gateway/infura-gateway/gateway/internal/redistest"
)

// TestCheckAllocatesNothing guards the 0 allocs/op claim of every check, admitted and
// refused, in local mode and in Redis mode (leased allowance and fallback).
func TestCheckAllocatesNothing(t *testing.T) {
	local := newLocal(t, Config{})
	srv := redistest.Start(t)
	r := newReplica(t, srv, Config{})
	for _, l := range []*Limiter{local, r.lim} {
		mode := map[bool]string{false: "local", true: "redis"}[l.Redis()]
		b, _ := l.NewBucket("alloc:b", 1e8, 1e8)
		tight, _ := l.NewBucket("alloc:tight", 1, 1)
		q, _ := l.NewQuota("alloc:q", 1<<38)
		s, _ := l.NewSlots("alloc:s", 1<<20)
		tight.Take(1)
		cases := []struct {
			name string
			f    func()
		}{
			{"bucket take", func() { b.Take(1) }},
			{"bucket refused", func() { tight.Take(1) }},
			{"quota take", func() { q.Take(1) }},
			{"slots acquire+release", func() { s.Acquire(); s.Release() }},
		}
		for _, c := range cases {
			for range 1000 {
				c.f()
			}
			if n := testing.AllocsPerRun(10000, c.f); n != 0 {
				t.Errorf("%s %s: %v allocs per check, want 0", mode, c.name, n)
			}
		}
	}
}

func BenchmarkBucketTakeLocal(b *testing.B) {
	l := newLocalB(b)
	h, _ := l.NewBucket("bench", 1e9, 1<<40)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			h.Take(1)
		}
	})
}

func BenchmarkBucketTakeRedis(b *testing.B) {
	srv := redistest.Start(b)
	r := newReplicaB(b, srv)
	h, _ := r.lim.NewBucket("bench", 1e8, 1e8)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			h.Take(1)
		}
	})
}

func BenchmarkBucketRefusedLocal(b *testing.B) {
	l := newLocalB(b)
	h, _ := l.NewBucket("bench", 1, 1)
	h.Take(1)
	b.ReportAllocs()
	for b.Loop() {
		h.Take(1)
	}
}

func BenchmarkQuotaTakeRedis(b *testing.B) {
	srv := redistest.Start(b)
	r := newReplicaB(b, srv)
	h, _ := r.lim.NewQuota("bench", 1<<38)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			h.Take(1)
		}
	})
}

func BenchmarkSlotsAcquireReleaseRedis(b *testing.B) {
	srv := redistest.Start(b)
	r := newReplicaB(b, srv)
	h, _ := r.lim.NewSlots("bench", 1<<20)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			h.Acquire()
			h.Release()
		}
	})
}
