// Shared by the Node.js peers of `make bench-peers`: the workload's knobs,
// the timing and the one JSON line each run prints.

export const config = {
  url: process.env.DATABASE_URL,
  jobs: Number(process.env.PEER_JOBS ?? 10000),
  concurrency: Number(process.env.PEER_CONCURRENCY ?? 32),
  rate: Number(process.env.PEER_RATE ?? 200),
  seconds: Number(process.env.PEER_SECONDS ?? 10),
};

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves once `done()` returns true, checking every 5 ms, or after `limitMs`. */
export async function until(done, limitMs) {
  const started = Date.now();
  while (!done() && Date.now() - started < limitMs) await sleep(5);
}

/** p50, p99 and max of latencies in milliseconds. */
export function percentiles(samples) {
  const sorted = [...samples].sort((a, b) => a - b);
  if (sorted.length === 0) return { p50_ms: null, p99_ms: null, max_ms: null };
  const at = (q) => sorted[Math.round((sorted.length - 1) * q)];
  return { p50_ms: at(0.5), p99_ms: at(0.99), max_ms: sorted[sorted.length - 1] };
}

/**
 * Calls `enqueue(intendedMs)` `rate` times a second for `seconds`, each at
 * its intended time, without waiting for the previous one (no coordinated
 * omission: latency is measured from the intended time).
 */
export async function arrive(rate, seconds, enqueue) {
  const total = rate * seconds;
  const start = Date.now() + 100;
  const pending = [];
  for (let n = 0; n < total; n++) {
    const intended = start + (n * 1000) / rate;
    const wait = intended - Date.now();
    if (wait > 0) await sleep(wait);
    pending.push(enqueue(intended));
  }
  await Promise.all(pending);
  return total;
}

export function report(fields) {
  process.stdout.write(JSON.stringify(fields) + "\n");
}
