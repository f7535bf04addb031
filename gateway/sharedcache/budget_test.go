package sharedcache

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway/internal/redistest"
)

// TestBudgetWindow: a Budget grants its limit per minute, refuses what is over it, and
// starts again at the next minute.
func TestBudgetWindow(t *testing.T) {
	var b Budget
	t0 := time.Unix(60*28_333_334+40, 0) // 40 s into a minute
	for _, tc := range []struct {
		at   time.Duration
		n    int64
		want bool
	}{
		{0, 600, true},
		{time.Second, 400, true}, // exactly the limit
		{2 * time.Second, 1, false},
		{19 * time.Second, 1, false}, // still the same minute
		{20 * time.Second, 1000, true},
		{21 * time.Second, 1, false},
		{80 * time.Second, 1001, false}, // larger than the limit: never
	} {
		if got := b.spend(tc.n, 1000, t0.Add(tc.at)); got != tc.want {
			t.Errorf("at +%v, %d bytes: %v, want %v", tc.at, tc.n, got, tc.want)
		}
	}
}

// TestSetForBudget: values over a tenant's budget are skipped and counted at once,
// another tenant's are written, and GetOrFetchFor still answers its caller.
func TestSetForBudget(t *testing.T) {
	srv := redistest.Start(t)
	r := newReplica(t, srv, Config{TenantBytesPerMinute: 1000})
	var heavy, other Budget
	written := 0
	for i := range 10 {
		if r.cache.SetFor(&heavy, fmt.Sprint("h", i), make([]byte, 200)) {
			written++
		}
	}
	if written != 4 { // 4 x (200 + 2) bytes fit in 1000, a fifth does not
		t.Fatalf("%d of 10 values of 200 bytes written with a budget of 1000 bytes", written)
	}
	if n := counter(r.ms, "gateway_sharedcache_over_budget_total"); n != 6 {
		t.Fatalf("over budget counted %d, want 6", n)
	}
	if !r.cache.SetFor(&other, "o", make([]byte, 200)) {
		t.Fatal("another tenant's value was refused")
	}
	v, src, err := r.cache.GetOrFetchFor(context.Background(), &heavy, "h-fetch", func(context.Context) ([]byte, error) {
		return make([]byte, 300), nil
	})
	if err != nil || len(v) != 300 || src != SourceFetched {
		t.Fatalf("GetOrFetchFor over budget: %d bytes, %v %v", len(v), src, err)
	}
	n, _ := r.conn.Do(context.Background(), r.conn.B().Exists().Key("igw:cache:l:h-fetch").Build()).AsInt64()
	if n != 0 {
		t.Fatal("the claim of a value over budget was kept")
	}
	// Set charges nobody.
	if !r.cache.Set("free", make([]byte, 200)) {
		t.Fatal("Set refused")
	}
}
