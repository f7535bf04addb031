package logs

import (
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/upstream"
)

// The chunks a query has received stay counted in the process's answer budget while
// they wait for the others, and are given back once the answer is assembled: a query
// held up to -max-response-body outside -max-answer-bytes until its slowest chunk came,
// so concurrent wide queries could hold many times the budget.
func TestGetLogsChunksCountedWhileWaiting(t *testing.T) {
	f := &fakeNode{perBlock: 1}
	f.head.Store(1999)
	answers := upstream.NewAnswerBudget(64<<20, nil)
	const chunk = 1000 // blocks 0..1999: two chunks of ~400 KB, each past the budget's 64 KiB floor
	var seen int64
	f.onCall = func(n int64) {
		if n != 2 {
			return
		}
		// The second chunk is asked for while the first is answered: it answers only
		// once the first is filed and counted, or the test gives up.
		until := time.Now().Add(10 * time.Second)
		for seen = answers.Held(); seen == 0 && time.Now().Before(until); seen = answers.Held() {
			time.Sleep(time.Millisecond)
		}
	}
	s := newSplitter(t, settings(chunk, 2), f, nil)
	ans, handled, perr := serve(t, s, f, `[{"fromBlock":"0x0","toBlock":"0x7cf"}]`, Limits{Answers: answers})
	if !handled || perr != nil || len(ans) < 2*chunk*300 {
		t.Fatalf("handled %v, error %v, %d bytes", handled, perr, len(ans))
	}
	if seen == 0 {
		t.Fatal("a chunk received was not counted in the answer budget while the other was outstanding")
	}
	if got := answers.Held(); got != 0 {
		t.Fatalf("held %d after the query was answered, want 0", got)
	}
}
