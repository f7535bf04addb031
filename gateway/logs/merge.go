package logs

import (
	"context"
	"sync"

	"github.com/infura-gateway/infura-gateway/proto"
	"github.com/infura-gateway/infura-gateway/upstream"
)

// merge collects the chunks' logs; the answer is assembled once every chunk is in, in
// one allocation of its exact size (appending as chunks arrive would grow a buffer by
// doubling, holding up to three times the answer at the last growth).
type merge struct {
	mu      sync.Mutex
	parts   [][]byte // each chunk's logs, in chunk order
	total   int      // bytes of logs received so far, every chunk, with their commas
	failed  bool     // set once; the first failure is the answer
	perr    *proto.Error
	errAns  []byte // a node's error answer (id 1) that is the query's answer
	stop    context.CancelFunc
	maxSize int
	// answers counts the chunks received (held) until the query's answer is assembled:
	// they wait for the slowest chunk, and concurrent queries would otherwise hold
	// -max-response-body each outside -max-answer-bytes.
	answers *upstream.AnswerBudget
	held    int64
}

func (m *merge) fail(perr *proto.Error, errAns []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failed {
		return
	}
	m.failed, m.perr, m.errAns = true, perr, errAns
	m.stop()
}

// add files chunk i's logs (the inside of its result array). Past the byte budget the
// query fails at once: the chunks not yet asked for are never asked.
func (m *merge) add(i int, logs []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failed {
		return
	}
	m.total += len(logs) + 1
	if m.maxSize > 0 && m.total > m.maxSize {
		m.failed, m.perr = true, errAnswerTooLarge
		m.stop()
		return
	}
	m.parts[i] = logs
	m.answers.Recount(&m.held, m.total)
}

// assemble appends the answer with id to dst.
func (m *merge) assemble(dst, id []byte) []byte {
	const head, tail = `{"jsonrpc":"2.0","id":`, `,"result":[`
	if need := len(dst) + len(head) + len(id) + len(tail) + m.total + 2; cap(dst) < need {
		dst = append(make([]byte, 0, need), dst...)
	}
	dst = append(append(append(dst, head...), id...), tail...)
	first := true
	for i, p := range m.parts {
		if len(p) == 0 {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, p...)
		m.parts[i] = nil
	}
	return append(dst, "]}"...)
}
