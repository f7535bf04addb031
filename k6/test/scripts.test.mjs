// Offline checks of the k6 scripts (k6 itself is not available here):
//  1. every script bundles with k6's modules external (syntax, imports);
//  2. every script runs in Node with k6's modules replaced by recording stubs
//     (test/stubs): options, scenarios, thresholds, the requests each route
//     sends, the websocket protocol of /socket2socket, and handleSummary.
// Run: node --test k6/test/   (task lint:k6)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';

const k6dir = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const stubs = join(k6dir, 'test', 'stubs');
const outdir = join(k6dir, '.check');
const scripts = [
  ...readdirSync(join(k6dir, 'http')).map((f) => `http/${f}`),
  ...readdirSync(join(k6dir, 'socket2socket')).map((f) => `socket2socket/${f}`),
  'mix.js',
].filter((f) => f.endsWith('.js'));
const profiles = Object.fromEntries(
  readdirSync(join(k6dir, 'profiles')).map((f) => [f.replace(/\.json$/, ''), JSON.parse(readFileSync(join(k6dir, 'profiles', f), 'utf8'))]),
);

const stubPlugin = {
  name: 'k6-stubs',
  setup(b) {
    b.onResolve({ filter: /^k6(\/.*)?$/ }, (args) => ({ path: join(stubs, `${args.path === 'k6' ? 'k6' : args.path.slice(3)}.js`) }));
  },
};

async function bundleAll() {
  const common = { entryPoints: scripts.map((s) => join(k6dir, s)), bundle: true, format: 'esm', outbase: k6dir, logLevel: 'silent' };
  // Exactly the bundle k6 would need: everything resolvable except k6's own modules.
  await build({ ...common, external: ['k6', 'k6/*'], outdir: join(outdir, 'k6') });
  await build({ ...common, plugins: [stubPlugin], outdir: join(outdir, 'node'), platform: 'node' });
}

let loads = 0;
// load imports one bundled script as a fresh module with the given env.
async function load(script, env = {}) {
  globalThis.__k6rec = { checks: [], requests: [], metrics: {}, sockets: [] };
  globalThis.__ENV = { SUMMARY_DIR: '/tmp/k6-results', ...env };
  globalThis.open = (path) => {
    const m = /profiles\/([\w-]+\.json)$/.exec(String(path));
    assert.ok(m, `open() of an unexpected path ${path}`);
    return readFileSync(join(k6dir, 'profiles', m[1]), 'utf8');
  };
  loads += 1;
  const url = pathToFileURL(join(outdir, 'node', script)).href + `?load=${loads}`;
  return import(url);
}

// settle waits until the stubbed sockets are closed (a k6 iteration ends
// when its event loop is empty).
async function settle(ms = 3000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const open = globalThis.__k6rec.sockets.filter((s) => !s.closed);
    if (globalThis.__k6rec.sockets.length > 0 && open.length === 0) {
      return;
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.fail('websocket iteration did not finish');
}

function assertChecksPassed() {
  const failed = globalThis.__k6rec.checks.filter((c) => !c.ok);
  assert.deepEqual(failed, [], 'failed checks');
  assert.ok(globalThis.__k6rec.checks.length > 0, 'no checks ran');
}

function assertThresholds(options) {
  const all = JSON.stringify(options.thresholds);
  assert.match(all, /p\(95\)</, 'no p95 threshold');
  assert.match(all, /p\(99\)</, 'no p99 threshold');
  assert.match(all, /rate</, 'no failure-rate threshold');
}

test('every script bundles for k6 (esbuild, k6 modules external)', async () => {
  assert.ok(scripts.length >= 9, `found only ${scripts.length} scripts`);
  await bundleAll();
});

const ROUTES = { health: 'GET', blocknumber: 'GET', gasprice: 'GET', blockbynumber: 'POST', txbyblockandindex: 'POST', rpc: 'POST' };

for (const [route, method] of Object.entries(ROUTES)) {
  test(`http/${route}.js: stage profile, request shape, checks`, async () => {
    const mod = await load(`http/${route}.js`);
    const [name, sc] = Object.entries(mod.options.scenarios)[0];
    assert.equal(name, route);
    assert.equal(sc.executor, 'ramping-vus');
    assert.deepEqual(sc.stages, profiles.local.stages, 'default profile must be k6/profiles/local.json');
    assertThresholds(mod.options);
    mod.default();
    const [req] = globalThis.__k6rec.requests;
    assert.equal(req.method, method);
    assert.equal(new URL(req.url).pathname, route === 'rpc' ? '/' : `/${route}`);
    assert.equal(new URL(req.url).origin, 'http://127.0.0.1:8000');
    assert.equal(req.params.tags.route, route);
    if (method === 'POST') {
      assert.equal(req.params.headers['Content-Type'], 'application/json');
      const body = JSON.parse(req.body);
      if (route === 'rpc') {
        assert.equal(body.jsonrpc, '2.0');
        assert.match(body.method, /^eth_/);
      } else {
        assert.ok(body.block, 'REST body needs a block');
      }
    }
    assertChecksPassed();
  });
}

test('VIA=ws targets the /ws/... routes with ws_ route tags', async () => {
  const mod = await load('http/blocknumber.js', { VIA: 'ws', BASE_URL: 'http://gw.example:8080/' });
  assert.ok(mod.options.scenarios.ws_blocknumber);
  mod.default();
  const [req] = globalThis.__k6rec.requests;
  assert.equal(req.url, 'http://gw.example:8080/ws/blocknumber');
  assert.equal(req.params.tags.route, 'ws_blocknumber');
});

test('MODE=rate switches to an open-model constant-arrival-rate scenario', async () => {
  const mod = await load('http/gasprice.js', { MODE: 'rate', RATE: '250', DURATION: '2m', MAX_VUS: '900' });
  const sc = mod.options.scenarios.gasprice;
  assert.equal(sc.executor, 'constant-arrival-rate');
  assert.equal(sc.rate, 250);
  assert.equal(sc.duration, '2m');
  assert.equal(sc.maxVUs, 900);
});

test('PROFILE selects k6/profiles/<name>.json; bad settings are rejected', async () => {
  for (const name of Object.keys(profiles)) {
    const mod = await load('http/health.js', { PROFILE: name });
    assert.deepEqual(mod.options.scenarios.health.stages, profiles[name].stages);
  }
  await assert.rejects(load('http/health.js', { PROFILE: 'nope' }));
  await assert.rejects(load('http/health.js', { MODE: 'closed' }), /MODE/);
  await assert.rejects(load('http/health.js', { RATE: 'fast', MODE: 'rate' }), /RATE/);
});

test('handleSummary writes the JSON summary and a text report', async () => {
  const mod = await load('http/health.js', { PROFILE: 'smoke' });
  const data = { metrics: { http_req_duration: { type: 'trend', values: { avg: 1, 'p(95)': 2, 'p(99)': 3, max: 4 }, thresholds: { 'p(95)<500': { ok: true } } } } };
  const out = mod.handleSummary(data);
  const file = Object.keys(out).find((k) => k.endsWith('.json'));
  assert.match(file, /^\/tmp\/k6-results\/health-smoke-stages-.*\.json$/);
  assert.deepEqual(JSON.parse(out[file]), data);
  assert.match(out.stdout, /p\(99\)=3\.00/);
  assert.match(out.stdout, /threshold p\(95\)<500: ok/);
});

test('socket2socket/requests.js: sequential JSON-RPC over one websocket', async () => {
  const mod = await load('socket2socket/requests.js', { MESSAGES: '7', BASE_URL: 'https://gw.example' });
  assertThresholds(mod.options);
  mod.default();
  await settle();
  const [sock] = globalThis.__k6rec.sockets;
  assert.equal(sock.url, 'wss://gw.example/socket2socket');
  assert.equal(sock.sent.length, 7);
  assert.equal(new Set(sock.sent.map((r) => r.id)).size, 7, 'request ids must be unique');
  assert.equal(globalThis.__k6rec.metrics.s2s_rpc_duration.length, 7);
  assertChecksPassed();
});

test('socket2socket/newheads.js: subscribe, receive heads, unsubscribe', async () => {
  const mod = await load('socket2socket/newheads.js', { HOLD_S: '0.2', MIN_HEADS: '3' });
  mod.default();
  await settle();
  const [sock] = globalThis.__k6rec.sockets;
  assert.deepEqual(sock.sent.map((r) => r.method), ['eth_subscribe', 'eth_unsubscribe']);
  assert.deepEqual(sock.sent[0].params, ['newHeads']);
  assert.deepEqual(sock.sent[1].params, ['0xfeed']);
  assert.ok(globalThis.__k6rec.metrics.s2s_newheads_received.length >= 3);
  assertChecksPassed();
});

test('newheads.js fails its check when too few heads arrive', async () => {
  const mod = await load('socket2socket/newheads.js', { HOLD_S: '0.05', MIN_HEADS: '50' });
  mod.default();
  await settle();
  assert.ok(globalThis.__k6rec.checks.some((c) => !c.ok && c.name.startsWith('newHeads received')));
});

test('mix.js: three scenarios sharing the profile, every route reachable', async () => {
  const mod = await load('mix.js', { PROFILE: 'remote' });
  const scs = mod.options.scenarios;
  assert.deepEqual(Object.keys(scs).sort(), ['rest', 'socket2socket_newheads', 'socket2socket_requests']);
  const peak = (sc) => Math.max(...sc.stages.map((s) => s.target));
  const total = peak(scs.rest) + peak(scs.socket2socket_requests) + peak(scs.socket2socket_newheads);
  assert.ok(Math.abs(total - Math.max(...profiles.remote.stages.map((s) => s.target))) <= 2, `peak VUs ${total}`);
  for (const sc of Object.values(scs)) {
    assert.equal(typeof mod[sc.exec], 'function', `scenario exec ${sc.exec} is not exported`);
  }
  assertThresholds(mod.options);
  const paths = new Set();
  for (let i = 0; i < 400; i++) {
    mod.rest();
  }
  for (const r of globalThis.__k6rec.requests) {
    paths.add(new URL(r.url).pathname);
  }
  for (const route of Object.keys(ROUTES)) {
    assert.ok(paths.has(route === 'rpc' ? '/' : `/${route}`), `mix never hits /${route}`);
    if (route !== 'rpc') {
      assert.ok(paths.has(`/ws/${route}`), `mix never hits /ws/${route}`);
    }
  }
});
