// /socket2socket request loops: each iteration opens a websocket, sends
// MESSAGES JSON-RPC reads one after another and closes. Custom metrics:
// s2s_rpc_duration (round trip), s2s_rpc_errors; k6's ws_* metrics cover the sessions.
//   k6 run k6/socket2socket/requests.js
//   k6 run -e MODE=rate -e RATE=20 -e MESSAGES=100 k6/socket2socket/requests.js
import { scenario, s2sRequests, summaryWriter, wsThresholds } from '../lib/common.js';

export const options = {
  scenarios: { socket2socket_requests: scenario('default', { route: 'socket2socket' }) },
  thresholds: wsThresholds(),
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

export const handleSummary = summaryWriter('socket2socket_requests');

export default function () {
  s2sRequests();
}
