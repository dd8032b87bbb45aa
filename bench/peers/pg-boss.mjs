// pg-boss on the shared PostgreSQL: burn-down of preloaded no-op jobs with
// a fixed concurrency, then a fixed arrival rate with latency. pg-boss 10
// has no LISTEN/NOTIFY: each of `concurrency` workers polls, here at its
// shortest documented interval (0.5 s; the default is 2 s).
import { createRequire } from "node:module";
import PgBoss from "pg-boss";
import { arrive, config, percentiles, report, until } from "./common.mjs";

const version = createRequire(import.meta.url)("pg-boss/package.json").version;
const QUEUE = "noop";

async function workers(handler) {
  const ids = [];
  for (let i = 0; i < config.concurrency; i++) {
    ids.push(await boss.work(QUEUE, { batchSize: 1, pollingIntervalSeconds: 0.5 }, handler));
  }
  return ids;
}

async function stop(ids) {
  for (const id of ids) await boss.offWork({ id });
}

async function burnDown() {
  for (let n = 0; n < config.jobs; n += 1000) {
    const jobs = [];
    for (let i = n; i < Math.min(n + 1000, config.jobs); i++) jobs.push({ name: QUEUE, data: { n: i } });
    await boss.insert(jobs);
  }
  let done = 0;
  const started = Date.now();
  const ids = await workers(async (jobs) => { done += jobs.length; });
  await until(() => done >= config.jobs, 600_000);
  const seconds = (Date.now() - started) / 1000;
  await stop(ids);
  return { jobs: done, seconds };
}

async function fixedRate() {
  const latencies = [];
  const ids = await workers(async (jobs) => {
    for (const job of jobs) latencies.push(Date.now() - job.data.intended);
  });
  const total = await arrive(config.rate, config.seconds, (intended) => boss.send(QUEUE, { intended }));
  await until(() => latencies.length >= total, 60_000);
  await stop(ids);
  return { completed: latencies.length, ...percentiles(latencies) };
}

const boss = new PgBoss({ connectionString: config.url, max: config.concurrency + 2 });
boss.on("error", (error) => process.stderr.write(`pg-boss: ${error}\n`));
await boss.start();
await boss.createQueue(QUEUE);
const burn = await burnDown();
const rate = await fixedRate();
await boss.stop({ graceful: false, wait: false });
report({
  system: `pg-boss ${version}`,
  burn_down_jobs: burn.jobs,
  burn_down_per_s: burn.jobs / burn.seconds,
  rate: config.rate,
  ...rate,
});
process.exit(0);
