package observability

import (
	"bufio"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The shutdown the chart's lifecycle values are built on (preStop, DRAIN_DELAY,
// SHUTDOWN_TIMEOUT, the NLB's deregistration delay): on SIGTERM the gateway turns
// /readyz to 503 on both listeners while it keeps serving, closes its websocket
// clients with 1001 and a reconnect hint spread over DRAIN_DELAY (not all at once:
// they would reconnect in one burst), and exits within DRAIN_DELAY +
// SHUTDOWN_TIMEOUT. Black box: the built binary, a fake upstream, raw websockets.
func TestLiveDrainSpreadsWebsocketCloses(t *testing.T) {
	bin := os.Getenv("GATEWAY_BIN")
	if bin == "" {
		bin = filepath.Join(t.TempDir(), "infura-gateway")
		build := exec.Command("go", "build", "-o", bin, ".")
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build of the gateway: %v\n%s", err, out)
		}
	}
	const (
		clients  = 20
		drain    = 4 * time.Second
		shutdown = 3 * time.Second
	)
	httpUp := httptest.NewServer(http.HandlerFunc(fakeRPC))
	defer httpUp.Close()
	wsUp := httptest.NewServer(http.HandlerFunc(fakeWebsocketRPC))
	defer wsUp.Close()

	public, admin := freeAddr(t), freeAddr(t)
	cmd := exec.Command(bin, "-listen", public, "-admin-listen", admin, "-log-level", "error",
		"-upstream-http", httpUp.URL, "-upstream-ws", "ws"+strings.TrimPrefix(wsUp.URL, "http"))
	cmd.Env = append(os.Environ(), "DRAIN_DELAY="+drain.String(), "SHUTDOWN_TIMEOUT="+shutdown.String())
	logs, exited := startProcess(t, cmd)
	deadline := time.Now().Add(15 * time.Second)
	for {
		if status, _, err := get("http://" + public + "/readyz"); err == nil && status == 200 {
			break
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("the gateway exited (%v):\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway is not ready on %s:\n%s", public, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	type closed struct {
		at     time.Time
		code   int
		reason string
		err    error
	}
	results := make(chan closed, clients)
	var conns []net.Conn
	for range clients {
		c, err := dialWebsocket(public, "/socket2socket")
		if err != nil {
			t.Fatalf("websocket client: %v\n%s", err, logs.String())
		}
		conns = append(conns, c)
		go func() {
			code, reason, err := readUntilClose(c)
			results <- closed{time.Now(), code, reason, err}
		}()
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	time.Sleep(200 * time.Millisecond) // every upgrade handled before the signal

	sigterm := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Draining: not ready on either listener, alive and serving meanwhile.
	time.Sleep(300 * time.Millisecond)
	for _, c := range []struct {
		url  string
		want int
	}{
		{"http://" + public + "/readyz", 503}, {"http://" + admin + "/readyz", 503},
		{"http://" + public + "/health", 200}, {"http://" + admin + "/health", 200},
	} {
		if status, _, err := get(c.url); err != nil || status != c.want {
			t.Errorf("draining: GET %s = %d %v, want %d", c.url, status, err, c.want)
		}
	}

	var got []closed
	timeout := time.After(drain + shutdown + 5*time.Second)
	for len(got) < clients {
		select {
		case r := <-results:
			got = append(got, r)
		case <-timeout:
			t.Fatalf("%d of %d websocket clients closed within DRAIN_DELAY + SHUTDOWN_TIMEOUT", len(got), clients)
		}
	}
	sort.Slice(got, func(i, j int) bool { return got[i].at.Before(got[j].at) })
	bad, late := 0, 0
	for _, r := range got {
		if r.err != nil || r.code != 1001 || !strings.Contains(r.reason, "reconnect") {
			if bad++; bad == 1 {
				t.Errorf("a client got close %d %q (%v), want 1001 with a reconnect hint (\"draining, reconnect\")", r.code, r.reason, r.err)
			}
		}
		if d := r.at.Sub(sigterm); d > drain+time.Second {
			if late++; late == 1 {
				t.Errorf("a client was closed %v after SIGTERM, past DRAIN_DELAY %v", d, drain)
			}
		}
	}
	if bad+late > 0 {
		t.Logf("%d of %d clients closed without the reconnect hint, %d after DRAIN_DELAY", bad, clients, late)
	}
	// Spread over the window: the first and last close at least half of it apart, and
	// no more than a quarter of the clients in any tenth of it.
	if span := got[len(got)-1].at.Sub(got[0].at); span < drain/2 {
		t.Errorf("websocket closes span %v of a %v drain: they must be spread, not all at once", span, drain)
	}
	for i := range got {
		n := 0
		for j := i; j < len(got) && got[j].at.Sub(got[i].at) < drain/10; j++ {
			n++
		}
		if n > clients/4 {
			t.Errorf("%d of %d websocket clients closed within %v of each other: a reconnect burst", n, clients, drain/10)
			break
		}
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Errorf("the gateway exited with %v after SIGTERM:\n%s", err, logs.String())
		}
	case <-time.After(drain + shutdown + 5*time.Second - time.Since(sigterm)):
		t.Errorf("the gateway did not exit within DRAIN_DELAY + SHUTDOWN_TIMEOUT of SIGTERM")
	}
}

var rpcID = regexp.MustCompile(`"id"\s*:\s*("[^"]*"|[0-9]+)`)

// rpcAnswers answers every JSON-RPC id of a request with "0x1" (a block number, a
// chain id, a subscription id: enough to keep a gateway busy and connected).
func rpcAnswers(req []byte) []string {
	var out []string
	for _, m := range rpcID.FindAllSubmatch(req, -1) {
		out = append(out, fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"result":"0x1"}`, m[1]))
	}
	return out
}

func fakeRPC(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	answers := rpcAnswers(body)
	w.Header().Set("Content-Type", "application/json")
	switch {
	case len(answers) == 0:
	case strings.HasPrefix(strings.TrimSpace(string(body)), "["):
		fmt.Fprint(w, "["+strings.Join(answers, ",")+"]")
	default:
		fmt.Fprint(w, answers[0])
	}
}

const websocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

func websocketAccept(key string) string {
	h := sha1.Sum([]byte(key + websocketGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// fakeWebsocketRPC is a websocket JSON-RPC node: every request's ids answered with
// "0x1", pings answered, until the gateway closes.
func fakeWebsocketRPC(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Sec-WebSocket-Key")
	hj, ok := w.(http.Hijacker)
	if !ok || key == "" {
		http.Error(w, "not a websocket upgrade", http.StatusBadRequest)
		return
	}
	conn, rw, err := hj.Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", websocketAccept(key))
	if rw.Flush() != nil {
		return
	}
	var mu sync.Mutex
	send := func(op byte, payload []byte) error {
		mu.Lock()
		defer mu.Unlock()
		_, err := conn.Write(frame(op, payload, false))
		return err
	}
	var message []byte
	for {
		fin, op, payload, err := readFrame(rw.Reader)
		if err != nil {
			return
		}
		switch op {
		case 0x8:
			_ = send(0x8, payload)
			return
		case 0x9:
			_ = send(0xA, payload)
		case 0x0, 0x1, 0x2:
			message = append(message, payload...)
			if !fin {
				continue
			}
			answers := rpcAnswers(message)
			if strings.HasPrefix(strings.TrimSpace(string(message)), "[") && len(answers) > 0 {
				answers = []string{"[" + strings.Join(answers, ",") + "]"}
			}
			for _, a := range answers {
				if send(0x1, []byte(a)) != nil {
					return
				}
			}
			message = message[:0]
		}
	}
}

// frame encodes one final websocket frame; clients mask theirs.
func frame(op byte, payload []byte, mask bool) []byte {
	b := []byte{0x80 | op}
	m := byte(0)
	if mask {
		m = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		b = append(b, m|byte(n))
	case n < 1<<16:
		b = append(b, m|126, byte(n>>8), byte(n))
	default:
		b = append(b, m|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	if !mask {
		return append(b, payload...)
	}
	var key [4]byte
	_, _ = rand.Read(key[:])
	b = append(b, key[:]...)
	for i, c := range payload {
		b = append(b, c^key[i%4])
	}
	return b
}

func readFrame(r *bufio.Reader) (fin bool, op byte, payload []byte, err error) {
	var h [2]byte
	if _, err = io.ReadFull(r, h[:]); err != nil {
		return
	}
	fin, op = h[0]&0x80 != 0, h[0]&0x0F
	n := uint64(h[1] & 0x7F)
	switch n {
	case 126:
		var ext [2]byte
		if _, err = io.ReadFull(r, ext[:]); err != nil {
			return
		}
		n = uint64(binary.BigEndian.Uint16(ext[:]))
	case 127:
		var ext [8]byte
		if _, err = io.ReadFull(r, ext[:]); err != nil {
			return
		}
		n = binary.BigEndian.Uint64(ext[:])
	}
	if n > 64<<20 {
		return fin, op, nil, errors.New("frame too large")
	}
	var key [4]byte
	masked := h[1]&0x80 != 0
	if masked {
		if _, err = io.ReadFull(r, key[:]); err != nil {
			return
		}
	}
	payload = make([]byte, n)
	if _, err = io.ReadFull(r, payload); err != nil {
		return
	}
	if masked {
		for i := range payload {
			payload[i] ^= key[i%4]
		}
	}
	return
}

type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// dialWebsocket opens a client websocket (the handshake only; frames are read raw).
func dialWebsocket(addr, path string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	var k [16]byte
	_, _ = rand.Read(k[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", path, addr, key)
	br := bufio.NewReader(c)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != websocketAccept(key) {
		c.Close()
		return nil, fmt.Errorf("websocket upgrade of %s: %s", path, resp.Status)
	}
	_ = c.SetReadDeadline(time.Time{})
	return bufferedConn{c, br}, nil
}

// readUntilClose reads frames until the server's close frame and returns its code and
// reason; pings are answered.
func readUntilClose(c net.Conn) (int, string, error) {
	br := bufio.NewReader(c)
	for {
		_, op, payload, err := readFrame(br)
		if err != nil {
			return 0, "", fmt.Errorf("no close frame: %w", err)
		}
		switch op {
		case 0x8:
			if len(payload) < 2 {
				return 1005, "", nil
			}
			_, _ = c.Write(frame(0x8, payload[:2], true))
			return int(binary.BigEndian.Uint16(payload)), string(payload[2:]), nil
		case 0x9:
			_, _ = c.Write(frame(0xA, payload, true))
		}
	}
}
