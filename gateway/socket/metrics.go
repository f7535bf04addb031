package socket

import (
	"strconv"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/infura-gateway/infura-gateway/gateway/pipeline"
	"github.com/infura-gateway/infura-gateway/proto"
	"github.com/infura-gateway/infura-gateway/upstream"
)

// Per-call outcomes of /socket2socket, for the SLIs: a connection is one
// gateway_requests_total sample however many calls it carries, so the SLOs count
// websocket calls here, one per JSON-RPC request or batch the client sends (as HTTP
// counts a batch as one request). Notifications to subscribers are not calls.

// callBuckets are gateway_request_duration_seconds's, so the latency SLO's 0.8192 s
// boundary exists in both histograms.
var callBuckets = metrics.ExponentialBuckets(0.0001, 2, 18)

// callMetrics are made once per endpoint: a call costs an atomic increment and one
// histogram update, nothing looked up.
type callMetrics struct {
	codes    [len(pipeline.StatusCodes) + 1]*metrics.Counter
	duration *metrics.PrometheusHistogram
	// paused counts the times a client's reads waited for room (backpressure.go).
	paused *metrics.Counter
}

func newCallMetrics(reg *upstream.Registry) *callMetrics {
	m := &callMetrics{duration: reg.Histogram("gateway_ws_call_duration_seconds",
		"Time from a /socket2socket call read to its answer queued (eth_subscribe excluded: the subscription hub answers it).", callBuckets)}
	const help = "/socket2socket calls (JSON-RPC requests and batches, not subscription notifications) answered, by the HTTP status the same answer gets over HTTP."
	for i, code := range pipeline.StatusCodes {
		m.codes[i] = reg.Counter(`gateway_ws_calls_total{code="`+strconv.Itoa(code)+`"}`, help)
	}
	m.codes[len(pipeline.StatusCodes)] = reg.Counter(`gateway_ws_calls_total{code="other"}`, help)
	m.paused = reg.Counter("gateway_ws_client_reads_paused_total",
		"Times a /socket2socket client was read no further until the answers it is owed fit its queue (-ws-client-queue): it sends faster than it reads.")
	return m
}

// count records a call's outcome without its duration.
func (m *callMetrics) count(status int) {
	m.codes[pipeline.StatusIndex(status)].Inc()
}

// observe records a call answered with status, read at start.
func (m *callMetrics) observe(status int, start time.Time) {
	m.count(status)
	m.duration.Update(time.Since(start).Seconds())
}

// observeErr records a call answered with perr (nil: answered, 200).
func (m *callMetrics) observeErr(perr *proto.Error, start time.Time) {
	status := 200
	if perr != nil {
		status = perr.Status
	}
	m.observe(status, start)
}

// subscribeStatus is the status of an eth_subscribe answer from the subscription hub:
// 200 for a subscription id, and for an error the upstream passed on (HTTP passes a
// JSON-RPC error answer on with 200 too); 502 when the gateway could not subscribe
// (its own -32000 and -32603 errors: upstream unreachable, timed out, invalid answer).
func subscribeStatus(msg []byte) int {
	if !proto.IsErrorResponse(msg) {
		return 200
	}
	switch errorCode(msg) {
	case proto.CodeServer, proto.CodeInternal:
		return 502
	}
	return 200
}

// errorCode is error.code of a JSON-RPC error answer, 0 when it has none.
func errorCode(msg []byte) int {
	it, err := proto.NewObjectIter(msg, 0)
	if err != nil {
		return 0
	}
	for {
		k, v, ok, err := it.Next()
		if err != nil || !ok {
			return 0
		}
		if string(msg[k.Start:k.End]) != `"error"` {
			continue
		}
		eit, err := proto.NewObjectIter(msg, v.Start)
		if err != nil {
			return 0
		}
		for {
			k, v, ok, err := eit.Next()
			if err != nil || !ok {
				return 0
			}
			if string(msg[k.Start:k.End]) == `"code"` {
				n, err := strconv.Atoi(string(msg[v.Start:v.End]))
				if err != nil {
					return 0
				}
				return n
			}
		}
	}
}
