package upstream

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
)

// A batch's answers stay counted in the answer budget from their read until the
// batch's Reset: while they wait for the batch's other answers (over the websocket a
// slow element keeps the rest waiting) and while the caller copies them into the
// client's answer. Before, each left the budget as it was filed, and concurrent
// batches held many times -max-answer-bytes.
func TestBatchAnswersCountedUntilReset(t *testing.T) {
	cases := []struct {
		name string
		call func(t *testing.T, b *AnswerBudget, bt *Batch) error
	}{
		{"http", func(t *testing.T, b *AnswerBudget, bt *Batch) error {
			url, _ := answerServer(t)
			p := budgetPool(t, url, 2, b)
			bt.Add(request("big", `[]`), []byte("1"))
			bt.Add(request("small", `[]`), []byte("2"))
			return p.CallBatch(bt, time.Now().Add(10*time.Second))
		}},
		{"websocket", func(t *testing.T, b *AnswerBudget, bt *Batch) error {
			f := newFakeUpstream(t, false)
			m := startMux(t, f, func(c *MuxConfig) { c.Conns, c.Answers = 1, b })
			bt.Add(request("big", `[`+strconv.Itoa(bigAnswer)+`]`), []byte("1"))
			// Never answered: the big answer waits for it until the batch's deadline.
			bt.Add(request("silent", `[]`), []byte("2"))
			return m.CallBatch(bt, time.Now().Add(300*time.Millisecond))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := NewAnswerBudget(64<<20, nil)
			var bt Batch
			err := tc.call(t, b, &bt)
			if ans, e := bt.Answer(0); e != nil || len(ans) < bigAnswer {
				t.Fatalf("the big element: %d bytes, %v (batch: %v)", len(ans), e, err)
			}
			want := reserved(int64(len(bt.body)))
			if got := b.Held(); want <= 0 || got != want {
				t.Fatalf("held %d once the batch returned, want %d (its %d answer bytes past the floor): "+
					"its answers left the budget before their caller used them", got, want, len(bt.body))
			}
			bt.Reset()
			if got := b.Held(); got != 0 {
				t.Fatalf("held %d after Reset, want 0", got)
			}
		})
	}
}

// An upstream that refuses a whole batch with one error object gets it repeated for
// every request only while the copies fit the largest answer the pool reads; a huge one
// (a hostile upstream's) is a bad answer for every request, not the error times the
// batch's length in memory.
func TestBatchWholeErrorRepeatedWithinLimit(t *testing.T) {
	small := `{"jsonrpc":"2.0","id":null,"error":{"code":-32005,"message":"too many requests"}}`
	big := `{"jsonrpc":"2.0","id":null,"error":{"code":-32000,"message":"` + strings.Repeat("x", 64<<10) + `"}}`
	cases := []struct {
		name  string
		body  string
		reqs  int
		limit int
		want  *proto.Error
	}{
		{"small error, large batch", small, 1000, 4 << 20, nil},
		{"large error, one request", big, 1, 4 << 20, nil},
		{"large error, copies past the limit", big, 1000, 4 << 20, proto.ErrBadUpstream},
		{"copies just within the limit", big, (4 << 20) / len(big), 4 << 20, nil},
		{"copies just past the limit", big, (4<<20)/len(big) + 1, 4 << 20, proto.ErrBadUpstream},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var bt Batch
			for i := range tc.reqs {
				bt.Add(request("eth_call", `[]`), []byte(strconv.Itoa(i)))
			}
			bt.start(nil)
			if got := bt.fileAnswers([]byte(tc.body), tc.limit); got != tc.want {
				t.Fatalf("fileAnswers: %v, want %v", got, tc.want)
			}
			if tc.want != nil {
				if len(bt.body) != 0 {
					t.Fatalf("%d bytes filed for a refused answer", len(bt.body))
				}
				return
			}
			if len(bt.body) > tc.limit+tc.reqs*8 {
				t.Fatalf("%d bytes filed, past the limit %d", len(bt.body), tc.limit)
			}
			last, e := bt.Answer(tc.reqs - 1)
			if e != nil || !strings.Contains(string(last), `"id":`+strconv.Itoa(tc.reqs-1)+`,`) {
				t.Fatalf("the last request's answer: %.80s, %v", last, e)
			}
		})
	}
}
