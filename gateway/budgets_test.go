package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/infura-gateway/infura-gateway/gateway/internal/heap"
)

// peakHeap runs fn while sampling the heap every millisecond, with the collector made
// eager (GOGC=10) so that garbage does not hide what is really held, and returns the
// highest heap seen above the live heap before fn: what the gateway held at its worst.
func peakHeap(fn func()) int64 {
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	base := heap.AfterGC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var peak uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(sample)
			peak = max(peak, sample[0].Value.Uint64())
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	fn()
	close(stop)
	<-done
	return int64(peak) - int64(base)
}

const mib = 1 << 20

// Subscriptions are capped per client address too (-ws-max-subscriptions-per-ip):
// one address opening many connections cannot take the gateway's whole
// -max-subscriptions. Before, the per-connection cap was all: the audit filled a
// gateway's 1,000 from one address over 10 connections, and another client was refused.
func TestSubscriptionsBoundedPerClientAddress(t *testing.T) {
	fake := startFakeUpstream(t)
	gw := startGateway(t, fake.args("-ws-max-subscriptions", "3", "-ws-max-subscriptions-per-ip", "5", "-max-subscriptions", "100")...)
	gw.waitUpstreams(t)
	logs := func(i int) string {
		return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"eth_subscribe","params":["logs",{"address":"0x%02x"}]}`, i, i)
	}
	// subscribe is "" for a subscription, else the error's code and message.
	subscribe := func(c *wsTestClient, i int) string {
		t.Helper()
		r := decodeAnswer(t, c.call(logs(i)))
		if r.Error == nil {
			return ""
		}
		return fmt.Sprint(r.Error.Code, " ", r.Error.Message)
	}
	a, b := dialWS(t, gw.WSURL, nil), dialWS(t, gw.WSURL, nil)
	for i := range 3 {
		if e := subscribe(a, i); e != "" {
			t.Fatalf("a's subscription %d: %+v", i, e)
		}
	}
	for i := range 2 {
		if e := subscribe(b, 10+i); e != "" {
			t.Fatalf("b's subscription %d: %+v", i, e)
		}
	}
	if e := subscribe(b, 12); e != "-32005 too many subscriptions from this client address" {
		t.Fatalf("the address's sixth subscription: %q", e)
	}
	a.conn.Close() // its three go back
	waitFor(t, "a's subscriptions given back", func() bool { return gw.metric(t, "gateway_ws_subscriptions") == 2 })
	if e := subscribe(b, 12); e != "" {
		t.Fatalf("after a closed, the address has room: %s", e)
	}
}

// Subscriptions are capped per connection and in total; params that differ only in
// whitespace share one upstream subscription.
func TestSubscriptionBudgets(t *testing.T) {
	fake := startFakeUpstream(t)
	gw := startGateway(t, fake.args("-ws-max-subscriptions", "3", "-max-subscriptions", "5")...)
	gw.waitUpstreams(t)
	logs := func(i int) string {
		return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"eth_subscribe","params":["logs",{"address":"0x%02x"}]}`, i, i)
	}
	a := dialWS(t, gw.WSURL, nil)
	var first string
	for i := range 3 {
		r := decodeAnswer(t, a.call(logs(i)))
		if r.Error != nil {
			t.Fatalf("subscription %d: %+v", i, r.Error)
		}
		if i == 0 {
			_ = json.Unmarshal(r.Result, &first)
		}
	}
	if r := decodeAnswer(t, a.call(logs(3))); r.Error == nil || r.Error.Code != -32005 || !strings.Contains(r.Error.Message, "on this connection") {
		t.Fatalf("fourth subscription on one connection: %+v", r)
	}
	b := dialWS(t, gw.WSURL, nil)
	for i := range 2 {
		if r := decodeAnswer(t, b.call(logs(10+i))); r.Error != nil {
			t.Fatalf("b's subscription %d: %+v", i, r.Error)
		}
	}
	if r := decodeAnswer(t, b.call(logs(12))); r.Error == nil || !strings.Contains(r.Error.Message, "on this gateway") {
		t.Fatalf("sixth subscription on the gateway: %+v", r)
	}
	// Unsubscribing gives the place back.
	if got := string(a.call(`{"jsonrpc":"2.0","id":"u","method":"eth_unsubscribe","params":["` + first + `"]}`)); !strings.Contains(got, "true") {
		t.Fatalf("unsubscribe: %s", got)
	}
	if r := decodeAnswer(t, b.call(logs(12))); r.Error != nil {
		t.Fatalf("after an unsubscribe the gateway has room: %+v", r)
	}

	// One client trying thousands of whitespace variants of one subscription: one
	// upstream subscription, and the client held to its own cap.
	fake.reset()
	c := dialWS(t, startGateway(t, fake.args("-ws-max-subscriptions", "128", "-ws-client-queue", "5000")...).WSURL, nil)
	const tries = 3000
	for i := range tries {
		pad := strings.Repeat(" ", i%50)
		c.mustSend(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"eth_subscribe","params":[%s"logs"%s,{"topics":[]}]}`, i, pad, pad))
	}
	ok, refused := 0, 0
	for range tries {
		if r := decodeAnswer(t, c.nextAnswer()); r.Error == nil {
			ok++
		} else {
			refused++
		}
	}
	if ok != 128 || refused != tries-128 {
		t.Fatalf("%d subscriptions accepted, %d refused", ok, refused)
	}
	if n := fake.count("eth_subscribe") - countParams(fake, "eth_subscribe", `["newHeads"]`); n != 1 {
		t.Fatalf("%d upstream subscriptions for whitespace variants of one", n)
	}
}

func countParams(f *fakeUpstream, method, params string) int {
	n := 0
	for _, r := range f.requests() {
		if r.Method == method && string(r.Params) == params {
			n++
		}
	}
	return n
}

// Requests without an id count as in flight like any other: a flood of notifications
// at an upstream that does not answer reaches it only up to the limit.
func TestNotificationsCountAsInFlight(t *testing.T) {
	fake, gw := startSilentGateway(t, "-ws-max-in-flight", "16")
	c := dialWS(t, gw.WSURL, nil)
	for i := range 5000 {
		c.mustSend(fmt.Sprintf(`{"jsonrpc":"2.0","method":"eth_getBalance","params":["0x%040x","latest"]}`, i))
	}
	// The connection is still served in order: this call is refused (16 in flight) and
	// its answer comes after every notification was handled.
	if r := decodeAnswer(t, c.call(`{"jsonrpc":"2.0","id":"x","method":"eth_chainId"}`)); r.Error == nil || r.Error.Code != -32005 {
		t.Fatalf("call with 16 notifications in flight: %+v", r)
	}
	if n := fake.count("eth_getBalance"); n != 16 {
		t.Fatalf("%d of 5000 notifications reached the upstream, want 16 (the in-flight limit)", n)
	}
}

// The request bytes a websocket client may have waiting are bounded in bytes, not in
// requests: a client pushing hundreds of megabytes at an upstream that does not answer
// holds at most its budget in the gateway.
func TestPendingBytesPerConnection(t *testing.T) {
	// The held request must outlast the test however loaded the machine is: a timeout
	// answer among the refusals is not what this test is about.
	_, gw := startSilentGateway(t, "-ws-max-pending-bytes", "8388608", "-max-request-body", "5000000", "-upstream-timeout", "10m")
	c := dialWS(t, gw.WSURL, nil)
	big := `"0x` + strings.Repeat("ab", 2*mib-8) + `"` // ~4 MiB of params
	const sent = 100                                   // 400 MiB offered
	refused := 0
	grew := peakHeap(func() {
		for i := range sent {
			c.mustSend(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"eth_sendRawTransaction","params":[%s]}`, i, big))
		}
		for range sent - 1 { // 8 MiB holds one 4 MiB request, not two
			r := decodeAnswer(t, c.next())
			if r.Error == nil || r.Error.Code != -32005 || !strings.Contains(r.Error.Message, "bytes in flight") {
				t.Fatalf("answer %+v", r)
			}
			refused++
		}
	})
	t.Logf("%d MiB offered, %d requests refused, heap peaked %.1f MiB above its start", sent*4, refused, float64(grew)/mib)
	// The test's own client writes 4 MiB messages too; the gateway holds one request
	// (message, params, envelope) at a time: tens of MiB at worst, never 400.
	if grew > 80*mib {
		t.Fatalf("heap peaked %d MiB above its start while a client pushed requests at a silent upstream", grew/mib)
	}
	if got := gw.metric(t, "gateway_pending_request_bytes"); got <= 4*mib || got > 5*mib {
		t.Fatalf("pending request bytes %v", got)
	}
}

// All transports together share one budget of request bytes waiting upstream.
func TestPendingBytesTotal(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	arrived := make(chan struct{}, 8)
	fake := startFakeUpstream(t, fakeRespond(func(r fakeRequest) fakeAnswer {
		if r.Method == "eth_call" {
			arrived <- struct{}{}
			<-release
		}
		return fakeAnswer{}
	}))
	t.Cleanup(free) // after the fake: cleanups run last first, and its shutdown waits for the calls it holds
	gw := startGateway(t, "-upstream-http", fake.HTTPURL, "-upstream-ws", "off", "-cache=false",
		"-max-pending-bytes", "3000000", "-max-request-body", "2000000")
	big := `{"jsonrpc":"2.0","id":1,"method":"eth_call","params":[{"data":"0x` + strings.Repeat("ab", 500000) + `"},"latest"]}`
	var wg sync.WaitGroup
	codes := make(chan int, 2)
	for range 2 { // 2 MB in flight
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, _, _ := tryDo("POST", gw.URL+"/", big)
			codes <- code
		}()
		<-arrived
	}
	// A third would pass 3 MB: refused, alone or in a batch, with a Retry-After as any
	// refusal with a wait (before: none, so clients retried at once or gave up).
	for _, body := range []string{big, "[" + big + "]"} {
		resp, err := http.Post(gw.URL+"/", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		ans, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 503 || !strings.Contains(string(ans), "too many request bytes waiting") ||
			resp.Header.Get("Retry-After") != "1" {
			t.Fatalf("third request (%d bytes): %s, Retry-After %q, %s", len(body), resp.Status, resp.Header.Get("Retry-After"), ans)
		}
	}
	free()
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 200 {
			t.Fatalf("admitted request got %d", c)
		}
	}
	if got := gw.metric(t, "gateway_pending_request_bytes"); got != 0 {
		t.Fatalf("%v pending bytes after every request ended", got)
	}
}

// A client that never reads is closed with 1008 once the answers queued for it pass
// its byte budget, long before the count budget: memory stays bounded by bytes.
func TestSlowClientQueueBoundedInBytes(t *testing.T) {
	answer := `"` + strings.Repeat("z", 2*mib) + `"`
	fake := startFakeUpstream(t, fakeRespond(func(r fakeRequest) fakeAnswer {
		if r.Method == "eth_getLogs" {
			return fakeAnswer{Result: answer}
		}
		return fakeAnswer{}
	}))
	gw := startGateway(t, fake.args("-cache=false", "-ws-client-queue", "256", "-ws-client-queue-bytes", "8388608",
		"-ws-max-in-flight", "10000", "-ws-max-pending-bytes", "100000000")...)
	gw.waitUpstreams(t)
	slow, _, err := websocket.DefaultDialer.Dial(gw.WSURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	const dropped = "gateway_ws_slow_clients_dropped_total"
	const sent = 300 // 600 MiB of answers asked for; a queue bounded by count alone holds 256 of them
	grew := peakHeap(func() {
		for range sent {
			if err := slow.WriteMessage(websocket.TextMessage, []byte(`{"jsonrpc":"2.0","id":1,"method":"eth_getLogs","params":[{}]}`)); err != nil {
				break
			}
		}
		waitFor(t, "the slow client dropped", func() bool { return gw.metric(t, dropped) == 1 })
		waitFor(t, "every call answered", func() bool { return gw.metric(t, "gateway_pending_request_bytes") == 0 })
	})
	t.Logf("%d requests for 2 MiB answers, client dropped, heap peaked %.1f MiB above its start", sent, float64(grew)/mib)
	if grew > 100*mib {
		t.Fatalf("heap peaked %d MiB above its start for one client that does not read", grew/mib)
	}
	// The connection ends. (The 1008 close frame reaches a client only if it reads soon
	// enough: TestSocket2SocketSlowClientDropped checks it.)
	_ = slow.SetReadDeadline(time.Now().Add(wsWait))
	for {
		if _, _, err := slow.ReadMessage(); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("the slow client's connection was not closed")
			}
			break
		}
	}
}

// Websocket clients are capped; more get 503 at the upgrade.
func TestWebsocketClientCap(t *testing.T) {
	fake := startFakeUpstream(t)
	gw := startGateway(t, fake.args("-ws-max-clients", "3")...)
	gw.waitUpstreams(t)
	for range 3 {
		c := dialWS(t, gw.WSURL, nil)
		c.call(`{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}`) // served: the handler runs
	}
	_, resp, err := websocket.DefaultDialer.Dial(gw.WSURL, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("fourth client: %v %v", err, resp)
	}
	_ = resp.Body.Close()
}

// One answer over the size limit fails only its own call: the shared socket, the other
// clients' calls and the subscribers carry on, and no head is skipped.
func TestOversizedUpstreamAnswerFailsOneCall(t *testing.T) {
	huge := `"` + strings.Repeat("h", 40*mib) + `"`
	fake := startFakeUpstream(t, fakeRespond(func(r fakeRequest) fakeAnswer {
		if r.Method == "eth_getLogs" {
			return fakeAnswer{Result: huge}
		}
		return fakeAnswer{}
	}))
	gw := startGateway(t, fake.args("-cache=false", "-ws-upstream-conns", "1", "-max-response-body", "1048576")...)
	gw.waitUpstreams(t)
	sub := dialWS(t, gw.WSURL, nil)
	r := decodeAnswer(t, sub.call(`{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newPendingTransactions"]}`))
	if r.Error != nil {
		t.Fatal(r.Error)
	}
	upSub := fake.subscriptionFor(`["newPendingTransactions"]`)
	c := dialWS(t, gw.WSURL, nil)
	c.mustSend(`{"jsonrpc":"2.0","id":"big","method":"eth_getLogs","params":[{}]}`)
	for i := range 50 {
		c.mustSend(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"eth_chainId"}`, i))
	}
	ok := 0
	for range 51 {
		a := decodeAnswer(t, c.next())
		switch {
		case string(a.ID) == `"big"`:
			if a.Error == nil || a.Error.Code != -32005 {
				t.Fatalf("oversized answer: %+v", a)
			}
		case a.Error != nil:
			t.Fatalf("call %s failed: %+v", a.ID, a.Error)
		default:
			ok++
		}
	}
	for n := 1; n <= 3; n++ {
		if !fake.notify(upSub, fmt.Sprintf(`"0x%d"`, n)) {
			t.Fatalf("no upstream subscription %s", upSub)
		}
		if a := decodeAnswer(t, sub.next()); string(a.Params.Result) != fmt.Sprintf(`"0x%d"`, n) {
			t.Fatalf("notification %d: %+v", n, a)
		}
	}
	if got := gw.metric(t, `gateway_upstream_ws_reconnects_total{upstream="default"}`); got != 0 {
		t.Fatalf("the shared socket was replaced (%v reconnects)", got)
	}
}
