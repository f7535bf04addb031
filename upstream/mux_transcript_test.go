package upstream

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/proto"
)

// Golden transcripts (testdata/*.txt), in the spirit of go-ethereum's rpc/testdata:
//
//	X--> msg   client X sends msg (eth_subscribe/eth_unsubscribe go to Join/Leave, as
//	           /socket2socket does; anything else is a call, one frame per request)
//	X<-- msg   client X's next delivery is exactly msg
//	up-> msg   the upstream's next received frame is exactly msg
//	up<- msg   the upstream sends msg
//	X leaves   client X goes away (LeaveAll)
//	up drop    the upstream drops the connection
//	up accept  the Mux reconnects; later up lines use the new connection
//
// The Mux runs one socket, so gateway ids are predictable: 1, 2, 3, ...
func TestMuxTranscripts(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.txt")
	if len(files) == 0 {
		t.Fatal("no transcripts")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) { runTranscript(t, file) })
	}
}

func runTranscript(t *testing.T, file string) {
	f := newFakeUpstream(t, true)
	m := startMux(t, f, func(c *MuxConfig) { c.Conns = 1 })
	conn := within(t, f.accepted, "the Mux's connection")
	clients := make(map[string]*chanSink)
	client := func(name string) *chanSink {
		if clients[name] == nil {
			clients[name] = newChanSink(64)
		}
		return clients[name]
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "//") {
			continue
		}
		op, msg, _ := strings.Cut(line, " ")
		switch {
		case op == "up->":
			select {
			case got := <-f.recv:
				if string(got) != msg {
					t.Fatalf("%s:%d upstream received\n got %s\nwant %s", file, n, got, msg)
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("%s:%d upstream received nothing", file, n)
			}
		case op == "up<-":
			f.send(conn, msg)
		case line == "up drop":
			f.dropAll()
		case line == "up accept":
			select {
			case conn = <-f.accepted:
			case <-time.After(20 * time.Second):
				t.Fatalf("%s:%d no reconnect", file, n)
			}
		case strings.HasSuffix(op, "-->"):
			clientSends(m, client(strings.TrimSuffix(op, "-->")), []byte(msg))
		case strings.HasSuffix(op, "<--"):
			if got := client(strings.TrimSuffix(op, "<--")).next(t); string(got) != msg {
				t.Fatalf("%s:%d %s got\n got %s\nwant %s", file, n, op, got, msg)
			}
		case msg == "leaves":
			m.LeaveAll(client(op))
		default:
			t.Fatalf("%s:%d bad line %q", file, n, line)
		}
	}
	for name, c := range clients {
		select {
		case b := <-c.ch:
			t.Fatalf("%s: client %s got an unexpected %s", file, name, b)
		default:
		}
	}
}

// clientSends does what /socket2socket does with a client frame: subscriptions go to
// Join and Leave, everything else is a call.
func clientSends(m *Mux, sink *chanSink, msg []byte) {
	var r proto.Request
	if proto.FirstByte(msg) == '{' && r.Parse(msg) == nil {
		switch string(r.Name) {
		case "eth_subscribe":
			m.Join(r.Params, r.ID, sink, time.Time{})
			return
		case "eth_unsubscribe":
			ok := m.Leave(sink, bytes.Trim(r.Params, `[]"`))
			res := "false"
			if ok {
				res = "true"
			}
			sink.Reply([]byte(`{"jsonrpc":"2.0","id":` + string(r.ID) + `,"result":` + res + `}`))
			return
		}
	}
	sendBody(m, sink, string(msg), time.Time{})
}
