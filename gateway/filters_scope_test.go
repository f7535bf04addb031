package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
)

// from127002 dials from 127.0.0.2: another client address on the same machine.
func from127002() *net.Dialer {
	return &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 10 * time.Second}
}

// postFrom sends body to url from 127.0.0.2 and returns the raw answer.
func postFrom(t *testing.T, url, body string) []byte {
	t.Helper()
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: from127002().DialContext}}
	resp, err := c.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("POST %s: HTTP %d %s", body, resp.StatusCode, b)
	}
	return b
}

// TestFiltersBelongToTheirClientWithoutKeys: with keys off (the default), a filter
// belongs to the client address that made it, over every transport: another address
// neither sees it nor is refused for it. All unkeyed clients shared one scope, so one
// client's -filter-max-per-tenant filters refused every other client's for as long as it
// polled them.
func TestFiltersBelongToTheirClientWithoutKeys(t *testing.T) {
	node := testnode.Start(t, testnode.Period(0))
	gw := startGateway(t, "-upstream-http", node.HTTPURL, "-upstream-ws", node.WSURL, "-filter-max-per-tenant", "2")
	gw.waitUpstreams(t)
	// 127.0.0.1 holds its two filters; its third is refused.
	mine := []string{resultString(t, rpcAt(t, gw.URL, "eth_newBlockFilter")), resultString(t, rpcAt(t, gw.URL, "eth_newBlockFilter"))}
	if a := rpcAt(t, gw.URL, "eth_newBlockFilter"); a.Error == nil {
		t.Fatalf("a third filter for one client with -filter-max-per-tenant 2: %s", a.Result)
	}
	// 127.0.0.2 makes its own, as a single call and in a batch.
	var single, batch []rpcAnswer
	if err := json.Unmarshal(append(append([]byte("["), postFrom(t, gw.URL, `{"jsonrpc":"2.0","id":1,"method":"eth_newBlockFilter","params":[]}`)...), ']'), &single); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(postFrom(t, gw.URL, `[{"jsonrpc":"2.0","id":2,"method":"eth_newBlockFilter","params":[]}]`), &batch); err != nil {
		t.Fatal(err)
	}
	for _, a := range append(single, batch...) {
		if a.Error != nil || len(a.Result) < 3 {
			t.Fatalf("another client's filter, refused for the first client's: %+v", a.Error)
		}
	}
	theirs := mustString(t, single[0].Result)
	// Over a websocket from 127.0.0.2: its own filter is found, the other client's is not.
	d := websocket.Dialer{NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return from127002().DialContext(ctx, network, addr)
	}}
	conn, resp, err := d.Dial(gw.WSURL, nil)
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	wsPoll := func(id string) rpcAnswer {
		t.Helper()
		_ = conn.SetReadDeadline(time.Now().Add(wsWait))
		if err := conn.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `{"jsonrpc":"2.0","id":3,"method":"eth_getFilterChanges","params":[%q]}`, id)); err != nil {
			t.Fatal(err)
		}
		_, b, err := conn.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		return decodeAnswer(t, b)
	}
	if a := wsPoll(theirs); a.Error != nil {
		t.Fatalf("a client's own filter polled over its websocket: %+v", a.Error)
	}
	if a := wsPoll(mine[0]); a.Error == nil || a.Error.Message != "filter not found" {
		t.Fatalf("another client's filter polled over a websocket: %s %+v", a.Result, a.Error)
	}
	if got := string(postFrom(t, gw.URL, fmt.Sprintf(`{"jsonrpc":"2.0","id":4,"method":"eth_uninstallFilter","params":[%q]}`, mine[1]))); !strings.Contains(got, `"result":false`) {
		t.Fatalf("another client uninstalling a filter: %s", got)
	}
	for _, id := range mine {
		if a := rpcAt(t, gw.URL, "eth_getFilterChanges", id); a.Error != nil {
			t.Fatalf("the owner's poll: %+v", a.Error)
		}
	}
}
