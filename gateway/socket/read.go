// Reading a client's message into a pooled buffer, within the bytes of client requests
// the gateway reads at once.

package socket

import (
	"errors"
	"io"

	"github.com/infura-gateway/infura-gateway/gateway/config"
	"github.com/infura-gateway/infura-gateway/gateway/network"
)

// readMessage reads a message of at most limit bytes into buf. A message past
// config.ReadFloor counts its buffer in reading (the process's bytes of client requests being
// read, -max-body-read-bytes) before the buffer grows, and stops with errReadingBudget
// when it does not fit; held is what it took, for the caller to give back. A full
// buffer grows only once a byte more has come (a message that fills it exactly takes
// no more), and never past limit (the reader fails a longer message).
func readMessage(r io.Reader, buf []byte, limit int, reading *network.Budget) (_ []byte, held int, err error) {
	for {
		if len(buf) == cap(buf) {
			var one [1]byte
			n, err := r.Read(one[:])
			if n == 0 {
				if err == io.EOF {
					return buf, held, nil
				}
				if err != nil {
					return buf, held, err
				}
				continue
			}
			grown := max(min(2*cap(buf), limit), len(buf)+1, 1024)
			if grown > config.ReadFloor && reading != nil {
				if !reading.Acquire(grown - held) {
					return buf, held, errReadingBudget
				}
				held = grown
			}
			buf = append(append(make([]byte, 0, grown), buf...), one[0])
			if err == io.EOF {
				return buf, held, nil
			}
			if err != nil {
				return buf, held, err
			}
			continue
		} else if held == 0 && len(buf) > config.ReadFloor && reading != nil {
			// Past the floor in a pooled buffer it did not grow: the buffer counts.
			if !reading.Acquire(cap(buf)) {
				return buf, held, errReadingBudget
			}
			held = cap(buf)
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, held, nil
		}
		if err != nil {
			return buf, held, err
		}
	}
}

// errReadingBudget ends a message that does not fit in the bytes of client requests
// the gateway reads at once: the client is closed with 1013 (try again later).
var errReadingBudget = errors.New("gateway busy: too many large messages being read, retry later")
