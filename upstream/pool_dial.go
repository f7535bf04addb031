// Dialling the upstream's HTTP endpoint, held after a failure. With its node down
// (restarting, crashed) every call that reaches an upstream (the last resort when all
// are banned, a probe, a head poll) dials it, and a refused dial takes microseconds:
// the outside audit counted 5,400 connection attempts a second against a restarting
// node. After a failed dial the next ones fail at once for dialHold, and then one
// dial tries again; a node back up is used within dialHold.

package upstream

import (
	"errors"
	"net"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// dialHold is how long dials fail at once after one failed.
const dialHold = 200 * time.Millisecond

// errDialHeld answers a dial held after a failure: a dial error, as the failure was
// (classify: unreachable, nothing sent).
var errDialHeld = &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("upstream unreachable: dial held after a failed one")}

// dialer dials one upstream and holds its dials after a failure.
type dialer struct {
	timeout time.Duration
	// fn dials addr within timeout: fasthttp's (tests put another in place).
	fn       func(addr string, timeout time.Duration) (net.Conn, error)
	failedAt atomic.Int64 // monoNs of the last failed dial (0: none since a success)
}

func newDialer(timeout time.Duration) *dialer {
	return &dialer{timeout: timeout, fn: fasthttp.DialDualStackTimeout}
}

func (d *dialer) dial(addr string) (net.Conn, error) {
	if at := d.failedAt.Load(); at != 0 && monoNs(time.Now())-at < int64(dialHold) {
		return nil, errDialHeld
	}
	c, err := d.fn(addr, d.timeout)
	if err != nil {
		d.failedAt.Store(monoNs(time.Now()))
		return nil, err
	}
	d.failedAt.Store(0)
	return &coarseConn{Conn: c}, nil
}
