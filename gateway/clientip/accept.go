package clientip

import (
	"errors"
	"net"
	"syscall"
	"time"
)

// Persistent wraps ln so that an Accept failing for want of a resource (file
// descriptors: EMFILE, ENFILE; kernel memory: ENOBUFS, ENOMEM) waits and tries again,
// 5 ms doubling up to 1 s, as net/http does, instead of returning. fasthttp's Serve
// returns on any Accept error but a timeout, and the gateway exits with it: a client
// holding enough idle connections to reach the descriptor limit stopped the listener
// for every client, for good. failed, when set, is called with each such error.
// Other errors (the listener closed) are returned as they are.
func Persistent(ln net.Listener, failed func(error)) net.Listener {
	return &persistent{Listener: ln, failed: failed}
}

type persistent struct {
	net.Listener
	failed func(error)
}

func (l *persistent) Accept() (net.Conn, error) {
	var delay time.Duration
	for {
		c, err := l.Listener.Accept()
		if err == nil || !Exhausted(err) {
			return c, err
		}
		if l.failed != nil {
			l.failed(err)
		}
		if delay == 0 {
			delay = 5 * time.Millisecond
		} else if delay *= 2; delay > time.Second {
			delay = time.Second
		}
		time.Sleep(delay)
	}
}

// Exhausted reports whether err says the process or the system ran out of file
// descriptors or kernel memory: an Accept that fails so succeeds once some are freed.
func Exhausted(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}
