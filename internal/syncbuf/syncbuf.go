// Package syncbuf is a bytes.Buffer that loggers on several goroutines may write while
// a test reads it: the tests' log sink.
package syncbuf

import (
	"bytes"
	"strings"
	"sync"
)

// Buffer is safe for concurrent Write and String.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Filter returns the lines that contain any of subs ("" matches every line).
func (s *Buffer) Filter(subs ...string) string {
	var out strings.Builder
	for _, line := range strings.Split(s.String(), "\n") {
		for _, sub := range subs {
			if strings.Contains(line, sub) {
				out.WriteString(line)
				out.WriteByte('\n')
				break
			}
		}
	}
	return out.String()
}
