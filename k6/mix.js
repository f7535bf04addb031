// All routes at once, in the proportions of a typical dapp backend:
// 60% REST/JSON-RPC over HTTP (both upstream paths, /... and /ws/...),
// 25% /socket2socket request loops, 15% newHeads subscribers. Each share
// scales the selected profile's stage targets (or RATE in MODE=rate).
//   k6 run k6/mix.js
//   k6 run -e PROFILE=remote -e BASE_URL=http://<nlb-hostname> k6/mix.js
import {
  REST_ROUTES,
  hit,
  httpThresholds,
  pick,
  s2sNewHeads,
  s2sRequests,
  scenario,
  summaryWriter,
  wsThresholds,
} from './lib/common.js';

export const options = {
  scenarios: {
    rest: scenario('rest', { kind: 'rest' }, 0.6),
    socket2socket_requests: scenario('socketRequests', { kind: 'socket2socket_requests' }, 0.25),
    socket2socket_newheads: scenario('socketNewHeads', { kind: 'socket2socket_newheads' }, 0.15),
  },
  thresholds: { ...wsThresholds(), ...httpThresholds() },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

export const handleSummary = summaryWriter('mix');

export function rest() {
  const route = pick(REST_ROUTES);
  hit(route, route === 'rpc' ? 'http' : pick(['http', 'ws']));
}

export function socketRequests() {
  s2sRequests();
}

export function socketNewHeads() {
  s2sNewHeads();
}
