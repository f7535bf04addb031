package gateway

import (
	"bytes"
	"strings"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"
)

// VictoriaMetrics/metrics writes "# HELP name" without text; Prometheus tooling
// (promtool check metrics) wants a description. metricsHandler fills it in from here.
var metricHelp = map[string]string{
	"gateway_requests_total":                    "Requests answered, by route and HTTP status code.",
	"gateway_request_duration_seconds":          "Time from request read to response written, by route.",
	"gateway_requests_in_flight":                "Requests being handled now.",
	"gateway_build_info":                        "Build version and Go version; always 1.",
	"gateway_ready":                             "1 when /readyz answers 200 (upstream reachable, not draining).",
	"gateway_upstream_requests_total":           "Calls to the upstream by transport, JSON-RPC method and outcome.",
	"gateway_upstream_request_duration_seconds": "Upstream call latency by transport and method.",
	"gateway_upstream_up":                       "1 when the last call or probe over the transport reached the upstream.",
	"gateway_upstream_ws_connections":           "Open shared upstream websocket connections.",
	"gateway_upstream_ws_reconnects_total":      "Upstream websocket reconnections after a loss.",
	"gateway_upstream_ws_pending_requests":      "Requests sent over upstream websockets awaiting an answer.",
	"gateway_upstream_ws_queue_depth":           "Frames queued for the upstream websocket writers.",
	"gateway_upstream_ws_messages_total":        "Websocket messages exchanged with the upstream, by direction.",
	"gateway_upstream_ws_subscriptions":         "Subscriptions held on the upstream.",
	"gateway_upstream_ws_resubscribes_total":    "Upstream subscriptions re-established after a reconnect.",
	"gateway_upstream_ws_reconnect_gap_seconds": "Time between losing an upstream websocket and having its subscriptions back.",
	"gateway_upstream_ws_writes_total":          "Buffered writes (flushes) to upstream websockets.",
	"gateway_upstream_ws_frames_written_total":  "Frames written to upstream websockets; divided by writes gives frames per write.",
	"gateway_upstream_ws_reads_total":           "Read calls on upstream websocket connections.",
	"gateway_ws_client_connections":             "Open /socket2socket client connections.",
	"gateway_ws_client_messages_total":          "Websocket messages exchanged with /socket2socket clients, by direction.",
	"gateway_ws_slow_clients_dropped_total":     "/socket2socket clients closed (1008) because their outbound queue overflowed.",
	"gateway_ws_subscriptions":                  "Subscriptions held by /socket2socket clients.",
	"gateway_cache_requests_total":              "Cacheable requests by result: hit, miss, or coalesced onto an in-flight call.",
	"gateway_cache_entries":                     "Entries in the response cache.",
	"gateway_chain_head_block":                  "Latest block number the gateway has seen.",
	"gateway_chain_head_updates_total":          "New chain heads seen.",
}

func init() { metrics.ExposeMetadata(true) }

func renamed(name []byte) string {
	for _, r := range renames {
		if bytes.Equal(name, r.from) {
			return string(r.to)
		}
	}
	return string(name)
}

func helpFor(name string) string {
	if h, ok := metricHelp[name]; ok {
		return h
	}
	switch {
	case strings.HasPrefix(name, "go_"):
		return "Go runtime metric " + name + "."
	case strings.HasPrefix(name, "process_"):
		return "Process metric " + name + "."
	}
	return "infura-gateway metric " + name + "."
}

var (
	helpPrefix = []byte("# HELP ")
	typePrefix = []byte("# TYPE ")
	gaugeType  = []byte(" gauge")
	totalType  = []byte("_total gauge")
)

// renames fixes the few library series whose names break Prometheus naming rules
// (counters without _total, gauges ending in _count), so promtool accepts the output.
var renames = []struct{ from, to []byte }{
	{[]byte("go_cgo_calls_count"), []byte("go_cgo_calls_total")},
	{[]byte("go_gc_forced_count"), []byte("go_gc_forced_total")},
	{[]byte("go_cpu_count"), []byte("go_cpus")},
}

// fixLine applies renames and types monotonic *_total series as counters.
func fixLine(dst, line []byte) []byte {
	rest := line
	var prefix []byte
	if bytes.HasPrefix(line, helpPrefix) || bytes.HasPrefix(line, typePrefix) {
		prefix, rest = line[:len(helpPrefix)], line[len(helpPrefix):]
	}
	for _, r := range renames {
		if bytes.HasPrefix(rest, r.from) && len(rest) > len(r.from) && (rest[len(r.from)] == ' ' || rest[len(r.from)] == '{' || rest[len(r.from)] == '\n') {
			dst = append(dst, prefix...)
			dst = append(dst, r.to...)
			return fixType(dst, rest[len(r.from):])
		}
	}
	if bytes.HasPrefix(line, typePrefix) && bytes.Contains(line, totalType) {
		dst = append(dst, line[:len(line)-len(gaugeType)-1]...)
		return append(dst, " counter\n"...)
	}
	return append(dst, line...)
}

func fixType(dst, rest []byte) []byte {
	if bytes.HasPrefix(rest, gaugeType) && bytes.HasSuffix(dst, []byte("_total")) {
		return append(dst, " counter\n"...)
	}
	return append(dst, rest...)
}

// metricsHandler writes Prometheus text: gateway metrics plus Go and process metrics,
// with HELP texts. Scrapes are rare; the copy does not matter.
func metricsHandler(ctx *fasthttp.RequestCtx) {
	var raw bytes.Buffer
	metrics.WritePrometheus(&raw, true)
	ctx.SetContentType("text/plain; version=0.0.4; charset=utf-8")
	out := make([]byte, 0, raw.Len()+raw.Len()/4)
	for line := range bytes.Lines(raw.Bytes()) {
		if bytes.HasPrefix(line, helpPrefix) {
			name := bytes.TrimSpace(line[len(helpPrefix):])
			if bytes.IndexByte(name, ' ') < 0 {
				out = append(out, helpPrefix...)
				out = append(out, renamed(name)...)
				out = append(out, ' ')
				out = append(out, helpFor(renamed(name))...)
				out = append(out, '\n')
				continue
			}
		}
		out = fixLine(out, line)
	}
	ctx.SetBody(out)
}
