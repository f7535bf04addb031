// Minimal stand-ins for k6's modules so test/check.mjs can run the scripts'
// logic in Node: they record what the scripts do instead of sending traffic.
const rec = () => globalThis.__k6rec;

export function check(value, sets) {
  let all = true;
  for (const [name, fn] of Object.entries(sets)) {
    const ok = Boolean(fn(value));
    rec().checks.push({ name, ok });
    all = all && ok;
  }
  return all;
}

export function fail(msg) {
  throw new Error(msg);
}

export function sleep() {}
