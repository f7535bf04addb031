package logs

import (
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/upstream"
)

// The logs a query has received stay counted in the process's answer budget while they
// wait for the rest, and are given back once the answer is assembled: a query held up
// to -max-response-body outside -max-answer-bytes until its slowest part came, so
// concurrent wide queries could hold many times the budget. The parts that wait: a
// chunk for the query's other chunks, the left half of a chunk a provider capped for
// its right half.
func TestGetLogsPartsCountedWhileWaiting(t *testing.T) {
	cases := []struct {
		name     string
		node     *fakeNode
		split    uint64
		parallel int
		waitCall int64 // the eth_getLogs call asked for while another part is held
	}{
		// Blocks 0..1999 in two chunks of ~400 KB (past the budget's 64 KiB floor), asked
		// for at once: the second answers only once the first is counted.
		{name: "chunks", node: &fakeNode{perBlock: 1}, split: 1000, parallel: 2, waitCall: 2},
		// One chunk of 2,000 blocks, capped at 1,000: call 2 is its left half, call 3
		// its right half, asked for while the left one waits.
		{name: "halves", node: &fakeNode{perBlock: 1, maxRange: 1000, errCode: -32000, errText: "range exceeds %d"},
			split: 2000, parallel: 1, waitCall: 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.node
			f.head.Store(1999)
			answers := upstream.NewAnswerBudget(64<<20, nil)
			var seen int64
			f.onCall = func(n int64) {
				if n != tc.waitCall {
					return
				}
				until := time.Now().Add(10 * time.Second)
				for seen = answers.Held(); seen == 0 && time.Now().Before(until); seen = answers.Held() {
					time.Sleep(time.Millisecond)
				}
			}
			s := newSplitter(t, settings(tc.split, tc.parallel), f, nil)
			ans, handled, perr := serve(t, s, f, `[{"fromBlock":"0x0","toBlock":"0x7cf"}]`, Limits{Answers: answers})
			if !handled || perr != nil || len(ans) < 2000*300 {
				t.Fatalf("handled %v, error %v, %d bytes", handled, perr, len(ans))
			}
			if seen == 0 {
				t.Fatalf("logs received were not counted in the answer budget while call %d was outstanding", tc.waitCall)
			}
			if got := answers.Held(); got != 0 {
				t.Fatalf("held %d after the query was answered, want 0", got)
			}
		})
	}
}
