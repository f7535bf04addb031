package redisconn

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// The circuit breaker: consecutive failures take the connection down; a probe loop
// (a raw RESP PING on a fresh TCP/TLS connection) brings it back, and a READONLY reply
// (a failover left the client on a replica) redials the endpoint.

// report feeds the breaker: a network error or our deadline counts as a failure, anything
// Redis answered (including an error reply) as a success. A call its caller cancelled
// (parent ctx done) says nothing about Redis.
func (c *Conn) report(parent context.Context, err error) {
	if err == nil {
		c.fails.Store(0)
		return
	}
	c.errs.Inc()
	if errors.Is(err, ErrDown) || parent.Err() != nil {
		return
	}
	n := c.fails.Add(1)
	if n >= int32(c.cfg.FailureThreshold) {
		c.setUp(false)
	} else if n == 1 {
		c.kick() // the probe makes the Conn clean again, or counts on towards the threshold
	}
}

// readOnly asks the probe goroutine to redial (the endpoint now resolves to the new
// primary) and returns the failure to report.
func (c *Conn) readOnly() error {
	c.readonly.Store(true)
	c.kick()
	return errReadOnly
}

// redial replaces the client with a new one dialled to Addr. The old one is closed once
// the calls under way on it have had their deadline, so they end normally.
func (c *Conn) redial() {
	// A failed dial still yields a client (ForceSingleClient) that dials again on use; nil
	// would mean a configuration error, impossible with the options New accepted.
	nc, _ := rueidis.NewClient(c.opt)
	if nc == nil {
		return
	}
	old := c.client.Swap(&nc)
	c.readonlyReconnects.Inc()
	c.wg.Add(1)
	time.AfterFunc(2*c.cfg.CallTimeout, func() {
		defer c.wg.Done()
		(*old).Close()
	})
}

func (c *Conn) setUp(up bool) {
	c.mu.Lock()
	if c.up.Load() == up {
		c.mu.Unlock()
		return
	}
	c.up.Store(up)
	if up {
		c.fails.Store(0)
		c.closes.Inc()
	} else {
		c.opens.Inc()
	}
	close(c.watch)
	c.watch = make(chan struct{})
	c.mu.Unlock()
	if l := c.cfg.Log; l != nil {
		if up {
			l.Info("redis reachable again: circuit breaker closed", "client", c.cfg.Name)
		} else {
			l.Warn("redis unreachable: circuit breaker open", "client", c.cfg.Name, "error", c.downErr().Error())
		}
	}
	if !up {
		c.kick()
	}
}

func (c *Conn) kick() {
	select {
	case c.probe <- struct{}{}:
	default:
	}
}

// probeLoop is the only goroutine the Conn starts. While the breaker is open it sends one
// PING per ProbeInterval (bounded by CallTimeout) and closes the breaker when one answers.
func (c *Conn) probeLoop() {
	defer c.wg.Done()
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-c.probe:
		}
		// Down, or up after a failure (not clean): probe until Redis answers.
		for !c.up.Load() || c.fails.Load() > 0 || c.readonly.Load() {
			if c.readonly.Swap(false) {
				c.redial() // at once; a READONLY again waits for the next round
			}
			t.Reset(c.cfg.ProbeInterval)
			select {
			case <-c.stop:
				t.Stop()
				return
			case <-t.C:
			}
			// Redis answers on a fresh connection; then make the client's one connection
			// answer too (a connection broken by the outage fails once, then is redialled),
			// so the first calls after recovery do not fail and trip the breaker again.
			ok := c.probeOnce() == nil && (c.Ping(context.Background()) == nil || c.Ping(context.Background()) == nil)
			switch {
			case ok && !c.up.Load():
				c.setUp(true)
			case ok:
				c.fails.Store(0)
			case c.up.Load() && c.fails.Add(1) >= int32(c.cfg.FailureThreshold):
				c.setUp(false)
			}
		}
	}
}

// probeOnce checks Redis on a connection of its own: dial, AUTH if configured, PING, all
// within DialTimeout + CallTimeout, then close. It does not go through the client, whose
// connection may be stuck on a frozen Redis: a probe through it would leave a goroutine
// waiting for an answer per probe until that connection is dropped.
func (c *Conn) probeOnce() error {
	c.calls.Inc()
	err := probe(c.cfg)
	if err != nil {
		c.errs.Inc()
	}
	switch err {
	case ErrAuth, ErrNoAuth: // probe returns them as they are
		if w := c.why.Load(); w == nil || w.cause != err {
			c.why.Store(&downError{cause: err})
		}
	case nil:
		c.why.Store(nil)
	}
	return err
}

func probe(cfg Config) error {
	var nc net.Conn
	var err error
	d := &net.Dialer{Timeout: cfg.DialTimeout}
	if cfg.TLS != nil {
		nc, err = tls.DialWithDialer(d, "tcp", cfg.Addr, cfg.TLS)
	} else {
		nc, err = d.Dial("tcp", cfg.Addr)
	}
	if err != nil {
		return err
	}
	defer nc.Close()
	if err := nc.SetDeadline(time.Now().Add(cfg.CallTimeout)); err != nil {
		return err
	}
	var req []byte
	want := 1
	if cfg.Password != "" {
		args := []string{"AUTH", cfg.Password}
		if cfg.Username != "" {
			args = []string{"AUTH", cfg.Username, cfg.Password}
		}
		req = appendCommand(req, args...)
		want++
	}
	req = appendCommand(req, "PING")
	if _, err := nc.Write(req); err != nil {
		return err
	}
	r := bufio.NewReaderSize(nc, 256)
	for i := 0; i < want; i++ {
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasPrefix(line, "+") {
			// An error reply: never echo anything we sent, but say what it means when
			// Redis says so.
			switch {
			case strings.HasPrefix(line, "-WRONGPASS"), strings.HasPrefix(line, "-ERR invalid password"),
				strings.HasPrefix(line, "-ERR invalid username-password"):
				return ErrAuth
			case strings.HasPrefix(line, "-NOAUTH"):
				return ErrNoAuth
			case i == 0 && strings.Contains(line, "without any password configured"):
				// A password Redis does not ask for: the client is served all the same,
				// so the probe must not keep the breaker open over it.
				continue
			}
			return errors.New("redis answered the probe with an error")
		}
	}
	return nil
}

func appendCommand(b []byte, args ...string) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(len(args)), 10)
	b = append(b, "\r\n"...)
	for _, a := range args {
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(a)), 10)
		b = append(b, "\r\n"...)
		b = append(b, a...)
		b = append(b, "\r\n"...)
	}
	return b
}
