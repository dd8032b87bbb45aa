// graphile-worker on the shared PostgreSQL: burn-down of preloaded no-op
// jobs with a fixed concurrency, then a fixed arrival rate with latency.
// Recommended settings: LISTEN/NOTIFY wake-ups (the default), a pool at
// least as large as the concurrency.
import { createRequire } from "node:module";
import { Logger, makeWorkerUtils, run } from "graphile-worker";
import { arrive, config, percentiles, report, until } from "./common.mjs";

const version = createRequire(import.meta.url)("graphile-worker/package.json").version;

const quiet = new Logger(() => () => {});

async function worker(taskList) {
  return run({
    connectionString: config.url,
    concurrency: config.concurrency,
    maxPoolSize: config.concurrency + 2,
    noHandleSignals: true,
    // Quiet: the default logger writes a line per job, which would time the terminal.
    logger: quiet,
    taskList,
  });
}

async function burnDown(utils) {
  for (let n = 0; n < config.jobs; n += 500) {
    const batch = [];
    for (let i = n; i < Math.min(n + 500, config.jobs); i++) batch.push(utils.addJob("noop", { n: i }));
    await Promise.all(batch);
  }
  let done = 0;
  const started = Date.now();
  const runner = await worker({ noop: async () => { done++; } });
  await until(() => done >= config.jobs, 600_000);
  const seconds = (Date.now() - started) / 1000;
  await runner.stop();
  return { jobs: done, seconds };
}

async function fixedRate(utils) {
  const latencies = [];
  const runner = await worker({
    noop: async (payload) => { latencies.push(Date.now() - payload.intended); },
  });
  const total = await arrive(config.rate, config.seconds, (intended) =>
    utils.addJob("noop", { intended }),
  );
  await until(() => latencies.length >= total, 60_000);
  await runner.stop();
  return { completed: latencies.length, ...percentiles(latencies) };
}

const utils = await makeWorkerUtils({ connectionString: config.url, logger: quiet });
await utils.migrate();
const burn = await burnDown(utils);
const rate = await fixedRate(utils);
await utils.release();
report({
  system: `graphile-worker ${version}`,
  burn_down_jobs: burn.jobs,
  burn_down_per_s: burn.jobs / burn.seconds,
  rate: config.rate,
  ...rate,
});
process.exit(0);
