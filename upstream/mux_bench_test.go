package upstream

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
)

// rawUpstream is a minimal websocket JSON-RPC server that allocates nothing per message,
// so testing.AllocsPerRun and -benchmem see only the Mux's allocations. It answers every
// request with {"jsonrpc":"2.0","id":<id>,"result":"0x1"}.
type rawUpstream struct {
	url string
	ln  net.Listener
	wg  sync.WaitGroup
	mu  sync.Mutex
	cs  []net.Conn
}

func newRawUpstream(t testing.TB) *rawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{url: "ws://" + ln.Addr().String(), ln: ln}
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.mu.Lock()
			u.cs = append(u.cs, c)
			u.mu.Unlock()
			u.wg.Add(1)
			go func() { defer u.wg.Done(); u.serve(c) }()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		u.mu.Lock()
		for _, c := range u.cs {
			_ = c.Close()
		}
		u.mu.Unlock()
		u.wg.Wait()
	})
	return u
}

func (u *rawUpstream) serve(c net.Conn) {
	br := bufio.NewReaderSize(c, 64<<10)
	bw := bufio.NewWriterSize(c, 64<<10)
	key := ""
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimSpace(line)
		if line == "" {
			break
		}
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "Sec-WebSocket-Key") {
			key = strings.TrimSpace(v)
		}
	}
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	_, _ = bw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		base64.StdEncoding.EncodeToString(h[:]) + "\r\n\r\n")
	_ = bw.Flush()
	var hdr [14]byte
	payload := make([]byte, 0, 64<<10)
	out := make([]byte, 0, 256)
	var msg proto.Message
	for {
		if _, err := io.ReadFull(br, hdr[:2]); err != nil {
			return
		}
		op := hdr[0] & 0x0f
		n := uint64(hdr[1] & 0x7f)
		switch n {
		case 126:
			if _, err := io.ReadFull(br, hdr[2:4]); err != nil {
				return
			}
			n = uint64(binary.BigEndian.Uint16(hdr[2:4]))
		case 127:
			if _, err := io.ReadFull(br, hdr[2:10]); err != nil {
				return
			}
			n = binary.BigEndian.Uint64(hdr[2:10])
		}
		mask := hdr[10:14]
		if _, err := io.ReadFull(br, mask); err != nil {
			return
		}
		if uint64(cap(payload)) < n {
			payload = make([]byte, n)
		}
		payload = payload[:n]
		if _, err := io.ReadFull(br, payload); err != nil {
			return
		}
		for i := range payload {
			payload[i] ^= mask[i&3]
		}
		if op == 8 {
			return
		}
		if op != 1 {
			continue
		}
		if _, err := proto.ScanMessage(payload, &msg); err != nil {
			continue
		}
		out = append(out[:0], `{"jsonrpc":"2.0","id":`...)
		out = append(out, msg.ID.Bytes(payload)...)
		out = append(out, `,"result":"0x1"}`...)
		_ = bw.WriteByte(0x81)
		_ = bw.WriteByte(byte(len(out)))
		_, _ = bw.Write(out)
		if br.Buffered() == 0 {
			if bw.Flush() != nil {
				return
			}
		}
	}
}

var benchReq = func() *proto.Request {
	var r proto.Request
	r.Set([]byte("eth_blockNumber"), nil)
	return &r
}()

var benchID = []byte("42")

func BenchmarkMuxCall(b *testing.B) {
	u := newRawUpstream(b)
	m := startMux(b, &fakeUpstream{url: u.url}, func(c *MuxConfig) { c.Conns = 2 })
	b.ReportAllocs()
	b.SetParallelism(32) // many concurrent callers, as under a loaded REST route
	w0, f0 := m.metrics.writes.Get(), m.metrics.frames.Get()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var buf []byte
		var err error
		for pb.Next() {
			if buf, err = m.Call(buf, benchReq, benchID, time.Now().Add(30*time.Second)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	writes, frames := m.metrics.writes.Get()-w0, m.metrics.frames.Get()-f0
	if writes > 0 {
		b.ReportMetric(float64(frames)/float64(writes), "frames/write")
	}
}

func BenchmarkMuxCallSerial(b *testing.B) {
	u := newRawUpstream(b)
	m := startMux(b, &fakeUpstream{url: u.url}, func(c *MuxConfig) { c.Conns = 1 })
	var buf []byte
	var err error
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if buf, err = m.Call(buf, benchReq, benchID, time.Now().Add(30*time.Second)); err != nil {
			b.Fatal(err)
		}
	}
}
