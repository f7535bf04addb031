// Shared helpers for the infura-gateway k6 scripts: configuration from env,
// stage profiles, scenarios, thresholds, route requests and the JSON summary.
// Needs k6 v1.0+ (stable k6/websockets; open() of import.meta.resolve URLs).
//
// Env (all optional):
//   BASE_URL     gateway HTTP base URL            (default http://127.0.0.1:8000)
//   WS_URL       gateway websocket base URL       (default: BASE_URL with http->ws)
//   PROFILE      k6/profiles/<PROFILE>.json       (default local)
//   MODE         stages | rate                    (default stages: ramping-vus over the profile;
//                rate: constant-arrival-rate, open-model load)
//   RATE, DURATION, PRE_VUS, MAX_VUS              rate mode: iterations/s, duration, VU pool
//   VIA          http | ws: REST routes directly or through the gateway's /ws/... variants
//   P95_MS, P99_MS, MAX_FAILURE_RATE              thresholds (defaults 500, 1500, 0.01)
//   SUMMARY_DIR  where handleSummary writes JSON  (default k6/results)
//   MESSAGES     /socket2socket requests per connection (default 20)
//   HOLD_S       seconds a newHeads subscriber stays subscribed (default 15)
//   MIN_HEADS    newHeads a subscriber must receive in HOLD_S (default 1)
//   WS_TIMEOUT_MS  deadline for one websocket answer (default 10000)
import http from 'k6/http';
import { check, fail } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';
import { setTimeout, clearTimeout } from 'k6/timers';
import { WebSocket } from 'k6/websockets';

const env = (name, fallback) => (__ENV[name] !== undefined && __ENV[name] !== '' ? __ENV[name] : fallback);

function number(name, fallback) {
  const v = Number(env(name, fallback));
  if (!Number.isFinite(v) || v < 0) {
    throw new Error(`${name} must be a non-negative number, got ${env(name, fallback)}`);
  }
  return v;
}

export const BASE_URL = env('BASE_URL', 'http://127.0.0.1:8000').replace(/\/+$/, '');
export const WS_URL = env('WS_URL', BASE_URL.replace(/^http/, 'ws')).replace(/\/+$/, '');
export const PROFILE = env('PROFILE', 'local');
export const MODE = env('MODE', 'stages');
export const VIA = env('VIA', 'http');

if (!['stages', 'rate'].includes(MODE)) {
  throw new Error(`MODE must be stages or rate, got ${MODE}`);
}
if (!['http', 'ws'].includes(VIA)) {
  throw new Error(`VIA must be http or ws, got ${VIA}`);
}

// Profiles are shared with the Go load driver (bench/): {"description", "stages": [{duration, target}]}.
// open() only works in the init context; import.meta.resolve makes the path
// relative to this module rather than to the entry script.
const profile = JSON.parse(open(import.meta.resolve(`../profiles/${PROFILE}.json`)));
if (!Array.isArray(profile.stages) || profile.stages.length === 0) {
  throw new Error(`profile ${PROFILE} has no stages`);
}
for (const s of profile.stages) {
  if (typeof s.duration !== 'string' || !Number.isInteger(s.target) || s.target < 0) {
    throw new Error(`profile ${PROFILE}: bad stage ${JSON.stringify(s)}`);
  }
}
export const STAGES = profile.stages;

// scenario builds the load model for one executor function: the stage
// profile (closed model, VUs) or a constant arrival rate (open model).
// share scales the load for one scenario of a mix (0 < share <= 1).
export function scenario(exec, tags = {}, share = 1) {
  if (MODE === 'rate') {
    return {
      executor: 'constant-arrival-rate',
      exec,
      rate: Math.max(1, Math.round(number('RATE', 50) * share)),
      timeUnit: '1s',
      duration: env('DURATION', '1m'),
      preAllocatedVUs: number('PRE_VUS', 50),
      maxVUs: number('MAX_VUS', 500),
      tags,
    };
  }
  return {
    executor: 'ramping-vus',
    exec,
    startVUs: 0,
    stages: STAGES.map((st) => ({ duration: st.duration, target: Math.max(1, Math.round(st.target * share)) })),
    gracefulRampDown: '10s',
    tags,
  };
}

const P95 = number('P95_MS', 500);
const P99 = number('P99_MS', 1500);
const MAX_FAILURE_RATE = number('MAX_FAILURE_RATE', 0.01);

// Thresholds for HTTP traffic; abortOnFail is off so a run always produces a summary.
export function httpThresholds() {
  return {
    http_req_duration: [`p(95)<${P95}`, `p(99)<${P99}`],
    http_req_failed: [`rate<${MAX_FAILURE_RATE}`],
    checks: [`rate>${1 - MAX_FAILURE_RATE}`],
  };
}

// Websocket metrics: ws_connecting is built in; the gateway round trip and
// subscription delivery are measured with custom metrics below.
export const wsRpcDuration = new Trend('s2s_rpc_duration', true);
export const wsRpcErrors = new Rate('s2s_rpc_errors');
export const wsHeads = new Counter('s2s_newheads_received');
export const wsHeadGap = new Trend('s2s_newheads_gap', true);

export function wsThresholds() {
  return {
    ws_connecting: [`p(95)<${P95}`, `p(99)<${P99}`],
    s2s_rpc_duration: [`p(95)<${P95}`, `p(99)<${P99}`],
    s2s_rpc_errors: [`rate<${MAX_FAILURE_RATE}`],
    checks: [`rate>${1 - MAX_FAILURE_RATE}`],
  };
}

const JSON_HEADERS = { headers: { 'Content-Type': 'application/json' } };

let rpcId = 0;
export function rpcBody(method, params = []) {
  rpcId += 1;
  return { jsonrpc: '2.0', id: rpcId, method, params };
}

// JSON-RPC methods sent by the generic POST / and /socket2socket loops:
// cheap (cached) and heavier (block bodies) calls, like a wallet backend.
export const RPC_METHODS = [
  ['eth_blockNumber', []],
  ['eth_chainId', []],
  ['eth_gasPrice', []],
  ['eth_getBlockByNumber', ['latest', false]],
  ['eth_getTransactionByBlockNumberAndIndex', ['latest', '0x0']],
];

export function pick(list) {
  return list[Math.floor(Math.random() * list.length)];
}

// routePath maps a REST route to its URL path; VIA=ws uses the gateway's
// /ws/... variants, which reach the upstream over its websocket mux.
export function routePath(route, via = VIA) {
  if (route === 'rpc') {
    return '/';
  }
  return via === 'ws' ? `/ws/${route}` : `/${route}`;
}

function hasJsonRpcResult(res) {
  try {
    const body = res.json();
    return body !== null && typeof body === 'object' && 'result' in body && !('error' in body);
  } catch (e) {
    return false;
  }
}

// One request per REST route, with the request bodies the README documents.
const ROUTES = {
  health: () => ({ method: 'GET', body: null, ok: (r) => r.status === 200 }),
  blocknumber: () => ({ method: 'GET', body: null, ok: hasJsonRpcResult }),
  gasprice: () => ({ method: 'GET', body: null, ok: hasJsonRpcResult }),
  blockbynumber: () => ({
    method: 'POST',
    body: { block: pick(['latest', 'earliest', '0x1']), txdetails: pick(['false', 'true']) },
    ok: hasJsonRpcResult,
  }),
  txbyblockandindex: () => ({ method: 'POST', body: { block: 'latest', index: '0x0' }, ok: hasJsonRpcResult }),
  rpc: () => {
    const [method, params] = pick(RPC_METHODS);
    return { method: 'POST', body: rpcBody(method, params), ok: hasJsonRpcResult };
  },
};

export const REST_ROUTES = Object.keys(ROUTES);

// hit sends one request to a route and checks the answer; the route tag
// matches the gateway's route label (ws_ prefix for /ws/...).
export function hit(route, via = VIA) {
  const spec = ROUTES[route];
  if (!spec) {
    fail(`unknown route ${route}`);
  }
  const r = spec();
  const tag = route === 'rpc' || via === 'http' ? route : `ws_${route}`;
  const params = { ...JSON_HEADERS, tags: { route: tag } };
  const url = BASE_URL + routePath(route, via);
  const res = r.method === 'GET' ? http.get(url, params) : http.post(url, JSON.stringify(r.body), params);
  check(res, { [`${tag} status 200`]: (x) => x.status === 200, [`${tag} body ok`]: r.ok });
  return res;
}

// routeScript is the whole of a single-route script: options, VU code and summary.
export function routeScript(route) {
  const name = route === 'rpc' || VIA === 'http' ? route : `ws_${route}`;
  return {
    options: {
      scenarios: { [name]: scenario('default', { route: name }) },
      thresholds: httpThresholds(),
      summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
    },
    run: () => hit(route),
    handleSummary: summaryWriter(name),
  };
}

function fmt(v) {
  return typeof v === 'number' ? v.toFixed(2) : String(v);
}

// summaryWriter returns a handleSummary that writes the full k6 summary as
// JSON (for the Go driver's comparisons and CI artifacts) plus a short text
// report with the trend percentiles and threshold results.
export function summaryWriter(name) {
  return (data) => {
    const dir = env('SUMMARY_DIR', 'k6/results');
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    const file = `${dir}/${name}-${PROFILE}-${MODE}-${stamp}.json`;
    const lines = [`${name} (profile ${PROFILE}, mode ${MODE}) against ${BASE_URL}`];
    for (const [metric, m] of Object.entries(data.metrics).sort()) {
      const v = m.values || {};
      if (m.type === 'trend') {
        lines.push(`  ${metric}: avg=${fmt(v.avg)} p(95)=${fmt(v['p(95)'])} p(99)=${fmt(v['p(99)'])} max=${fmt(v.max)}`);
      } else if (m.type === 'rate') {
        lines.push(`  ${metric}: ${fmt(100 * v.rate)}%`);
      } else if (m.type === 'counter') {
        lines.push(`  ${metric}: ${v.count} (${fmt(v.rate)}/s)`);
      }
      for (const [expr, t] of Object.entries(m.thresholds || {})) {
        lines.push(`    threshold ${expr}: ${t.ok ? 'ok' : 'FAILED'}`);
      }
    }
    lines.push(`summary written to ${file}`, '');
    return { [file]: JSON.stringify(data, null, 2), stdout: lines.join('\n') };
  };
}

const WS_TIMEOUT_MS = number('WS_TIMEOUT_MS', 10000);

function parse(data) {
  try {
    return JSON.parse(String(data));
  } catch (e) {
    return null;
  }
}

// s2sRequests opens one /socket2socket connection and sends `count` JSON-RPC
// requests back to back (each after the previous answer), timing each round
// trip through the gateway's multiplexed upstream websocket.
export function s2sRequests(count = number('MESSAGES', 20)) {
  const ws = new WebSocket(`${WS_URL}/socket2socket`, null, { tags: { route: 'socket2socket' } });
  let sent = 0;
  let pending = null;
  let sentAt = 0;
  let timer = null;

  const failed = (why) => {
    wsRpcErrors.add(true);
    check(null, { [`socket2socket ${why}`]: () => false });
    ws.close();
  };
  const next = () => {
    if (sent >= count) {
      ws.close();
      return;
    }
    const [method, params] = pick(RPC_METHODS);
    const body = rpcBody(method, params);
    pending = body.id;
    sent += 1;
    sentAt = Date.now();
    ws.send(JSON.stringify(body));
    timer = setTimeout(() => failed('answer timed out'), WS_TIMEOUT_MS);
  };

  ws.onopen = next;
  ws.onmessage = (e) => {
    const msg = parse(e.data);
    if (msg === null) {
      clearTimeout(timer);
      failed('answer is not JSON');
      return;
    }
    if (msg.id !== pending) {
      return; // not the answer we wait for (e.g. a notification)
    }
    clearTimeout(timer);
    wsRpcDuration.add(Date.now() - sentAt);
    const ok = 'result' in msg && !('error' in msg);
    wsRpcErrors.add(!ok);
    check(msg, { 'socket2socket result': () => ok });
    next();
  };
  ws.onerror = (e) => {
    clearTimeout(timer);
    failed(`error: ${e && e.error}`);
  };
}

// s2sNewHeads subscribes to newHeads over /socket2socket, stays subscribed
// for `holdSeconds`, counts notifications and the gap between them, then
// unsubscribes and closes.
export function s2sNewHeads(holdSeconds = number('HOLD_S', 15), minHeads = number('MIN_HEADS', 1)) {
  const ws = new WebSocket(`${WS_URL}/socket2socket`, null, { tags: { route: 'socket2socket' } });
  const sub = rpcBody('eth_subscribe', ['newHeads']);
  let subId = null;
  let heads = 0;
  let last = 0;
  let unsubId = null;
  let guard = null;

  ws.onopen = () => {
    ws.send(JSON.stringify(sub));
    guard = setTimeout(() => {
      check(null, { 'newHeads subscription confirmed': () => false });
      ws.close();
    }, WS_TIMEOUT_MS);
  };
  ws.onmessage = (e) => {
    const msg = parse(e.data);
    if (msg === null) {
      return;
    }
    if (msg.id === sub.id) {
      clearTimeout(guard);
      subId = typeof msg.result === 'string' ? msg.result : null;
      check(msg, { 'newHeads subscription confirmed': () => subId !== null });
      if (subId === null) {
        ws.close();
        return;
      }
      setTimeout(() => {
        check(heads, { [`newHeads received >= ${minHeads}`]: (n) => n >= minHeads });
        const unsub = rpcBody('eth_unsubscribe', [subId]);
        unsubId = unsub.id;
        ws.send(JSON.stringify(unsub));
        guard = setTimeout(() => ws.close(), WS_TIMEOUT_MS);
      }, holdSeconds * 1000);
      return;
    }
    if (msg.method === 'eth_subscription' && msg.params && msg.params.subscription === subId) {
      const now = Date.now();
      if (last !== 0) {
        wsHeadGap.add(now - last);
      }
      last = now;
      heads += 1;
      wsHeads.add(1);
      return;
    }
    if (unsubId !== null && msg.id === unsubId) {
      clearTimeout(guard);
      check(msg, { 'newHeads unsubscribed': (m) => m.result === true });
      ws.close();
    }
  };
  ws.onerror = (e) => {
    clearTimeout(guard);
    check(null, { [`newHeads socket error: ${e && e.error}`]: () => false });
  };
}
