package tracing

import (
	"context"
	"encoding/binary"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/internal/syncbuf"
)

func TestParseParent(t *testing.T) {
	const valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	cases := []struct {
		name, in    string
		ok, sampled bool
	}{
		{"sampled", valid, true, true},
		{"not sampled", strings.TrimSuffix(valid, "01") + "00", true, false},
		{"other flags, sampled bit set", strings.TrimSuffix(valid, "01") + "03", true, true},
		{"later version with more fields", "01" + valid[2:] + "-extra", true, true},
		{"version 00 with more fields", valid + "-extra", false, false},
		{"version ff", "ff" + valid[2:], false, false},
		{"upper-case hex", strings.ToUpper(valid), false, false},
		{"zero trace id", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", false, false},
		{"zero span id", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false, false},
		{"short", valid[:54], false, false},
		{"empty", "", false, false},
		{"bad separator", strings.Replace(valid, "-", "_", 1), false, false},
		{"not hex", "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := parseParent([]byte(tc.in))
			if p.ok != tc.ok || p.sampled != tc.sampled {
				t.Fatalf("parseParent(%q) = ok %v sampled %v, want %v %v", tc.in, p.ok, p.sampled, tc.ok, tc.sampled)
			}
		})
	}
}

func FuzzParseParent(f *testing.F) {
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	f.Add("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-x")
	f.Fuzz(func(t *testing.T, s string) {
		var c Call
		c.SetIn(In{Parent: []byte(s)})
		var buf [HeaderLen]byte
		h := c.Header(&buf)
		if !c.parent.ok {
			if h != nil {
				t.Fatalf("%q: invalid, yet passed on as %q", s, h)
			}
			return
		}
		// What is passed on parses again, to the same ids and flag.
		if p := parseParent(h); !p.ok || p.tid != c.parent.tid || p.sid != c.parent.sid || p.sampled != c.parent.sampled {
			t.Fatalf("%q passed on as %q", s, h)
		}
	})
}

func TestRequestID(t *testing.T) {
	cases := []struct {
		name, in string
		kept     bool
	}{
		{"uuid", "3f2504e0-4f89-11d3-9a0c-0305e82c3301", true},
		{"safe punctuation", "req_1.a:b", true},
		{"longest", strings.Repeat("a", MaxRequestIDLen), true},
		{"too long", strings.Repeat("a", MaxRequestIDLen+1), false},
		{"empty", "", false},
		{"space", "a b", false},
		{"newline (log injection)", "a\nb", false},
		{"quote", `a"b`, false},
		{"non-ASCII", "é", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var c Call
			c.SetIn(In{RequestID: []byte(tc.in)})
			got := string(c.RequestID())
			if tc.kept && got != tc.in {
				t.Fatalf("%q replaced by %q", tc.in, got)
			}
			if !tc.kept && (got == tc.in || len(got) != 32 || !ValidRequestID([]byte(got))) {
				t.Fatalf("%q: generated %q, want 32 new hex digits", tc.in, got)
			}
		})
	}
}

// A generated id is 32 lower-case hex digits appended to dst, and ids do not repeat.
func TestAppendRequestID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		b := AppendRequestID([]byte("x-"))
		id := string(b[2:])
		if string(b[:2]) != "x-" || len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
			t.Fatalf("AppendRequestID gave %q", b)
		}
		if seen[id] {
			t.Fatalf("id %s generated twice", id)
		}
		seen[id] = true
	}
	if a := testing.AllocsPerRun(100, func() { var buf [32]byte; AppendRequestID(buf[:0]) }); a != 0 {
		t.Fatalf("AppendRequestID allocates %v times", a)
	}
}

// hex8 writes each nibble of its word as one hex digit, every nibble in a byte of its
// own: a word of one nibble value gives eight of its digit, and a nibble alone gives
// its digit in one byte and '0' in the seven others, a different byte for each nibble.
func TestHex8(t *testing.T) {
	const digits = "0123456789abcdef"
	for n := range uint32(16) {
		if got, want := hex8(n*0x11111111), strings.Repeat(digits[n:n+1], 8); le(got) != want {
			t.Fatalf("hex8(%#x) = %q, want %q", n*0x11111111, le(got), want)
		}
	}
	seen := map[int]bool{}
	for k := range 8 {
		at := -1
		for n := uint32(1); n < 16; n++ {
			got := le(hex8(n << (4 * k)))
			i := strings.IndexFunc(got, func(r rune) bool { return r != '0' })
			if i < 0 || got[i] != digits[n] || strings.Count(got, "0") != 7 || (at >= 0 && i != at) {
				t.Fatalf("hex8(%#x) = %q: want %q once, in one byte for nibble %d", n<<(4*k), got, digits[n], k)
			}
			at = i
		}
		if seen[at] {
			t.Fatalf("nibble %d shares byte %d with another", k, at)
		}
		seen[at] = true
	}
}

func le(w uint64) string {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], w)
	return string(b[:])
}

// An id the gateway settled (TraceIn's: the instrumenter checked or made it) is taken
// as it is; one not settled is checked, and a settled one that is empty or too long is
// not trusted either.
func TestSettledRequestID(t *testing.T) {
	for _, c := range []struct {
		name, id string
		settled  bool
		kept     bool
	}{
		{"settled", "0123456789abcdef0123456789abcdef", true, true},
		{"not settled, valid", "abc", false, true},
		{"not settled, unsafe", "a\nb", false, false},
		{"settled but empty", "", true, false},
		{"settled but too long", strings.Repeat("a", MaxRequestIDLen+1), true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			var call Call
			call.SetIn(In{RequestID: []byte(c.id), Settled: c.settled})
			got := string(call.RequestID())
			if (got == c.id) != c.kept || !ValidRequestID([]byte(got)) {
				t.Fatalf("SetIn(%q, settled %v): id %q, want it kept: %v", c.id, c.settled, got, c.kept)
			}
		})
	}
}

func FuzzRequestID(f *testing.F) {
	f.Add("abc")
	f.Add("a\r\nX-Evil: 1")
	f.Fuzz(func(t *testing.T, s string) {
		var c Call
		c.SetIn(In{RequestID: []byte(s)})
		id := c.RequestID()
		if !ValidRequestID(id) {
			t.Fatalf("%q: request id %q is not safe", s, id)
		}
	})
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		err  string // "" valid
	}{
		{"off", Config{}, ""},
		{"off ignores the rest", Config{Ratio: 7}, ""},
		{"grpc", Config{Exporter: ExporterOTLPGRPC, Endpoint: "http://collector:4317", Ratio: 0.1}, ""},
		{"http with TLS", Config{Exporter: ExporterOTLPHTTP, Endpoint: "https://collector:4318/v1/traces", Ratio: 1}, ""},
		{"unknown exporter", Config{Exporter: "zipkin", Endpoint: "http://c:1"}, "-trace-exporter must be"},
		{"no endpoint", Config{Exporter: ExporterOTLPHTTP}, "needs -trace-endpoint"},
		{"endpoint without scheme", Config{Exporter: ExporterOTLPGRPC, Endpoint: "collector:4317"}, "-trace-endpoint must be"},
		{"ratio over 1", Config{Exporter: ExporterOTLPGRPC, Endpoint: "http://c:1", Ratio: 1.5}, "-trace-sample-ratio"},
		{"negative ratio", Config{Exporter: ExporterOTLPGRPC, Endpoint: "http://c:1", Ratio: -0.1}, "-trace-sample-ratio"},
		{"negative parent rate", Config{Exporter: ExporterOTLPGRPC, Endpoint: "http://c:1", ParentRate: -1}, "-trace-parent-rate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("Validate() = %v, want %q", err, tc.err)
			}
			if err != nil && tc.cfg.Endpoint != "" && strings.Contains(err.Error(), tc.cfg.Endpoint) {
				t.Fatalf("the error quotes the endpoint: %v", err)
			}
		})
	}
}

// TestSampling: the edge's decision, parent-based or by ratio.
func TestSampling(t *testing.T) {
	sampled := In{Parent: []byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")}
	unsampled := In{Parent: []byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")}
	cases := []struct {
		name        string
		ratio       float64
		parentBased bool
		in          In
		want        bool
	}{
		{"ratio 0, no parent", 0, true, In{}, false},
		{"ratio 1, no parent", 1, true, In{}, true},
		{"parent-based follows a sampled parent", 0, true, sampled, true},
		{"parent-based follows an unsampled parent", 1, true, unsampled, false},
		{"ratio alone ignores the parent's flag", 0, false, sampled, false},
		{"ratio alone, 1", 1, false, unsampled, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr := &Tracer{parentBased: tc.parentBased}
			if tc.ratio >= 1 {
				tr.always = true
			}
			var c Call
			c.SetIn(tc.in)
			if got := tr.sample(&c.parent); got != tc.want {
				t.Fatalf("sampled %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("a caller's flag samples at most the parent rate a second", func(t *testing.T) {
		for _, ratio := range []float64{0, 1} {
			tr := &Tracer{parentBased: true, always: ratio == 1}
			tr.parents.max = 3
			var c Call
			c.SetIn(sampled)
			n := 0
			from := time.Now().Unix()
			for range 1000 {
				if tr.sample(&c.parent) {
					n++
				}
			}
			// At most 3 in each second the loop touched (however slow the machine),
			// or all of them by ratio 1.
			seconds := int(time.Now().Unix() - from + 1)
			if ratio == 0 && (n < 3 || n > 3*seconds) || ratio == 1 && n != 1000 {
				t.Fatalf("ratio %v: %d of 1000 calls with a sampled parent traced in %d s, parent rate 3/s", ratio, n, seconds)
			}
		}
	})
	var off *Tracer
	var c Call
	c.SetIn(sampled)
	if off.Begin(&c, "eth_blockNumber", "mainnet") || c.Sampled() {
		t.Fatal("a nil tracer (tracing off) began a span")
	}
}

// TestWindow: the parent-rate window counts per second and starts again on the next.
func TestWindow(t *testing.T) {
	w := window{max: 2}
	sec := int64(time.Second)
	for i, tc := range []struct {
		now  int64
		want bool
	}{{10 * sec, true}, {10*sec + 1, true}, {10*sec + 2, false}, {11 * sec, true}, {11*sec + 5, true}, {11*sec + 9, false}} {
		if got := w.allow(tc.now); got != tc.want {
			t.Fatalf("event %d at %d: allowed %v, want %v", i, tc.now, got, tc.want)
		}
	}
	if !(&window{}).allow(0) {
		t.Fatal("no bound refused")
	}
}

// TestNew: both exporters start without a reachable collector (they connect lazily),
// and off is a nil tracer.
func TestNew(t *testing.T) {
	for _, cfg := range []Config{
		{},
		{Exporter: ExporterOTLPGRPC, Endpoint: "http://127.0.0.1:9", Ratio: 0.5, ParentBased: true},
		{Exporter: ExporterOTLPHTTP, Endpoint: "http://127.0.0.1:9", Ratio: 1},
	} {
		t.Run(cfg.Exporter, func(t *testing.T) {
			tr, err := New(context.Background(), cfg)
			if err != nil || (tr == nil) != (cfg.Exporter == ExporterOff) {
				t.Fatalf("New(%+v) = %v, %v", cfg, tr, err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = tr.Shutdown(ctx) // nothing to flush
		})
	}
}

// Export errors go to the gateway's logger, in its format and at its level.
func TestExportErrorsUseTheGatewaysLogger(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "http://" + ln.Addr().String()
	_ = ln.Close() // nothing listens: every export is refused
	for _, level := range []slog.Level{slog.LevelWarn, slog.LevelError} {
		var out syncbuf.Buffer
		log := slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: level}))
		tr, err := New(context.Background(), Config{Exporter: ExporterOTLPHTTP, Endpoint: endpoint, Ratio: 1, Log: log})
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			var c Call
			c.SetIn(In{})
			if !tr.Begin(&c, "eth_chainId", "default") {
				t.Fatal("not sampled at ratio 1")
			}
			c.End("eth_chainId", "ok", "")
		}
		// The batcher exports within a second and reports the failure in the
		// background: look until it is, or for as long at level error.
		deadline := time.Now().Add(10 * time.Second)
		if level == slog.LevelError {
			deadline = time.Now().Add(3 * time.Second)
		}
		for !strings.Contains(out.String(), "span export failed") && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = tr.Shutdown(ctx)
		cancel()
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		switch {
		case level == slog.LevelError && out.String() != "":
			t.Fatalf("at level error, the exporter's warnings were written:\n%s", out.String())
		case level == slog.LevelWarn && (len(lines) != 1 || !strings.HasPrefix(lines[0], `{"time":`) ||
			!strings.Contains(lines[0], `"level":"WARN"`) || !strings.Contains(lines[0], "span export failed")):
			t.Fatalf("want one JSON warning for the failing exports, got:\n%s", out.String())
		}
	}
}
