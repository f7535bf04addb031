package gateway

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"syscall"

	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/gateway/clientip"
	"github.com/infura-gateway/infura-gateway/proto"
	"github.com/infura-gateway/infura-gateway/upstream"
)

// newConnLimiter bounds the public listener's client connections (-max-conns,
// -max-conns-per-ip) and exports their counts. A refused connection gets a 503 written
// once here, not fasthttp's plain-text refusal: clients see a JSON-RPC error they retry.
func newConnLimiter(total, perIP int, reg *upstream.Registry, log *slog.Logger) *clientip.Limiter {
	warnDescriptors(log, total)
	const refusedHelp = "Client connections refused (503, then closed) at accept, by the bound they met: total (-max-conns) or per_ip (-max-conns-per-ip)."
	refused := [2]interface{ Inc() }{
		reg.Counter(`gateway_client_connections_refused_total{reason="total"}`, refusedHelp),
		reg.Counter(`gateway_client_connections_refused_total{reason="per_ip"}`, refusedHelp),
	}
	l := clientip.NewLimiter(clientip.Limits{Total: total, PerIP: perIP,
		Refusals: [2][]byte{
			clientip.OverTotal: refusal("gateway busy: too many client connections open, retry later"),
			clientip.OverPerIP: refusal("too many connections open from your address: reuse one (keep-alive) or close some, then retry"),
		},
		Refused: func(r clientip.Reason) { refused[r].Inc() },
	})
	reg.Gauge("gateway_client_connections", "Client connections open on the public listener now, HTTP and websocket (the admin listener's not counted).",
		func() float64 { return float64(l.Open()) })
	reg.Gauge("gateway_client_connections_limit", "The bound of gateway_client_connections (-max-conns; 0: none).",
		func() float64 { return float64(l.Limit()) })
	return l
}

// refusal is the whole HTTP answer to a refused connection.
func refusal(msg string) []byte {
	type rpcErr struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	body, _ := json.Marshal(struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Error   rpcErr          `json:"error"`
	}{"2.0", json.RawMessage("null"), rpcErr{proto.CodeLimitExceeded, msg}})
	return fmt.Appendf(nil, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: %d\r\nRetry-After: 1\r\nConnection: close\r\n\r\n%s", len(body), body)
}

// concurrency is fasthttp's own bound on connections being served, kept past
// -max-conns (a closed connection leaves its worker a moment after it left the count)
// so that its plain-text refusal is never what a client sees.
func concurrency(maxConns int) int {
	return max(fasthttp.DefaultConcurrency, 2*maxConns)
}

// fdReserve is what -max-conns should leave of the descriptor limit: upstream
// connections (-upstream-max-conns per upstream, websockets), Redis, the admin
// listener, refusals being answered, files.
const fdReserve = 2048

// warnDescriptors says at start when the descriptor limit does not leave fdReserve past
// -max-conns: clients could then take the descriptors the gateway's upstream dials need.
func warnDescriptors(log *slog.Logger, maxConns int) {
	var r syscall.Rlimit
	if maxConns == 0 || syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r) != nil || r.Cur >= uint64(maxConns)+fdReserve {
		return
	}
	log.Warn("the file descriptor limit leaves the upstream connections few past -max-conns: lower -max-conns or raise the limit (ulimit -n)",
		"max_conns", maxConns, "nofile", r.Cur, "want_at_least", uint64(maxConns)+fdReserve)
}
