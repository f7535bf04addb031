package upstream

import (
	"bufio"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
)

// declaringServer answers every request with a header declaring a body of length
// bytes, then the first sent bytes of it, then, once release is closed, the rest.
func declaringServer(t *testing.T, length, sent int, release <-chan struct{}) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	body := `{"jsonrpc":"2.0","id":1,"result":"` + strings.Repeat("d", length-len(`{"jsonrpc":"2.0","id":1,"result":""}`)) + `"}`
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = req.Body.Read(make([]byte, 4096))
					_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(length) + "\r\n\r\n" + body[:sent]))
					<-release
					_, _ = c.Write([]byte(body[sent:]))
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// A body an answer's header declares is reserved in the answer budget before it is
// read: fasthttp allocates a declared body's buffer whole from the header, so an
// upstream declaring -max-response-body and sending nothing held that much per call
// outside the budget until the call's deadline. One that does not fit is refused at
// once, its body unread; one that fits is counted whole while it arrives.
func TestAnswerBudgetReservesDeclaredBody(t *testing.T) {
	const declared = 3 << 20 // under budgetPool's 4 MiB -max-response-body
	t.Run("refused", func(t *testing.T) {
		release := make(chan struct{})
		defer close(release)
		b := NewAnswerBudget(1<<20, nil)
		p := budgetPool(t, declaringServer(t, declared, 10, release), 1, b)
		start := time.Now()
		_, err := p.Call(nil, request("eth_call", `[]`), []byte("7"), start.Add(20*time.Second))
		if err != proto.ErrAnswerBudget {
			t.Fatalf("an answer declaring %d bytes with a 1 MiB budget: %v, want %v (refused from its header)", declared, err, proto.ErrAnswerBudget)
		}
		if got := b.Held(); got != 0 {
			t.Fatalf("held %d after the refusal, want 0", got)
		}
	})
	t.Run("read into a buffer of its size", func(t *testing.T) {
		release := make(chan struct{})
		close(release)
		p := budgetPool(t, declaringServer(t, declared+1, 10, release), 1, NewAnswerBudget(64<<20, nil))
		// Id 1: the answer leaves in the buffer it was read into.
		ans, err := p.Call(nil, request("eth_call", `[]`), []byte("1"), time.Now().Add(20*time.Second))
		if err != nil || len(ans) != declared+1 {
			t.Fatalf("answer of %d bytes, %v", len(ans), err)
		}
		if cap(ans) != declared+1 {
			t.Fatalf("an answer of %d bytes was read into a buffer of %d", len(ans), cap(ans))
		}
	})
	t.Run("counted while it arrives", func(t *testing.T) {
		release := make(chan struct{})
		b := NewAnswerBudget(64<<20, nil)
		p := budgetPool(t, declaringServer(t, declared, 10, release), 1, b)
		done := make(chan error, 1)
		go func() {
			ans, err := p.Call(nil, request("eth_call", `[]`), []byte("7"), time.Now().Add(20*time.Second))
			if err == nil && len(ans) != declared {
				t.Errorf("answer of %d bytes, want %d", len(ans), declared)
			}
			done <- err
		}()
		waitFor(t, "the declared body reserved before it is sent", func() bool { return b.Held() >= declared-AnswerFloor })
		close(release)
		if err := <-done; err != nil {
			t.Fatalf("the answer once sent: %v", err)
		}
		if got := b.Held(); got != 0 {
			t.Fatalf("held %d after the call returned, want 0", got)
		}
	})
}
