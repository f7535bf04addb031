// Smoke test with wscat (npm), a websocket client nobody here wrote: connect to
// /socket2socket, send JSON-RPC calls, check the answers. Exits non-zero on any failure.
//
//   node wscat_smoke.js ws://127.0.0.1:8000/socket2socket
'use strict';
const { execFile } = require('node:child_process');
const path = require('node:path');

const url = process.argv[2];
if (!url) {
  console.error('usage: node wscat_smoke.js <ws://host:port/socket2socket>');
  process.exit(2);
}
const wscat = path.join(__dirname, 'node_modules', '.bin', 'wscat');
const requests = [
  '{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}',
  '{"jsonrpc":"2.0","id":"two","method":"eth_blockNumber","params":[]}',
  '[{"jsonrpc":"2.0","id":3,"method":"net_version"},{"jsonrpc":"2.0","id":4,"method":"eth_chainId"}]',
  'this is not JSON',
];
const args = ['--no-color', '-c', url, '-w', '2'];
for (const r of requests) args.push('-x', r);

execFile(wscat, args, { timeout: 30000 }, (err, stdout, stderr) => {
  if (err) {
    console.error(`wscat failed: ${err.message}\n${stderr}`);
    process.exit(1);
  }
  // wscat prints each received message on its own line (with "< " on a terminal).
  const answers = stdout.split('\n')
    .map((l) => l.replace(/^< /, '').trim())
    .filter((l) => l.startsWith('{') || l.startsWith('['))
    .map((l) => JSON.parse(l));
  const byId = new Map();
  for (const a of answers.flat()) byId.set(JSON.stringify(a.id), a);
  const check = (cond, what) => {
    if (!cond) {
      console.error(`FAIL: ${what}\nwscat output:\n${stdout}`);
      process.exit(1);
    }
  };
  check(answers.length === 4, `4 answers, got ${answers.length}`);
  check(byId.get('1')?.result === '0x539', 'eth_chainId answers 0x539 with id 1');
  check(/^0x[0-9a-f]+$/.test(byId.get('"two"')?.result), 'eth_blockNumber answers a quantity with id "two"');
  check(byId.get('3')?.result === '1337', 'batch: net_version answers 1337 with id 3');
  check(byId.get('4')?.result === '0x539', 'batch: eth_chainId answers 0x539 with id 4');
  check(byId.get('null')?.error?.code === -32700, 'bad JSON answers -32700 and the socket stays open');
  console.log(`wscat smoke OK: ${answers.length} answers from ${url}`);
});
