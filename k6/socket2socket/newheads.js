// /socket2socket newHeads subscribers: each iteration subscribes, holds the
// subscription for HOLD_S seconds, checks at least MIN_HEADS notifications
// arrived, unsubscribes and closes. Against mainnet (12 s blocks) use HOLD_S=30.
//   k6 run k6/socket2socket/newheads.js
//   k6 run -e HOLD_S=60 -e PROFILE=remote k6/socket2socket/newheads.js
import { scenario, s2sNewHeads, summaryWriter } from '../lib/common.js';

export const options = {
  scenarios: { socket2socket_newheads: scenario('default', { route: 'socket2socket' }) },
  thresholds: {
    ws_connecting: ['p(95)<1000'],
    checks: ['rate>0.99'],
    s2s_newheads_received: ['count>0'],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

export const handleSummary = summaryWriter('socket2socket_newheads');

export default function () {
  s2sNewHeads();
}
