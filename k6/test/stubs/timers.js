export function setTimeout(fn, ms) {
  return globalThis.setTimeout(fn, ms);
}

export function clearTimeout(t) {
  globalThis.clearTimeout(t);
}

