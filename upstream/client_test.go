package upstream

import (
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
)

// A minimal client of the upstream package for its own tests: it parses a request or a
// batch as the gateway's pipeline does and calls the Mux, answering in request order.

// callBody parses body (one request or a batch) and calls m synchronously. The answer
// is what the client would receive: nothing for notifications.
func callBody(m *Mux, body string, deadline time.Time) (string, error) {
	b := []byte(body)
	if proto.FirstByte(b) == '[' {
		return callBatchBody(m, b, deadline)
	}
	var r proto.Request
	if perr := r.Parse(b); perr != nil {
		return string(proto.AppendError(nil, r.ID, perr)), nil
	}
	id := r.ID
	if id == nil {
		id = gatewayID1
	}
	ans, err := m.Call(nil, &r, id, deadline)
	if err != nil {
		return "", err
	}
	if r.ID == nil {
		return "", nil
	}
	return string(ans), nil
}

func callBatchBody(m *Mux, b []byte, deadline time.Time) (string, error) {
	it, err := proto.NewArrayIter(b)
	if err != nil {
		return "", proto.ErrParse
	}
	var bt Batch
	var ids [][]byte
	for {
		el, ok, err := it.Next()
		if err != nil {
			return "", proto.ErrParse
		}
		if !ok {
			break
		}
		r := new(proto.Request)
		if perr := r.Parse(el.Bytes(b)); perr != nil {
			return "", perr
		}
		id := r.ID
		ids = append(ids, r.ID)
		if id == nil {
			id = gatewayID1
		}
		bt.Add(r, id)
	}
	if err := m.CallBatch(&bt, deadline); err != nil {
		return "", err
	}
	out := []byte{'['}
	for i := range bt.Reqs {
		if ids[i] == nil {
			continue
		}
		if len(out) > 1 {
			out = append(out, ',')
		}
		ans, e := bt.Answer(i)
		if e != nil {
			out = proto.AppendError(out, ids[i], e)
		} else {
			out = append(out, ans...)
		}
	}
	if len(out) == 1 {
		return "", nil
	}
	return string(append(out, ']')), nil
}

// sendBody is the asynchronous callBody: the answer (or the error, carrying the
// client's id) goes to sink when it comes.
func sendBody(m *Mux, sink *chanSink, body string, deadline time.Time) {
	go func() {
		ans, err := callBody(m, body, deadline)
		if err != nil {
			var r proto.Request
			_ = r.Parse([]byte(body))
			if r.ID == nil && proto.FirstByte([]byte(body)) != '[' {
				return
			}
			ans = string(proto.AppendError(nil, r.ID, err.(*proto.Error)))
		}
		if ans != "" {
			sink.Reply([]byte(ans))
		}
	}()
}

func mustCall(t testing.TB, m *Mux, body string) string {
	t.Helper()
	ans, err := callBody(m, body, time.Now().Add(20*time.Second))
	if err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	return ans
}
