// ethers v6 WebSocketProvider through /socket2socket: getBlockNumber, getNetwork, and
// block events (ethers subscribes to newHeads). Exits non-zero on any failure or after
// a bounded time.
//
//   node ethers_blocks.js ws://127.0.0.1:8000/socket2socket [blocks=3]
'use strict';
const { WebSocketProvider } = require('ethers');

const url = process.argv[2];
const want = Number(process.argv[3] || 3);
if (!url) {
  console.error('usage: node ethers_blocks.js <ws://host:port/socket2socket> [blocks]');
  process.exit(2);
}
const fail = (msg) => {
  console.error(`FAIL: ${msg}`);
  process.exit(1);
};
setTimeout(() => fail(`not done within 60s`), 60000).unref();

(async () => {
  const provider = new WebSocketProvider(url);
  const network = await provider.getNetwork();
  if (network.chainId !== 1337n) fail(`chainId ${network.chainId}, want 1337`);
  const start = await provider.getBlockNumber();
  if (!Number.isInteger(start) || start < 0) fail(`getBlockNumber ${start}`);

  const seen = [];
  await new Promise((resolve, reject) => {
    provider.on('block', async (n) => {
      try {
        seen.push(n);
        const block = await provider.getBlock(n);
        if (!block || block.number !== n || !block.hash) throw new Error(`getBlock(${n}) = ${JSON.stringify(block)}`);
        if (seen.length >= want) resolve();
      } catch (e) {
        reject(e);
      }
    });
    provider.on('error', reject);
  }).catch((e) => fail(e.stack || String(e)));

  for (let i = 1; i < seen.length; i++) {
    if (seen[i] <= seen[i - 1]) fail(`blocks out of order: ${seen}`);
  }
  const now = await provider.getBlockNumber();
  if (now < seen[seen.length - 1]) fail(`getBlockNumber ${now} behind the last block event ${seen[seen.length - 1]}`);
  await provider.destroy();
  console.log(`ethers OK: chainId 1337, blockNumber ${start} -> ${now}, block events ${seen.join(',')}`);
  process.exit(0);
})().catch((e) => fail(e.stack || String(e)));
